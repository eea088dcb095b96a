"""Adapters for `pivoicectl run` and `pivoicectl local-server`: options in, one call to
pivoicectl.commands.run, render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_VAD_HELP = "Turn detection: server (server_vad), semantic (semantic_vad) or none."


def register(app: typer.Typer) -> None:
    """Add `run` and `local-server` to the app."""

    @app.command("run")
    def run_cmd(
        url: Annotated[
            str | None,
            typer.Option(help="Realtime WebSocket endpoint \\[default: OpenAI's]."),
        ] = None,
        model: Annotated[str | None, typer.Option(help="Model \\[default: gpt-realtime].")] = None,
        voice: Annotated[str | None, typer.Option(help="Voice \\[default: marin].")] = None,
        instructions: Annotated[
            str | None, typer.Option(help="System instructions for the assistant.")
        ] = None,
        vad: Annotated[str | None, typer.Option(help=_VAD_HELP)] = None,
        input_device: Annotated[
            str | None,
            typer.Option(
                help="Microphone: an audio server source (see `pivoicectl devices`), or with "
                "--audio-backend portaudio a PortAudio name or index \\[default: the default "
                "source]."
            ),
        ] = None,
        output_device: Annotated[
            str | None,
            typer.Option(
                help="Speaker: an audio server sink, or a PortAudio name or index \\[default: "
                "the default sink]."
            ),
        ] = None,
        audio_backend: Annotated[
            str | None,
            typer.Option(
                help="auto, pulse (libpulse on the event loop: the light one) or portaudio "
                "(sounddevice callbacks) \\[default: auto: pulse when the server answers]."
            ),
        ] = None,
        transcribe: Annotated[
            bool | None,
            typer.Option("--transcribe/--no-transcribe", help="Transcribe what you say."),
        ] = None,
        trace: Annotated[
            Path | None, typer.Option(help="Write a JSON-lines session trace to FILE.")
        ] = None,
        local: Annotated[
            bool,
            typer.Option("--local", help="Talk to the embedded repeater server (no key needed)."),
        ] = False,
        max_turns: Annotated[int | None, typer.Option(help="Stop after N answers.", min=1)] = None,
        duration: Annotated[float | None, typer.Option(help="Stop after SECONDS.", min=0.1)] = None,
        audio_timeout: Annotated[
            float | None,
            typer.Option(
                help="How long to wait for an audio server that went away (restart, crash) "
                "before giving up, s. [default: 60]",
                min=1,
                max=3600,
            ),
        ] = None,
        chime: Annotated[
            bool | None,
            typer.Option(
                "--chime/--no-chime",
                help="Play a short ready sound first (trains the echo canceller).",
            ),
        ] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print the summary as one JSON object.")
        ] = False,
        barge_in: Annotated[
            str | None,
            typer.Option(
                help="Who decides you interrupt: server (its VAD), local (a VAD on this "
                "device, faster) or off \\[default: server]."
            ),
        ] = None,
        barge_in_frame_ms: Annotated[
            int | None, typer.Option(help="Local barge-in: VAD frame length \\[default: 30].")
        ] = None,
        barge_in_threshold: Annotated[
            int | None,
            typer.Option(
                help="Local barge-in: speech frames in the window to trigger \\[default: 2]."
            ),
        ] = None,
        barge_in_window_size: Annotated[
            int | None,
            typer.Option(help="Local barge-in: sliding window in frames \\[default: 5]."),
        ] = None,
        barge_in_lockout_seconds: Annotated[
            float | None,
            typer.Option(help="Local barge-in: no interrupt this long after an answer starts."),
        ] = None,
        barge_in_grace_period_seconds: Annotated[
            float | None,
            typer.Option(help="Local barge-in: keep listening this long after the audio ends."),
        ] = None,
        barge_in_vad: Annotated[
            str | None,
            typer.Option(
                help="Local barge-in: energy (numpy) or silero (a neural VAD; pip install "
                "'pivoicectl\\[silero]') \\[default: energy]."
            ),
        ] = None,
        echo_guard: Annotated[
            str | None,
            typer.Option(
                help="Without a working echo canceller: off, gate (mute the mic while the "
                "assistant speaks) or vad-gate (mute, but let you interrupt) \\[default: off]."
            ),
        ] = None,
        echo_tail_ms: Annotated[
            int | None, typer.Option(help="Echo guard: keep the gate shut this long after.")
        ] = None,
        echo_erl_db: Annotated[
            float | None,
            typer.Option(
                help="Echo guard: echo return loss \\[default: the last `measure`, else estimated]."
            ),
        ] = None,
        ptt: Annotated[
            str | None,
            typer.Option(
                help="Push-to-talk instead of turn detection: gpio (a button, "
                "RPi.GPIO) or key (space bar: hold to talk, or tap to start and tap to send)."
            ),
        ] = None,
        gpio_pin: Annotated[
            int | None, typer.Option(help="--ptt gpio: BCM pin of the button \\[default: 18].")
        ] = None,
        token_url: Annotated[
            str | None,
            typer.Option(
                help="Fetch a short-lived client secret from this backend URL before each "
                'connection (POST; JSON {"value": ...}) instead of holding the API key.'
            ),
        ] = None,
        trace_url: Annotated[
            str | None,
            typer.Option(
                help="Also send the trace to this HTTP collector (POST URL/start, "
                "/event, /end) in the background; it never holds up the audio."
            ),
        ] = None,
    ) -> None:
        """Talk with the assistant: full duplex, interrupt it any time.

        Streams the default microphone (source_ec after `pivoicectl setup`) to the
        OpenAI Realtime API and plays the answers on the default speaker.

        Settings also come from PIVOICECTL_* variables and the \\[run] table of
        $XDG_CONFIG_HOME/pivoicectl/config.toml (flags win); the key from OPENAI_API_KEY
        or api_key there.

        Examples:
          pivoicectl run --local                     # the repeater, no key, no network
          pivoicectl run --vad semantic --trace session.jsonl
          pivoicectl run --local --max-turns 2 --json
          pivoicectl run --barge-in local            # stop talking at once when you speak
          pivoicectl run --echo-guard vad-gate       # no echo canceller on this path
        """
        from pivoicectl.commands import run as cmd
        from pivoicectl.realtime.settings import load_run_settings
        from pivoicectl.system import paths

        flags = {
            "url": url,
            "model": model,
            "voice": voice,
            "instructions": instructions,
            "vad": vad,
            "input_device": input_device,
            "output_device": output_device,
            "audio_backend": audio_backend,
            "transcribe": transcribe,
            "trace": str(trace) if trace else None,
            "max_turns": max_turns,
            "duration_s": duration,
            "audio_timeout_s": audio_timeout,
            "local": local or None,
            "chime": chime,
            "barge_in": barge_in,
            "barge_in_frame_ms": barge_in_frame_ms,
            "barge_in_threshold": barge_in_threshold,
            "barge_in_window_size": barge_in_window_size,
            "barge_in_lockout_seconds": barge_in_lockout_seconds,
            "barge_in_grace_period_seconds": barge_in_grace_period_seconds,
            "barge_in_vad": barge_in_vad,
            "echo_guard": echo_guard,
            "echo_tail_ms": echo_tail_ms,
            "echo_erl_db": echo_erl_db,
            "ptt": ptt,
            "gpio_pin": gpio_pin,
            "token_url": token_url,
            "trace_url": trace_url,
        }
        settings = load_run_settings(flags, paths.user_config_file())
        cmd.render_summary(cmd.run(settings, json_out=json_out), json_out)

    @app.command("local-server")
    def local_server_cmd(
        port: Annotated[
            int, typer.Option(help="TCP port on 127.0.0.1 (0 picks a free one).", min=0, max=65535)
        ] = 8765,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        session_limit: Annotated[
            float | None,
            typer.Option(help="End sessions after SECONDS, like the service's 60 min.", min=1),
        ] = None,
    ) -> None:
        """Run a local Realtime-compatible server whose model is a repeater.

        It answers every turn with your own words, honours barge-in, cancel and
        truncate like the service, and needs no key or network.

        Example:  pivoicectl local-server --port 8765  then
                  OPENAI_API_KEY=x pivoicectl run --url ws://127.0.0.1:8765/v1/realtime
        """
        from pivoicectl.commands import run as cmd

        cmd.local_server(host, port, session_limit)
