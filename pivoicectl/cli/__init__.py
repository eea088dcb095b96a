"""Command adapters, one module per command: options in, one call to
`pivoicectl.commands.<name>`, render.

Each module defines `register(app)`; `pivoicectl.main` imports and calls them
explicitly. Heavy modules are imported inside the command functions so `--help` stays
fast.
"""
