"""Adapter for `pivoicectl devices`: one call to pivoicectl.commands.devices, render."""

from __future__ import annotations

import typer

from pivoicectl.cli.options import JsonOpt


def devices(json_out: JsonOpt = False) -> None:
    """List the sources and sinks PipeWire offers and the devices PortAudio sees.

    Marks the default nodes, monitors and echo-cancelled sources.

    Example:  pivoicectl devices --json | jq '.sources[] | select(.default)'
    """
    from pivoicectl.commands import devices as cmd

    cmd.render(cmd.devices(), json_out)


def register(app: typer.Typer) -> None:
    """Add `devices` to the app."""
    app.command("devices")(devices)
