"""Adapter for `pivoicectl doctor`: options in, one call to pivoicectl.commands.doctor, render."""

from __future__ import annotations

from typing import Annotated

import typer

from pivoicectl.cli.options import JsonOpt


def doctor(
    fix: Annotated[
        bool, typer.Option("--fix", help="Apply the safe fixes, then re-check.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Diagnose the audio stack; say exactly how to fix each problem.

    Exit status: 0 when no check fails, 1 when one does, 2 on usage errors.

    Examples:
      pivoicectl doctor
      pivoicectl doctor --fix
      pivoicectl doctor --json | jq '.checks[] | select(.status != "pass")'
    """
    from pivoicectl.commands import doctor as cmd

    report = cmd.doctor(fix=fix)
    cmd.render(report, json_out)
    raise typer.Exit(0 if report.ok else 1)


def register(app: typer.Typer) -> None:
    """Add `doctor` to the app."""
    app.command("doctor")(doctor)
