"""Adapter for `pivoicectl parrot`: options in, one call to pivoicectl.commands.parrot, render."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the command to the app (not yet implemented: registers nothing)."""
