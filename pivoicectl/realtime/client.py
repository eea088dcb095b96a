"""The client loop of `run`: connection supervision and the plumbing between edges.

All decisions live elsewhere: what to send and show comes from the pure `Conversation`,
when to reconnect from `Reconnector`, when to renew from `SessionRenewal`. This module
only moves data between them and the two edges (a `Connector` for the WebSocket, an
`AudioEdge` for the sound device), so tests can swap either edge.

Threads: the audio callbacks run on PortAudio's thread and only touch the
`PlaybackQueue` and a deque; everything else runs on one asyncio loop, which never
waits on audio.

It is longer than the other modules (about 700 lines) because the loop's tasks share
one connection's state (the outbox, the pacer, the renewal timer) and are easier to
check side by side than spread over modules that would pass that state around.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pivoicectl.errors import UserError
from pivoicectl.realtime.edges.interfaces import AudioEdge, Supervisor, TalkButton, Toolbox, Ui
from pivoicectl.realtime.edges.trace_file import TraceWriter
from pivoicectl.realtime.edges.websocket import (
    ConnectFailed,
    Connection,
    ConnectionLost,
    Connector,
    ConnectRejected,
    connect_websocket,
)
from pivoicectl.realtime.mic.mic_path import MicPath
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.protocol.redact import redact, trace_view
from pivoicectl.realtime.session.conversation import (
    FATAL_ERRORS,
    Action,
    Conversation,
    Finish,
    Record,
    Send,
    Show,
)
from pivoicectl.realtime.session.reconnect import (
    BackoffPolicy,
    Reconnector,
    RenewalPolicy,
    SessionRenewal,
)
from pivoicectl.realtime.session.tool_calls import RunTools, ToolResult
from pivoicectl.realtime.session.uplink import UplinkPacer, UplinkSettings

TICK_S = 0.25
"""How often the session renewal looks for an idle moment once it is due. Playback
reports are drained with every mic block; their timestamps come from the audio
callback, so draining late only delays the bookkeeping. Every wakeup costs CPU (about
0.1 ms each on the 2-core VM that runs the benchmarks), which is why this is not a fast
poll, and why the mic's blocks do it in wakeups they bring anyway."""
SESSION_CREATED_TIMEOUT_S = 10.0
"""A service that accepted the WebSocket but sent no `session.created` within this is
treated as a failed connection (it answers keepalive pings, so nothing else times out)."""
ANSWER_SILENCE_S = 30.0
"""While an answer is under way, this long without any event from the service is a lost
connection. The service streams an answer's deltas and transcript as it makes them."""
FATAL_REPEATS = 2
"""An error no retry can heal (a bad key, no quota) on this many connections in a row
ends the run with exit code 2, so a supervisor does not restart it into a storm."""
SLOW_TICK_S = 1.0
"""The housekeeping interval while no renewal is due (the time limit is a timer of its
own)."""
MIC_GRACE_S = 4.0
"""How long after housekeeping fell due the loop's own timer does it: the mic's blocks
do it meanwhile, in wakeups they bring anyway, so the timer only matters when the audio
stopped (and wakes every few seconds instead of every second)."""
MIC_QUEUE_BLOCKS = 100
"""Mic blocks held while the socket is slow (2 s at 20 ms); older ones are dropped."""

_QUIET_SENDS = frozenset({"input_audio_buffer.append"})
_QUIET_RECVS = frozenset({"response.output_audio.delta", "response.output_audio_transcript.delta"})


@dataclass(frozen=True)
class ClientOptions:
    """Where to connect and when to stop."""

    url: str
    api_key: str
    duration_s: float | None = None
    chime: bool = True
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    renewal: RenewalPolicy = field(default_factory=RenewalPolicy)
    token_url: str | None = None
    """Fetch a client secret here before each connection instead of using `api_key`."""
    token_body: dict[str, Any] = field(default_factory=dict)
    token_timeout_s: float = 5.0
    uplink: UplinkSettings = field(default_factory=UplinkSettings)
    """Batching of quiet mic audio and of speech (off by default here; `run` turns it on)."""
    mic_block_ms: float = 20.0

    def __repr__(self) -> str:
        return f"ClientOptions(url={self.url!r}, token_url={self.token_url!r})"


