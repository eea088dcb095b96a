"""Adapters for `pivoicectl sim ...`: the simulated room's sub-commands, each one call to
pivoicectl.commands.sim."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pivoicectl.cli.options import JsonOpt

SimDir = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Room directory (default $PIVOICECTL_SIM_DIR or /tmp/pivoicectl-sim-UID).",
    ),
]


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


def sim_down(
    sim_dir: SimDir = None,
    keep: Annotated[bool, typer.Option(help="Keep the directory (logs, config).")] = False,
) -> None:
    """Stop the simulated room and remove its directory."""
    from pivoicectl.commands import sim as cmd

    cmd.down(sim_dir, keep=keep)


def sim_status(sim_dir: SimDir = None, json_out: JsonOpt = False) -> None:
    """Show whether the room runs, its echo path and its nodes. Exit 1 if it is down."""
    from pivoicectl.commands import sim as cmd

    status = cmd.status(sim_dir)
    cmd.render_status(status, json_out)
    raise typer.Exit(0 if status.running else 1)


def sim_env(sim_dir: SimDir = None, json_out: JsonOpt = False) -> None:
    """Print the environment of a running room again."""
    from pivoicectl.commands import sim as cmd

    cmd.render_env(cmd.env(sim_dir), json_out)


def sim_restart(sim_dir: SimDir = None) -> None:
    """Restart the room's PipeWire daemons (what `setup` calls to load a new config)."""
    from pivoicectl.commands import sim as cmd

    cmd.restart(sim_dir)


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


def register(app: typer.Typer) -> None:
    """Add the `sim` group and its sub-commands to the app."""
    sim_app = typer.Typer(
        help=(
            "A simulated room (speaker, microphone, echo path) on a private, real PipeWire.\n\n"
            'Example:  eval "$(pivoicectl sim up --delay-ms 20 --gain 0.3)";  '
            "pivoicectl sim talk --say 'hello';  pivoicectl sim down"
        ),
        no_args_is_help=True,
        rich_markup_mode="rich",
    )
    for name, command in (
        ("up", sim_up),
        ("down", sim_down),
        ("status", sim_status),
        ("env", sim_env),
        ("restart", sim_restart),
        ("talk", sim_talk),
    ):
        sim_app.command(name)(command)
    app.add_typer(sim_app, name="sim")
