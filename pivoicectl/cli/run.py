"""Adapter for `pivoicectl run`: options in, one call to pivoicectl.commands.run, render."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the command to the app (not yet implemented: registers nothing)."""