@dataclass(frozen=True)
class ClientResult:
    reason: str
    elapsed_s: float
    cpu_s: float
    mic_blocks_sent: int
    mic_blocks_dropped: int
    reconnects: int
    renewals: int = 0
    mic_messages_sent: int = 0


class RealtimeClient:
    """One `run`: connect, converse, reconnect, stop.

    `clock` is the time line of everything the client compares: the edges' report and
    `sounding_until_s` times, renewal and backoff. It must read what the event loop's
    timers run on (`time.monotonic` is what asyncio's loop uses), so a test on a loop
    with a virtual clock passes `loop.time` and no wall time enters the run.
    """

    def __init__(
        self,
        options: ClientOptions,
        conversation: Conversation,
        audio: AudioEdge,
        ui: Ui,
        trace: TraceWriter,
        connector: Connector = connect_websocket,
        clock: Callable[[], float] = time.monotonic,
        mic_path: MicPath | None = None,
        button: TalkButton | None = None,
        supervisor: Supervisor | None = None,
        toolbox: Toolbox | None = None,
    ) -> None:
        self.options = options
        self.conversation = conversation
        self.audio = audio
        self.ui = ui
        self.trace = trace
        self.connector = connector
        self.clock = clock
        self.mic_path = mic_path if mic_path is not None and mic_path.active else None
        self.button = button
        self.supervisor = supervisor
        self.toolbox = toolbox
        self._bug: BaseException | None = None
        """An exception of our own in a background task: raised when the run ends."""
        self._told_state = ""
        """The last state the supervisor was told (told again only when it changes)."""
        self._talk_held = False
        self._talk_samples = 0
        self.stop_event = asyncio.Event()
        self.stop_reason = "stopped"
        self._renew = asyncio.Event()
        self._conn: Connection | None = None
        # Mic blocks, and push-to-talk events that must follow the audio before them.
        self._outbox: collections.deque[bytes | dict[str, Any]] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._reconnector = Reconnector(options.backoff, clock)
        self._renewal = SessionRenewal(options.renewal, clock)
        self._secrets: tuple[str, ...] = (options.api_key,)
        self.mic_blocks_sent = 0
        self.mic_blocks_dropped = 0
        self.reconnects = 0
        """Connections replaced after a loss (renewals are counted apart)."""
        self.renewals = 0
        self._background: set[asyncio.Future[None]] = set()
        self._pacer = UplinkPacer(options.uplink, options.mic_block_ms)
        self.mic_messages_sent = 0
        self._housekeeping_s = 0.0
        """When (client clock) housekeeping is next due."""
        self._last_recv = 0.0
        """When (the loop's clock) the service last sent anything."""
        self._fatal_code: str | None = None
        self._fatal_count = 0
        """How many connections in a row the unhealable error `_fatal_code` ended."""
        self._last_reported = ""
        """The last reason for waiting that the user was shown (shown again only when
        it changes)."""
        self._audio_gone: str | None = None
        """Why the audio server is gone for good (the edge gave up waiting for it)."""

    def add_secret(self, secret: str) -> None:
        """Mask `secret` too in what is traced of the events (an MCP server's header,
        sent in session.update); the trace writer should be told as well."""
        if secret and secret not in self._secrets:
            self._secrets = (*self._secrets, secret)

    def stop(self, reason: str) -> None:
        """Ask the run to end (signal handlers, limits); safe to call repeatedly."""
        if not self.stop_event.is_set():
            self.stop_reason = reason
            self.stop_event.set()

    # --- the run ------------------------------------------------------------------------

    async def run(self) -> ClientResult:
        start_s, cpu0 = self.clock(), time.process_time()
        loop = asyncio.get_running_loop()
        self.audio.state_listener = self._on_audio_state
        self.audio.start(loop, self._on_mic)
        ticker = asyncio.create_task(self._tick())
        duration = self.options.duration_s
        limit = (
            loop.call_later(duration, self.stop, f"{duration:g} s elapsed")
            if duration is not None
            else None
        )
        try:
            if self.button is not None:
                self.button.start(loop, self.set_talk)
            if self.options.chime:
                await self._chime()
            await self._supervise()
        finally:
            if limit is not None:
                limit.cancel()
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if self.button is not None:
                self.button.stop()
            self.audio.stop()
            for report in self.audio.drain_reports():
                self._execute(self.conversation.played(report))
        if self._bug is not None:
            raise self._bug
        if self._audio_gone is not None:
            raise UserError(
                self._audio_gone,
                hint="check `systemctl --user status pipewire pipewire-pulse wireplumber`",
                exit_code=1,
            )
        return ClientResult(
            reason=self.stop_reason,
            elapsed_s=self.clock() - start_s,
            cpu_s=time.process_time() - cpu0,
            mic_blocks_sent=self.mic_blocks_sent,
            mic_blocks_dropped=self.mic_blocks_dropped,
            reconnects=self.reconnects,
            renewals=self.renewals,
            mic_messages_sent=self.mic_messages_sent,
        )

    async def _chime(self) -> None:
        """Play the ready sound before connecting (see `edges.chime.ready_chime_pcm`).

        Nothing is streamed meanwhile (there is no connection), so its echo cannot reach
        the service; waits at most 3 s in case the device does not play.
        """
        from pivoicectl.realtime.edges.chime import CHIME_ITEM_ID, ready_chime_pcm

        playback = self.conversation.playback
        playback.push(CHIME_ITEM_ID, CHIME_ITEM_ID, ready_chime_pcm())
        playback.mark_audio_done(CHIME_ITEM_ID)
        deadline = self.clock() + 3.0
        while playback.queued_samples and self.clock() < deadline:
            if self.stop_event.is_set():
                return
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # the tail in the device buffer and the echo path

    async def _bearer(self, ever_connected: bool) -> str | None:
        """The token for the next connection: the API key, or a fresh client secret from
        --token-url. None when stopping. Raises TokenFailed (to retry) once connected
        before; before the first connection any failure is a UserError."""
        if not self.options.token_url:
            return self.options.api_key
        from pivoicectl.realtime.edges.token_source import TokenFailed, fetch_client_secret

        try:
            secret = await self._until_stopped(
                asyncio.to_thread(
                    fetch_client_secret,
                    self.options.token_url,
                    self.options.token_body,
                    self.options.token_timeout_s,
                )
            )
        except TokenFailed as exc:
            if not ever_connected:
                raise UserError(
                    f"--token-url: {exc}", hint="check the backend and --token-url"
                ) from None
            raise
        if secret is None:
            return None
        self._secrets = (*self._secrets, secret.value)
        self.trace.add_secret(secret.value)
        self.trace.write({"type": "token", "expires_at": secret.expires_at})
        return secret.value

    async def _supervise(self) -> None:
        from pivoicectl.realtime.edges.token_source import TokenFailed

        first = True
        renewing = False
        ever_connected = False
        while not self.stop_event.is_set():
            if not first and not renewing:
                self.reconnects += 1
            first = renewing = False
            try:
                bearer = await self._bearer(ever_connected)
            except TokenFailed as exc:
                self.trace.write({"type": "token_failed", "error": str(exc)})
                if not await self._backoff(f"no client secret ({exc})"):
                    return
                continue
            if bearer is None:
                return
            headers = {"Authorization": f"Bearer {bearer}"}
            try:
                conn = await self._until_stopped(self.connector(self.options.url, headers))
            except ConnectRejected as exc:
                raise UserError(
                    f"{self.options.url} refused the connection: {exc}",
                    hint="check the API key (OPENAI_API_KEY) and --url",
                ) from exc
            except ConnectFailed as exc:
                self.trace.write({"type": "connect_failed", "error": str(exc)})
                if not await self._backoff(f"cannot connect ({exc})"):
                    return
                continue
            if conn is None:
                return
            ever_connected = True
            self._conn = conn
            self._reconnector.connected()
            self._renewal.started()
            self._execute(self.conversation.connected(self.clock()))
            outcome = await self._serve(conn)
            self._conn = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)
            self._execute(self.conversation.disconnected(self.clock(), outcome))
            self._count_fatal(self.conversation.fatal_error)
            if outcome == "renew":
                self.renewals += 1
                renewing = True
                # A session that lived until its renewal worked: a drop of the next one
                # is a first failure, not another in a row.
                self._reconnector.reset()
                self.ui.show("status", "(renewing the session before the service's time limit)")
                continue
            if outcome != "stop" and not await self._backoff(f"connection lost ({outcome})"):
                return

    def _count_fatal(self, error: dict[str, Any] | None) -> None:
        """Raise once the same unhealable error ended `FATAL_REPEATS` connections in a row."""
        code = None if error is None else str(error.get("code"))
        self._fatal_count = self._fatal_count + 1 if code == self._fatal_code else 1
        self._fatal_code = code
        if error is not None and self._fatal_count >= FATAL_REPEATS:
            raise UserError(
                f"the service refused the session {self._fatal_count} times: "
                f"{error.get('message') or code} ({code})",
                hint=FATAL_ERRORS.get(code or "", "see the service's message"),
            )

    async def _backoff(self, why: str) -> bool:
        """Wait before the next attempt; False when stopping or giving up.

        The user sees a reason once, not once per attempt (the trace has every one)."""
        delay = self._reconnector.next_delay_s()
        if delay is None:
            raise UserError(f"giving up: {why}", hint="check the network and --url")
        if why != self._last_reported:
            self._last_reported = why
            self.ui.show("status", f"({why}; reconnecting in {delay:.1f} s)")
            self._tell("reconnecting", why)
        self.trace.write({"type": "reconnect_wait", "why": why, "delay_s": round(delay, 3)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), delay)
        return not self.stop_event.is_set()

    async def _until_stopped(self, coro: Any) -> Any:
        """Await `coro` unless stop is requested first (then None)."""
        task = asyncio.ensure_future(coro)
        stopper = asyncio.create_task(self.stop_event.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            conn = await task
            await conn.close()
        return None

    async def _serve(self, conn: Connection) -> str:
        """Run one connection; returns why it ended: stop, renew or a loss reason."""
        self._outbox.clear()  # audio from before this session is stale
        self._renew.clear()
        self._last_recv = asyncio.get_running_loop().time()
        receiver = asyncio.create_task(self._receive(conn))
        sender = asyncio.create_task(self._send_mic(conn))
        watcher = asyncio.create_task(self._watch_service())
        stopper = asyncio.create_task(self.stop_event.wait())
        renewer = asyncio.create_task(self._renew.wait())
        tasks = {receiver, sender, watcher, stopper, renewer}
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks - done:
            task.cancel()
        await asyncio.gather(*(tasks - done), return_exceptions=True)
        # Every finished task's exception is read, not only the one acted on: the socket
        # can close under the receiver and the sender in the same pass, and asyncio logs
        # an exception nobody read ("Task exception was never retrieved", a traceback).
        failed = {task: None if task.cancelled() else task.exception() for task in done}
        if stopper in done:
            return "stop"
        if renewer in done:
            return "renew"
        for task in (receiver, sender, watcher):
            if task in done:
                exc = failed[task]
                if isinstance(exc, ConnectionLost):
                    return f"closed {exc.code}: {exc.reason}" if exc.code else exc.reason
                if exc is not None:
                    raise exc
        return "closed"

    async def _watch_service(self) -> None:
        """End the connection when the service stays silent where it must not.

        Wakes once at the greeting's deadline and then every `ANSWER_SILENCE_S`, so it
        costs nothing while audio flows.
        """
        loop = asyncio.get_running_loop()
        await asyncio.sleep(SESSION_CREATED_TIMEOUT_S)
        if not self.conversation.ready:
            raise ConnectionLost(
                None,
                f"the service sent no session.created within {SESSION_CREATED_TIMEOUT_S:.0f} s",
            )
        while True:
            quiet_s = loop.time() - self._last_recv
            if self.conversation.answering and quiet_s >= ANSWER_SILENCE_S:
                raise ConnectionLost(
                    None, f"the service sent nothing for {quiet_s:.0f} s during an answer"
                )
            # Until this silence would be too long; a full period if it already is but
            # no answer is due (an answer that starts later is caught within two).
            left_s = ANSWER_SILENCE_S - quiet_s
            await asyncio.sleep(left_s if left_s > 0 else ANSWER_SILENCE_S)

    async def _receive(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            text = await conn.recv()
            self._last_recv = loop.time()
            now = self.clock()
            event = ev.parse_server_event(text)
            if event.type not in _QUIET_RECVS:
                self.trace.write(
                    {"type": "recv", "event": trace_view(event.data, self._secrets)}, now
                )
            if event.type == "input_audio_buffer.speech_stopped":
                self._pacer.turn_ended(now)
            actions = self.conversation.handle(event, now)
            if event.type == "session.created":
                self._last_reported = ""  # a working session: report the next problem
            for action in actions:
                if isinstance(action, Send):
                    await self._send(conn, action.event)
                else:
                    self._execute([action])
            if self.conversation.fatal_error is not None:
                code = self.conversation.fatal_error.get("code")
                raise ConnectionLost(None, f"server error {code}")

    async def _send_mic(self, conn: Connection) -> None:
        while True:
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            item = self._outbox.popleft()
            if not self.conversation.ready:
                continue
            if isinstance(item, dict):
                await self._send(conn, item)
                continue
            parts = [item]
            if self.options.uplink.quiet_batch_ms:  # what waited goes out as one append
                outbox = self._outbox
                while outbox and isinstance(head := outbox[0], bytes):
                    outbox.popleft()
                    parts.append(head)
            await conn.send(ev.input_audio_append_text(b"".join(parts)))
            self.mic_blocks_sent += len(parts)
            self.mic_messages_sent += 1

    async def _send(self, conn: Connection, event: dict[str, Any]) -> None:
        if event.get("type") not in _QUIET_SENDS:
            self.trace.write({"type": "send", "event": trace_view(event, self._secrets)})
        await conn.send(ev.dumps(event))

    # --- loop-side callbacks ----------------------------------------------------------------

    def set_talk(self, pressed: bool) -> None:
        """Push-to-talk: the button went down (stop the assistant, clear the input) or up
        (commit, ask for the answer). Runs on the loop."""
        if pressed == self._talk_held:
            return
        self._talk_held = pressed
        now = self.clock()
        if pressed:
            self._talk_samples = 0
            actions = self.conversation.ptt_pressed(now)
        else:
            held_ms = ev.samples_to_ms(self._talk_samples)
            actions = self.conversation.ptt_released(now, held_ms)
        for action in actions:
            if isinstance(action, Send):
                self._enqueue(action.event)  # in order with the audio around it
            else:
                self._execute([action])

    def _enqueue(self, item: bytes | dict[str, Any], wake: bool = True) -> None:
        """Queue for the uplink; `wake=False` lets a quiet block wait for the next send.
        When the socket is slow the oldest audio block gives way; push-to-talk events
        never do (a lost commit loses the whole question)."""
        outbox = self._outbox
        if len(outbox) >= MIC_QUEUE_BLOCKS:
            for index, old in enumerate(outbox):
                if isinstance(old, bytes):
                    del outbox[index]
                    self.mic_blocks_dropped += 1
                    break
        outbox.append(item)
        if wake:
            self._outbox_ready.set()

    def _on_mic(self, pcm: bytes, age_s: float) -> None:
        """A mic block from the audio edge, on the loop, recorded `age_s` ago."""
        self._pump_reports()  # playback bookkeeping rides on the mic's wakeups
        now = self.clock()
        if now >= self._housekeeping_s:  # and so does housekeeping
            self._housekeep(now)
        if self._conn is None:
            return
        if self.supervisor is not None and self.conversation.ready:
            # A session and a mic block: the assistant is up (READY, for systemd).
            self._tell("answering" if self.conversation.answering else "listening")
        if self.button is not None:
            if self._talk_held:  # push-to-talk: only what is said while held
                self._talk_samples += ev.bytes_to_samples(len(pcm))
                self._enqueue(pcm)
            return
        blocks: tuple[bytes, ...] = (pcm,)
        prompt = False  # whether the next block must be read promptly
        playing = self.conversation.playback.queued_samples > 0 or self.audio.sounding_until_s > now
        # Speech over an answer may be a barge-in: it goes every speech batch, even in a
        # moment where the speaker ran dry between two deltas.
        answer = playing or self.conversation.answering
        wake = self._pacer.feed(pcm, now, answer)
        if self.mic_path is not None:
            # When it was recorded, on the timeline of the playback reports.
            decision = self.mic_path.feed(pcm, now - age_s, playing)
            if decision.interrupt_source is not None and self.conversation.ready:
                wake = True
                self._execute(self.conversation.local_interrupt(now, decision.interrupt_source))
            blocks = decision.send
            prompt = self.mic_path.decides_interrupts and (
                playing or self.mic_path.guard.is_closed(now)
            )
        for block in blocks:
            self._enqueue(block, wake)
        # The edge may read the mic as seldom as the uplink sends it (every idle batch
        # while nothing plays, every quiet batch in a quiet room, every speech batch while
        # someone talks), but every block while a device-side decision (local barge-in,
        # echo guard) may stop the assistant.
        self.audio.relaxed_ms = 0 if prompt else self._pacer.period_ms(now, answer)

    def _pump_reports(self) -> None:
        """Hand the playback reports so far to the conversation (and the mic path)."""
        for report in self.audio.drain_reports():
            if self.mic_path is not None:
                self.mic_path.played(report)
            self._execute(self.conversation.played(report))

    def _housekeep(self, now: float) -> None:
        """Renew the session at an idle moment once that is due: checked every `TICK_S`
        while a renewal waits for one, else every `SLOW_TICK_S`."""
        # Not while the mic hears someone: a question that began a moment ago is not yet
        # known to the service, and a renewal now would lose it.
        idle = self.conversation.is_idle(now) and not self._pacer.speech_recent(now)
        if self._conn is not None and self._renewal.should_renew(idle):
            self._renew.set()
        due_in_s = self._renewal.seconds_until_due()
        self._housekeeping_s = now + (TICK_S if due_in_s <= 0 else min(SLOW_TICK_S, due_in_s))

    async def _tick(self) -> None:
        """Housekeeping when no mic block came to do it (`MIC_GRACE_S` after it fell
        due): on a VM each wakeup costs about 0.1 ms of CPU, so the mic's own wakeups
        do it while audio flows."""
        while True:
            now = self.clock()
            if now >= self._housekeeping_s:
                self._pump_reports()
                self._housekeep(now)
            await asyncio.sleep(self._housekeeping_s - now + MIC_GRACE_S)

    def _on_audio_state(self, state: str, text: str) -> None:
        """The audio edge lost the audio server, got it back, or gave up on it.

        While it is away nothing is recorded, so nothing is sent and the service cannot
        take the silence for speech; the answer that was playing is stopped and
        truncated at what the speaker had played, like a barge-in."""
        now = self.clock()
        self.trace.write({"type": f"audio_{state}", "detail": text}, now)
        if state == "lost":
            self.ui.show("status", f"({text}; waiting for it to come back)")
            self._tell("waiting for audio", text)
            self._execute(self.conversation.local_interrupt(now, source="audio_lost"))
        elif state == "back":
            self.ui.show("status", f"({text}; listening again)")
        else:
            self._audio_gone = text
            self.stop("the audio server is gone")

    def _tell(self, state: str, detail: str = "") -> None:
        """Tell the supervisor (systemd, under `service`) a new state, once."""
        if self.supervisor is not None and state != self._told_state:
            self._told_state = state
            self.supervisor.state(state, detail)

    def _execute(self, actions: list[Action]) -> None:
        """Run actions that need no await; `Send`s outside a connection are dropped."""
        for action in actions:
            if isinstance(action, Show):
                # What the service says may quote a key or a header value: masked.
                self.ui.show(action.kind, redact(action.text, self._secrets))
            elif isinstance(action, Record):
                self.trace.write(action.record)
            elif isinstance(action, Finish):
                self.stop(action.reason)
            elif isinstance(action, RunTools):
                self._background_task(self._run_tools(action))
            elif isinstance(action, Send):
                conn = self._conn
                if conn is not None:
                    task = asyncio.ensure_future(self._send_quietly(conn, action.event))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)

    def _background_task(self, coro: Any) -> None:
        """Run `coro` beside the loop's own tasks; an exception in it is a bug of ours:
        it ends the run and is raised from `run()` rather than lost."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)

        def done(t: asyncio.Future[None]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None and self._bug is None:
                self._bug = t.exception()
                self.stop("internal error")

        task.add_done_callback(done)

    async def _run_tools(self, run: RunTools) -> None:
        """Run one answer's calls together, then send their outputs in order on the
        connection that is up now (the conversation decides whether that may be)."""
        if self.toolbox is None:
            outcomes = [
                ToolResult('{"error": "no tools are available"}', False, 0.0, "no tool box")
                for _ in run.calls
            ]
        else:
            toolbox = self.toolbox
            done = await asyncio.gather(*(toolbox.call(c.name, c.arguments) for c in run.calls))
            outcomes = [ToolResult(o.output, o.ok, o.duration_s, o.error) for o in done]
        conn = self._conn
        for action in self.conversation.tool_results(run, outcomes, self.clock()):
            if not isinstance(action, Send):
                self._execute([action])
            elif conn is not None:
                with contextlib.suppress(ConnectionLost):
                    await self._send(conn, action.event)

    async def _send_quietly(self, conn: Connection, event: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionLost):
            await self._send(conn, event)
