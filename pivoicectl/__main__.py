"""`python -m pivoicectl` is the same as the `pivoicectl` command."""

from pivoicectl.main import run

run()
