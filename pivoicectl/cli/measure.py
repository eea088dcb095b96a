"""Adapter for `pivoicectl measure`: options in, one call to pivoicectl.commands.measure, render."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the command to the app (not yet implemented: registers nothing)."""
