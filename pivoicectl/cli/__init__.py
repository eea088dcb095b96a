"""Command adapters that register themselves on the app (one module per command).

Each module defines `register(app)`, adds its Typer command(s) with the options, and
imports its heavy command module lazily inside the command function, so `--help` stays
fast. `main.py` calls every `register` in `ADAPTERS`.
"""

ADAPTERS = ("measure", "parrot", "run")
