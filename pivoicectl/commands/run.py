"""`pivoicectl run` and `pivoicectl local-server`: the voice assistant and its stand-in.

`run` wires the pieces: settings (flags > env > config file), the embedded repeater server
for `--local`, the trace, the sound devices, the client loop, and signal handling so
Ctrl+C or SIGTERM end the run cleanly with a summary. The summary is a dataclass that
rich and `--json` both render.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pivoicectl import render
from pivoicectl.errors import UserError
from pivoicectl.realtime.mic.settings import EchoGuardSettings
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.settings import RunSettings, public_view
from pivoicectl.system import journal, scheduling
from pivoicectl.system.sd_notify import Notifier

if TYPE_CHECKING:
    from pivoicectl.realtime.client import RealtimeClient
    from pivoicectl.realtime.edges.trace_file import TraceWriter
    from pivoicectl.realtime.session.conversation import Conversation
    from pivoicectl.realtime.session.reconnect import RenewalPolicy
    from pivoicectl.realtime.session.uplink import UplinkSettings
    from pivoicectl.realtime.settings import AudioSettings
    from pivoicectl.realtime.tools import Toolbox

LOCAL_API_KEY = "local-no-key-needed"
"""The bearer token sent to the embedded server (it accepts any)."""

BENCH_UPLINK_VAR = "PIVOICECTL_BENCH_UPLINK_MS"
"""For `bench/bench_run.py` alone: "QUIET,SPEECH,IDLE,TALK" batch lengths in ms to
measure instead of the fixed `RUN_UPLINK`. Not a setting (no flag, no config key, not
in the docs): the batching is not a user's knob; a malformed value is the bench's bug."""

BENCH_RENEWAL_VAR = "PIVOICECTL_BENCH_RENEWAL_S"
"""For `bench/bench_soak.py` alone: "RENEW_AFTER,LIMIT" seconds for the session renewal
instead of the service's 60-minute limit, so a soak of minutes renews its session (the
stand-in is then given the same limit). Not a setting, like `BENCH_UPLINK_VAR`."""

NO_REALTIME_NOTE = (
    "PipeWire runs without realtime priority: when the machine is busy the echo "
    "canceller falls behind and the assistant may hear itself; `pivoicectl doctor` "
    "says how to fix it"
)
"""Shown at start: measured on a busy 2-core machine, 5 of 161 answers interrupted
themselves without realtime and none of 50 with it."""


@dataclass(frozen=True)
class RunSummary:
    """The end-of-run report: why it stopped, per-turn metrics, usage."""

    reason: str
    url: str
    elapsed_s: float
    cpu_s: float
    cpu_percent: float
    """Of this process over the whole run (with --local, the repeater server's too)."""
    local_server: bool
    connections: int
    reconnects: int
    renewals: int
    mic_blocks_sent: int
    mic_blocks_dropped: int
    mic_messages_sent: int
    """`input_audio_buffer.append` events that carried the mic blocks (quiet ones batched)."""
    underflows: int
    overflows: int
    audio_backend: str
    output_latency_ms: float
    unheard_at_abort_ms: int
    """Subtracted from the audio handed to the device when truncating after a barge-in."""
    turns: list[dict[str, Any]] = field(default_factory=list)
    turns_not_shown: int = 0
    invalid_events: int = 0
    tool_calls: int = 0
    tool_calls_failed: int = 0
    tools: list[dict[str, Any]] = field(default_factory=list)
    """The last calls (name, arguments, ok, duration, error); all are in the trace."""
    """Frames from the service dropped as unusable (not JSON, nested too deep, ...)."""
    usage: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    trace: str | None = None


class ConsoleUi:
    """Live transcript lines. With --json they go to stderr so stdout stays one object.

    Under systemd the stream is the journal: each line then starts with its priority
    (errors at err, the rest at info), so `journalctl -p err` shows the
    errors; rich writes no colour or animation to a stream that is not a terminal.
    """

    STYLES: ClassVar[dict[str, str]] = {
        "user": "bold cyan",
        "assistant": "bold green",
        "status": "dim",
        "error": "red",
    }
    LABELS: ClassVar[dict[str, str]] = {"user": "you", "assistant": "assistant"}

    PRIORITIES: ClassVar[dict[str, int]] = {"error": journal.ERR}

    def __init__(self, to_stderr: bool) -> None:
        self.console = render.err() if to_stderr else render.out()
        stream = sys.stderr if to_stderr else sys.stdout
        self._journal = journal.goes_to_journal(stream)

    def show(self, kind: str, text: str) -> None:
        style = self.STYLES.get(kind, "")
        label = self.LABELS.get(kind)
        line = render.plain(text, "" if label else style)
        if label:
            line = render.plain(f"{label}:", style).append(" ").append_text(line)
        if self._journal:
            priority = self.PRIORITIES.get(kind, journal.INFO)
            line = render.plain(f"<{priority}>").append_text(line)
        self.console.print(line)


def guard_settings(settings: RunSettings) -> tuple[EchoGuardSettings, str | None]:
    """The echo guard's settings, with the echo return loss `measure` found when the
    user gave none (a measured figure beats estimating it during the first answers),
    and a status line saying where the figure came from."""
    guard = settings.echo_guard
    if guard.mode == "off" or guard.erl_db is not None:
        return guard, None
    from pivoicectl.system.last_measure import measured_erl

    measured = measured_erl()
    if measured is None:
        return guard, (
            "(echo guard: no `pivoicectl measure` result; estimating the echo return "
            "loss while the assistant talks)"
        )
    note = (
        f"(echo guard: ERL {measured.erl_db:.1f} dB from `pivoicectl measure` "
        f"of {measured.measured_at})"
    )
    return dataclasses.replace(guard, erl_db=measured.erl_db), note


def settle_heap() -> None:
    """Keep the cyclic garbage collector off the objects that live for the whole run.

    Why: `perf` on `run` in the simulated room put 9 % of its CPU in the collector
    (`gc_collect_main`, `visit_decref`, `visit_reachable`): every older-generation pass
    walked everything the imports (rich, numpy, websockets, the server) had left on the
    heap. Frozen, those are never walked again; what the conversation allocates is
    collected as before.
    """
    gc.collect()
    gc.freeze()


def uplink_settings(environ: Mapping[str, str]) -> UplinkSettings:
    """The mic batching `run` uses: `RUN_UPLINK`, unless the bench asks for another."""
    from pivoicectl.realtime.session.uplink import RUN_UPLINK, UplinkSettings

    raw = environ.get(BENCH_UPLINK_VAR, "")
    if not raw:
        return RUN_UPLINK
    quiet, speech, idle, talk = (int(part) for part in raw.split(","))
    return UplinkSettings(
        quiet_batch_ms=quiet, speech_batch_ms=speech, idle_batch_ms=idle, talk_batch_ms=talk
    )


def renewal_policy(environ: Mapping[str, str]) -> RenewalPolicy:
    """When `run` renews its session: before the service's limit, unless the bench asks."""
    from pivoicectl.realtime.session.reconnect import RenewalPolicy

    raw = environ.get(BENCH_RENEWAL_VAR, "")
    if not raw:
        return RenewalPolicy()
    renew_after_s, limit_s = (float(part) for part in raw.split(","))
    return RenewalPolicy(renew_after_s=renew_after_s, session_limit_s=limit_s)


def wait_for_audio_at_start(audio: AudioSettings, ui: ConsoleUi, notifier: Notifier) -> None:
    """Before opening the mic, wait (bounded by `--audio-timeout`) for the audio server,
    the devices asked for and, after `setup`, source_ec: at boot the assistant can start
    before any of them. Only where an audio server is expected: PortAudio on a machine
    without PipeWire opens its devices directly."""
    if audio.backend == "portaudio" or (audio.backend == "auto" and not shutil.which("pipewire")):
        return
    from pivoicectl.system.audio_ready import needs_for, wait_for_audio

    def waiting(text: str) -> None:
        ui.show("status", f"({text})")
        notifier.status(text)

    def sleep(seconds: float) -> None:
        notifier.watchdog()  # waiting is not hanging
        time.sleep(seconds)

    needs = needs_for(audio.input_device, audio.output_device)
    wait_for_audio(needs, audio.timeout_s, waiting, sleep=sleep)


def load_tools() -> Toolbox:
    """The tools of `[run]` in config.toml: the built-ins it enables and its command
    tools (bad tables are a one-line error naming the file and the field)."""
    from pivoicectl.realtime.settings.loader import read_run_table
    from pivoicectl.realtime.tools import load_toolbox
    from pivoicectl.system import paths

    path = paths.user_config_file()
    return load_toolbox(read_run_table(path), os.environ, str(path))


async def start_tools(
    toolbox: Toolbox,
    client: RealtimeClient,
    conversation: Conversation,
    ui: ConsoleUi,
    trace: TraceWriter,
) -> None:
    """Start the MCP servers the device runs ([[run.mcp]]; one status line for each
    that does not start, its tools left out), then give the conversation every tool to
    declare at session.created and the approvals to answer with. Ctrl+C meanwhile ends
    the wait (the servers are stopped by `toolbox.aclose`)."""

    def warn(text: str) -> None:
        ui.show("status", f"({text})")
        trace.write({"type": "tool_warning", "text": text})

    starting = asyncio.ensure_future(toolbox.start(warn))
    stopping = asyncio.ensure_future(client.stop_event.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return
    starting.result()  # an exception here is a bug of ours: it ends the run
    for secret in toolbox.secrets():
        client.add_secret(secret)
        trace.add_secret(secret)
    conversation.config = dataclasses.replace(
        conversation.config, tools=tuple(toolbox.declarations())
    )
    conversation.mcp.approvals = toolbox.mcp_approvals()
    trace.write({"type": "tools", "names": toolbox.names()})


def run(settings: RunSettings, json_out: bool = False) -> RunSummary:
    """Run the assistant until a limit, Ctrl+C or SIGTERM; returns the summary."""
    from pivoicectl.realtime.client import ClientOptions, RealtimeClient
    from pivoicectl.realtime.edges.choose import open_audio_edge
    from pivoicectl.realtime.edges.ptt import make_button
    from pivoicectl.realtime.edges.service_notify import ServiceNotifier
    from pivoicectl.realtime.edges.trace_file import TraceWriter
    from pivoicectl.realtime.mic.mic_path import MicPath
    from pivoicectl.realtime.session.conversation import Conversation
    from pivoicectl.realtime.session.metrics import summarize
    from pivoicectl.realtime.session.playback import PlaybackQueue, TruncationMargins

    service, ptt = settings.service, settings.ptt
    # What the settings cannot know until they are used is checked before anything starts.
    if ptt.mode == "gpio":
        from pivoicectl.realtime.edges.ptt_gpio import load_gpio

        load_gpio()  # the library is missing, or this is no Pi
    if settings.barge_in.mode == "local":
        settings.barge_in.check_engine()  # the silero extra is missing
    toolbox = load_tools()  # a bad [[run.tools]] table stops here, before anything starts
    server = None
    if service.local:
        from pivoicectl.standin import LocalServerSettings, LocalServerThread

        server = LocalServerThread(
            LocalServerSettings(
                call_tool=service.local_call_tool, call_tool_args=service.local_call_tool_args
            )
        )
        server.start()
        base_url, api_key = server.base_url, LOCAL_API_KEY
    else:
        base_url, api_key = service.url, (service.api_key or "").strip()
        if not api_key and not service.token_url:
            raise UserError(
                "no OpenAI API key",
                hint="set OPENAI_API_KEY or api_key in [run] of "
                "$XDG_CONFIG_HOME/pivoicectl/config.toml; or --token-url; or try --local",
            )
    url = ev.realtime_url(service.model, base_url)
    config = dataclasses.replace(settings.session_config(), tools=tuple(toolbox.declarations()))
    ui = ConsoleUi(to_stderr=json_out)
    sink = None
    if settings.trace.url:
        from pivoicectl.realtime.edges.trace_http import HttpTraceSink

        sink = HttpTraceSink(settings.trace.url)
    trace_file = settings.trace.file
    secrets = (api_key, *toolbox.secrets())  # the MCP servers' headers too
    trace = TraceWriter(Path(trace_file) if trace_file else None, secrets=secrets, sink=sink)
    # The local server checks truncations exactly against the samples it sent; the
    # hosted service has been seen to reject points within tens of ms of the end.
    margin_ms = 0 if service.local else TruncationMargins().received_margin_ms
    playback = PlaybackQueue(TruncationMargins(received_margin_ms=margin_ms))
    conversation = Conversation(
        config, playback, max_turns=settings.limits.max_turns, barge_in=settings.barge_in.mode
    )
    guard, erl_note = guard_settings(settings)
    mic_path = MicPath(settings.barge_in.mode, settings.barge_in, guard, settings.onset_mute)
    notifier = Notifier()
    wait_for_audio_at_start(settings.audio, ui, notifier)
    backend, audio = open_audio_edge(settings.audio, playback)
    options = ClientOptions(
        url=url,
        api_key=api_key,
        duration_s=settings.limits.duration_s,
        chime=settings.audio.chime,
        token_url=None if service.local else service.token_url,
        token_body={"model": service.model, "voice": service.voice},
        uplink=uplink_settings(os.environ),
        renewal=renewal_policy(os.environ),
        mic_block_ms=settings.audio.input_block_ms,
    )
    trace.write(
        {
            "type": "start",
            "url": url,
            "settings": public_view(settings),
            "session": config.session_payload(),
            "echo_guard_erl_db": guard.erl_db,
        }
    )
    ui.show("status", f"connecting to {url} … (Ctrl+C ends)")
    if scheduling.pipewire_realtime() is False:
        ui.show("status", f"({NO_REALTIME_NOTE})")
        trace.write({"type": "warning", "text": NO_REALTIME_NOTE})
    if erl_note:
        ui.show("status", erl_note)
    if ptt.mode == "key":
        ui.show("status", "push-to-talk: hold space to talk, or tap to start and tap again to send")
    elif ptt.mode == "gpio":
        ui.show("status", f"push-to-talk: hold the button on GPIO {ptt.gpio.pin_bcm} to talk")

    async def main() -> Any:
        button = make_button(ptt.mode, ptt.gpio.pin_bcm) if ptt.mode else None
        loop = asyncio.get_running_loop()
        supervisor = ServiceNotifier(notifier) if notifier.enabled else None
        if supervisor is not None:
            supervisor.start_watchdog(loop)
            supervisor.state("connecting", url)
        client = RealtimeClient(
            options,
            conversation,
            audio,
            ui,
            trace,
            mic_path=mic_path,
            button=button,
            supervisor=supervisor,
            toolbox=toolbox,
        )
        for sig, name in ((signal.SIGINT, "Ctrl+C"), (signal.SIGTERM, "SIGTERM")):
            loop.add_signal_handler(sig, client.stop, name)
        try:
            await start_tools(toolbox, client, conversation, ui, trace)
            return await client.run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if supervisor is not None:
                supervisor.stopping(client.stop_reason)
            await toolbox.aclose()

    started = time.monotonic()
    settle_heap()
    try:
        result = asyncio.run(main())
    finally:
        if server is not None:
            server.stop()
    summary_data = summarize(conversation)
    summary = RunSummary(
        reason=result.reason,
        url=url,
        elapsed_s=round(result.elapsed_s, 3),
        cpu_s=round(result.cpu_s, 4),
        cpu_percent=round(100.0 * result.cpu_s / max(1e-9, time.monotonic() - started), 3),
        local_server=service.local,
        connections=summary_data.connections,
        reconnects=result.reconnects,
        renewals=result.renewals,
        mic_blocks_sent=result.mic_blocks_sent,
        mic_blocks_dropped=result.mic_blocks_dropped,
        mic_messages_sent=result.mic_messages_sent,
        underflows=audio.underflows,
        overflows=audio.overflows,
        audio_backend=backend,
        output_latency_ms=round(audio.output_latency_s * 1000, 1),
        unheard_at_abort_ms=audio.unheard_at_abort_ms,
        turns=summary_data.turns,
        turns_not_shown=summary_data.turns_not_shown,
        invalid_events=summary_data.invalid_events,
        tool_calls=conversation.tools.total,
        tool_calls_failed=conversation.tools.failed,
        tools=list(conversation.tools.log),
        usage=summary_data.usage,
        errors=summary_data.errors,
        trace=trace_file,
    )
    trace.write({"type": "end", **render.to_jsonable(summary)})
    trace.close()
    return summary


def render_summary(summary: RunSummary, json_out: bool) -> None:
    if json_out:
        render.print_json(summary)
        return
    from rich.table import Table

    c = render.out()
    c.print(
        f"[bold]session ended[/] ({render.esc(summary.reason)}) after {summary.elapsed_s:.1f} s, "
        f"{summary.connections} connection(s), CPU {summary.cpu_percent:.2f}% of one core"
        + (" (the built-in repeater server's included)" if summary.local_server else "")
    )
    if summary.turns and not c.is_terminal:
        for t in summary.turns:  # one plain line per turn: a log has no room for a table
            reason = f" ({t['reason']})" if t["reason"] else ""
            c.print(
                render.plain(
                    f"turn {t['turn']}: {t['status']}{reason}, voice-to-voice "
                    f"{_fmt_ms(t['voice_to_voice_ms'])}, first audio "
                    f"{_fmt_ms(t['first_audio_latency_ms'])}, interrupt "
                    f"{_fmt_ms(t['interrupt_latency_ms'])}, truncated "
                    f"{_fmt_ms(t['truncate_audio_end_ms'])}"
                )
            )
    elif summary.turns:
        table = Table("turn", "status", "voice-to-voice", "first audio", "interrupt", "truncated")
        for t in summary.turns:
            table.add_row(
                str(t["turn"]),
                render.esc(f"{t['status']}" + (f" ({t['reason']})" if t["reason"] else "")),
                _fmt_ms(t["voice_to_voice_ms"]),
                _fmt_ms(t["first_audio_latency_ms"]),
                _fmt_ms(t["interrupt_latency_ms"]),
                _fmt_ms(t["truncate_audio_end_ms"]),
            )
        c.print(table)
    if summary.turns_not_shown:
        c.print(f"({summary.turns_not_shown} earlier turn(s) are in the trace only)")
    if summary.tool_calls:
        failed = f", {summary.tool_calls_failed} failed" if summary.tool_calls_failed else ""
        names = ", ".join(dict.fromkeys(c["name"] for c in summary.tools))
        c.print(render.plain(f"tools: {summary.tool_calls} call(s){failed} ({names})"))
    if summary.invalid_events:
        c.print(f"({summary.invalid_events} unusable frame(s) from the service were dropped)")
    c.print(
        f"audio ({render.esc(summary.audio_backend)}): {summary.underflows} underrun(s), "
        f"{summary.overflows} overrun(s), output latency {summary.output_latency_ms} ms; "
        f"tokens: {summary.usage.get('total_tokens', 0)}"
    )
    for e in summary.errors:
        c.print(f"[red]error[/] {render.esc(e.get('code'))}: {render.esc(e.get('message'))}")
    if summary.trace:
        c.print(f"trace: {render.esc(summary.trace)}")


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def local_server(
    host: str,
    port: int,
    session_limit_s: float | None = None,
    call_tool: str | None = None,
    call_tool_args: str = "{}",
) -> None:
    """Serve the repeater Realtime server in the foreground until Ctrl+C.

    `call_tool`: after each question, call that function tool (when the session declares
    it) with `call_tool_args`, a JSON object's text; a bad one is a UserError.
    """
    from pivoicectl.standin import LocalServerSettings, serve_forever

    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "call_tool": call_tool,
        "call_tool_args": call_tool_args,
    }
    if session_limit_s is not None:
        kwargs["session_limit_s"] = session_limit_s
    settings = LocalServerSettings(**kwargs)

    def ready(server: Any) -> None:
        render.out().print(
            f"local Realtime server on [bold]{render.esc(server.base_url)}[/] (a repeater; any "
            f"key works)\ntry:  pivoicectl run --url {render.esc(server.base_url)}   "
            "(with OPENAI_API_KEY=anything)",
        )
        if call_tool is not None:
            render.out().print(
                f"after each question it calls the tool {render.esc(call_tool)} when the "
                "session declares it"
            )
        sys.stdout.flush()  # scripts wait for this line on a pipe

    try:
        serve_forever(settings, on_ready=ready)
    except KeyboardInterrupt:
        render.err().print("local server stopped")
