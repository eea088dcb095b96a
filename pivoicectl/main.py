"""The app: global flags, the commands it offers, and the one place errors are caught.

Each command's adapter lives in `pivoicectl.cli.<name>`: it turns flags into one typed
call to `pivoicectl.commands.<name>` and hands the result to that module's renderer.
Heavy modules (numpy, pulsectl, sounddevice, websockets) are imported inside the
adapters so `--help` stays fast. `UserError` is caught once, in `run()`, and shown as
one line.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from pivoicectl import __version__
from pivoicectl.cli import devices, doctor, measure, parrot, service, setup, sim
from pivoicectl.cli import run as run_adapters
from pivoicectl.errors import UserError

app = typer.Typer(
    name="pivoicectl",
    help=(
        "Make a Raspberry Pi a full-duplex voice assistant that never hears itself.\n\n"
        "Quick start on a Pi:  pivoicectl doctor;  pivoicectl setup;  pivoicectl doctor\n\n"
        'Without hardware:  eval "$(pivoicectl sim up)";  pivoicectl setup;  '
        "pivoicectl devices"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pivoicectl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of internal errors.")
    ] = False,
) -> None:
    global _debug
    _debug = debug or bool(os.environ.get("PIVOICECTL_DEBUG"))


# In the order `--help` lists them.
setup.register(app)
devices.register(app)
doctor.register(app)
sim.register(app)
measure.register(app)
parrot.register(app)
run_adapters.register(app)
service.register(app)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app, turning UserError into one line and an exit code."""
    from pivoicectl.render import error_line

    try:
        app(args=argv, prog_name="pivoicectl")
    except UserError as e:
        error_line(e.message, e.hint)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        error_line("interrupted")
        sys.exit(130)
    except Exception as e:  # a bug: say so briefly, show the traceback only under --debug
        if _debug:
            raise
        error_line(
            f"internal error: {type(e).__name__}: {e}",
            "run again with --debug for the traceback, and please report it",
        )
        sys.exit(70)
