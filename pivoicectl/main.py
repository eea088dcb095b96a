"""Command-line parsing and dispatch, nothing else.

Each command adapter turns flags into one typed call to `pivoicectl.commands.<name>` and
hands the result to that module's renderer. Heavy modules (numpy, pulsectl,
sounddevice, websockets) are imported inside the adapters so `--help` stays fast.
`UserError` is caught once, in `run()`, and shown as one line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from pivoicectl import __version__
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
sim_app = typer.Typer(
    help=(
        "A simulated room (speaker, microphone, echo path) on a private, real PipeWire.\n\n"
        'Example:  eval "$(pivoicectl sim up --delay-ms 20 --gain 0.3)";  '
        "pivoicectl sim talk --say 'hello';  pivoicectl sim down"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(sim_app, name="sim")

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


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


# --------------------------------------------------------------------------- setup
@app.command()
def setup(
    mic: Annotated[
        str | None,
        typer.Option(help="Microphone node to pin (default: the current default source)."),
    ] = None,
    speaker: Annotated[
        str | None,
        typer.Option(help="Speaker node whose sound is cancelled (default: the default sink)."),
    ] = None,
    aec_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--aec-arg",
            help="webrtc option KEY=VALUE, repeatable, e.g. webrtc.noise_suppression=true.",
        ),
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart/--no-restart", help="Restart PipeWire to load the config.")
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the file and every action; change nothing.")
    ] = False,
    undo: Annotated[
        bool, typer.Option("--undo", help="Put back what the last setup changed.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for source_ec to appear.", min=1, max=600)
    ] = 20.0,
    json_out: JsonOpt = False,
) -> None:
    """Install PipeWire echo cancellation and make [bold]source_ec[/] the default microphone.

    Writes $XDG_CONFIG_HOME/pipewire/pipewire.conf.d/60-echo-cancel.conf for the PipeWire
    version it finds, restarts PipeWire, waits for source_ec, makes it the default source
    and checks that WirePlumber will restore it after a reboot. Running it again changes
    nothing; --undo restores the previous file and default source.

    Examples:
      pivoicectl setup --dry-run
      pivoicectl setup --mic alsa_input.usb-Mic-00.mono-fallback --aec-arg webrtc.gain_control=true
      pivoicectl setup --undo
    """
    from pivoicectl.commands import setup as cmd

    options = cmd.SetupOptions(
        mic=mic,
        speaker=speaker,
        aec_args=tuple(aec_arg or ()),
        restart=restart,
        dry_run=dry_run,
        timeout_s=timeout,
    )
    progress = not json_out
    result = cmd.undo(options, progress) if undo else cmd.setup(options, progress)
    cmd.render(result, json_out)


# --------------------------------------------------------------------------- devices
@app.command()
def devices(json_out: JsonOpt = False) -> None:
    """List the sources and sinks PipeWire offers and the devices PortAudio sees.

    Marks the default nodes, monitors and echo-cancelled sources.

    Example:  pivoicectl devices --json | jq '.sources[] | select(.default)'
    """
    from pivoicectl.commands import devices as cmd

    cmd.render(cmd.devices(), json_out)


# --------------------------------------------------------------------------- doctor
@app.command()
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


# --------------------------------------------------------------------------- sim
SimDir = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Room directory (default $PIVOICECTL_SIM_DIR or /tmp/pivoicectl-sim-UID).",
    ),
]


@sim_app.command("up")
def sim_up(
    sim_dir: SimDir = None,
    delay_ms: Annotated[
        float, typer.Option(help="Speaker-to-mic delay, ms.", min=0, max=500)
    ] = 17.0,
    gain: Annotated[
        float, typer.Option(help="Direct-path gain (0.25 = 12 dB ERL).", min=0.0001, max=4)
    ] = 0.25,
    rt60: Annotated[
        float, typer.Option(help="Reverberation time, s (0 = none).", min=0, max=2)
    ] = 0.25,
    reverb_db: Annotated[
        float, typer.Option(help="Reverb energy relative to the direct path, dB.", min=-60, max=20)
    ] = -15.0,
    wireplumber_delay: Annotated[
        float,
        typer.Option(
            help="Start WirePlumber this many seconds after PipeWire at every (re)start, "
            "as on a slow boot.",
            min=0,
            max=10,
        ),
    ] = 0.0,
    json_out: JsonOpt = False,
) -> None:
    """Start a simulated room and print the environment that points commands at it.

    Examples:  eval "$(pivoicectl sim up)"  then  pivoicectl setup
               eval "$(pivoicectl sim up --wireplumber-delay 1.5)"   (a slow Pi's boot)
    """
    from pivoicectl.commands import sim as cmd
    from pivoicectl.sim.room import RoomSettings

    room = RoomSettings(delay_ms=delay_ms, gain=gain, rt60_s=rt60, reverb_db=reverb_db)
    cmd.render_env(cmd.up(sim_dir, room, wireplumber_delay), json_out)


@sim_app.command("down")
def sim_down(
    sim_dir: SimDir = None,
    keep: Annotated[bool, typer.Option(help="Keep the directory (logs, config).")] = False,
) -> None:
    """Stop the simulated room and remove its directory."""
    from pivoicectl.commands import sim as cmd

    cmd.down(sim_dir, keep=keep)


@sim_app.command("status")
def sim_status(sim_dir: SimDir = None, json_out: JsonOpt = False) -> None:
    """Show whether the room runs, its echo path and its nodes. Exit 1 if it is down."""
    from pivoicectl.commands import sim as cmd

    status = cmd.status(sim_dir)
    cmd.render_status(status, json_out)
    raise typer.Exit(0 if status.running else 1)


@sim_app.command("env")
def sim_env(sim_dir: SimDir = None, json_out: JsonOpt = False) -> None:
    """Print the environment of a running room again."""
    from pivoicectl.commands import sim as cmd

    cmd.render_env(cmd.env(sim_dir), json_out)


@sim_app.command("restart")
def sim_restart(sim_dir: SimDir = None) -> None:
    """Restart the room's PipeWire daemons (what `setup` calls to load a new config)."""
    from pivoicectl.commands import sim as cmd

    cmd.restart(sim_dir)


@sim_app.command("talk")
def sim_talk(
    wav: Annotated[Path | None, typer.Argument(help="WAV file the person says.")] = None,
    say: Annotated[
        str | None, typer.Option(help="Text the person says (spoken by espeak-ng).")
    ] = None,
    sim_dir: SimDir = None,
    wait: Annotated[bool, typer.Option(help="Wait until the person has finished.")] = True,
) -> None:
    """Play a person talking in the room: heard by the simulated microphone only.

    Examples:  pivoicectl sim talk question.wav;  pivoicectl sim talk --say "what time is it"
    """
    from pivoicectl.commands import sim as cmd

    cmd.talk(sim_dir, wav, say, wait=wait)


def _register_adapters() -> None:
    import importlib

    from pivoicectl.cli import ADAPTERS

    for name in ADAPTERS:
        importlib.import_module(f"pivoicectl.cli.{name}").register(app)


_register_adapters()


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
