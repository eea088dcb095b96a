"""Adapter for `pivoicectl setup`: options in, one call to pivoicectl.commands.setup, render."""

from __future__ import annotations

from typing import Annotated

import typer

from pivoicectl.cli.options import JsonOpt


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
    from pivoicectl.commands.setup_undo import undo as undo_setup

    options = cmd.SetupOptions(
        mic=mic,
        speaker=speaker,
        aec_args=tuple(aec_arg or ()),
        restart=restart,
        dry_run=dry_run,
        timeout_s=timeout,
    )
    progress = not json_out
    result = undo_setup(options, progress) if undo else cmd.setup(options, progress)
    cmd.render(result, json_out)


def register(app: typer.Typer) -> None:
    """Add `setup` to the app."""
    app.command("setup")(setup)
