"""`RealtimeClient.run()` end to end with both edges faked: an in-memory transport whose
server events the test pushes and whose sent frames it reads, and a sound device whose
mic blocks are numbered and whose speaker plays exactly what the test tells it to.

Why fakes at exactly these two edges: the client loop is plumbing between them and the
pure decision modules (`Conversation`, `Reconnector`, `SessionRenewal`, `UplinkPacer`),
which run for real here. Faking the socket lets a test say "the connection dropped now"
or "this event arrived before that one"; faking the device lets it say "200 ms of the
answer were heard", which is what a truncation has to report. Two tests at the end run
the same loop against the real local server to show renewal beats its session limit.

Time is virtual (`virtual_loop.VirtualClockLoop`): the client reads the loop's clock,
which stands still while anything is ready to run and then jumps to the next timer. So
the intervals asserted here are exact, the service's 10 s and 30 s silences cost no
wall time, and a test waits for a condition (`Harness.until`) by running the loop until
it holds, within a virtual deadline. The fake mic delivers a block every 20 ms of that
clock, or only when the test says so (`autofeed=False`, `burst`).

The rules of when quiet and loud mic audio goes out are `UplinkPacer`'s, tested in
test_uplink.py; here only that the client follows them (merges what waited into one
append, tells the edge how seldom to read the mic, feeds the pacer the answer's and the
turn's state).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from pivoicectl.errors import UserError
from pivoicectl.realtime import client as client_module
from pivoicectl.realtime.client import TICK_S, ClientOptions, ClientResult, RealtimeClient
from pivoicectl.realtime.edges.trace_file import TraceWriter
from pivoicectl.realtime.edges.websocket import ConnectFailed, ConnectionLost, ConnectRejected
from pivoicectl.realtime.mic.echo_guard import EchoGuardSettings
from pivoicectl.realtime.mic.mic_path import MicDecision, MicPath, OnsetMuteSettings
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.session.conversation import Conversation
from pivoicectl.realtime.session.playback import PlaybackQueue, PlayReport
from pivoicectl.realtime.session.reconnect import BackoffPolicy, RenewalPolicy
from pivoicectl.realtime.session.uplink import UplinkSettings
from pivoicectl.standin.server import LocalServerSettings, LocalServerThread
from tests.unit import virtual_loop

pytestmark = pytest.mark.timeout(15)

BLOCK_MS = 20
BLOCK_S = BLOCK_MS / 1000
BLOCK_SAMPLES = ev.ms_to_samples(BLOCK_MS)
FAST_BACKOFF = BackoffPolicy(initial_delay_s=0.1, max_delay_s=0.1, jitter_fraction=0.0)
"""A fixed 100 ms wait."""


def loop_now() -> float:
    """The running loop's clock: the client's too (virtual, but for the last two tests)."""
    return asyncio.get_running_loop().time()


# --- the transport edge ---------------------------------------------------------------------


class FakeConnection:
    """One in-memory WebSocket: `push` server events, read `sent` client events.

    Like the real one, it fails every send and receive with `ConnectionLost` once it was
    dropped (`drop`) or closed by the client (`close`).
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.sent: list[dict[str, Any]] = []
        self.close_calls = 0
        self.opened_s = loop_now()
        self.closed_s: float | None = None
        self._incoming: asyncio.Queue[str | ConnectionLost] = asyncio.Queue()
        self._lost: ConnectionLost | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()

    # the test's side

    def push(self, event: dict[str, Any] | str) -> None:
        """A server frame arrives (a dict is sent as JSON, a str as is)."""
        self._incoming.put_nowait(event if isinstance(event, str) else json.dumps(event))

    def drop(self, code: int | None = None, reason: str = "no close frame (network drop)") -> None:
        """The network goes away: the pending and every later recv/send fail."""
        self._lost = ConnectionLost(code, reason)
        self._incoming.put_nowait(self._lost)

    def stall(self) -> None:
        """The socket's send buffer is full (slow uplink): sends wait until `unstall`."""
        self._flowing.clear()

    def unstall(self) -> None:
        self._flowing.set()

    def types(self) -> list[str]:
        """Sent event types, runs of appends shown as one `append`."""
        out: list[str] = []
        for event in self.sent:
            name = "append" if event["type"] == "input_audio_buffer.append" else event["type"]
            if not (name == "append" and out and out[-1] == "append"):
                out.append(name)
        return out

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.sent if e["type"] == event_type]

    @property
    def closed(self) -> bool:
        return self.close_calls > 0

    # the client's side (the `Connection` protocol)

    async def send(self, text: str) -> None:
        await self._flowing.wait()
        if self._lost is not None:
            raise self._lost
        self.sent.append(json.loads(text))

    async def recv(self) -> str:
        item = await self._incoming.get()
        if isinstance(item, ConnectionLost):
            raise item
        return item

    async def close(self) -> None:
        self.close_calls += 1
        if self.closed_s is None:
            self.closed_s = loop_now()
        if self._lost is None:
            self.drop(1000, "closed by the client")


class FakeConnector:
    """The `Connector`: each call opens a new `FakeConnection` (or fails as scripted).

    `greet`: push `session.created` on every new connection, as the service does.
    `failures`: exceptions raised by the first calls, in order. `hang`: never answer.
    """

    def __init__(
        self,
        greet: bool = False,
        failures: tuple[Exception, ...] = (),
        hang: bool = False,
    ) -> None:
        self.greet = greet
        self.hang = hang
        self.connections: list[FakeConnection] = []
        self.calls: list[tuple[float, str, dict[str, str]]] = []
        self._failures = list(failures)

    async def __call__(self, url: str, headers: dict[str, str]) -> FakeConnection:
        self.calls.append((loop_now(), url, dict(headers)))
        if self.hang:
            await asyncio.Event().wait()
        if self._failures:
            raise self._failures.pop(0)
        conn = FakeConnection(len(self.connections) + 1)
        if self.greet:
            conn.push(session_created(f"sess_{conn.index}"))
        self.connections.append(conn)
        return conn

    @property
    def last(self) -> FakeConnection:
        return self.connections[-1]


# --- the audio edge ---------------------------------------------------------------------------


class FakeDevice:
    """The `AudioEdge`: a mic that delivers a numbered 20 ms block on the loop every 20 ms
    (sample 0 of block n is n), and a speaker that plays only when the test calls `play`.

    `play` pulls from the conversation's `PlaybackQueue` exactly as the output callback
    does and queues the `PlayReport` for `drain_reports`, so what the client believes was
    heard is precisely what the test played.
    """

    underflows = 0
    overflows = 0
    sounding_until_s = 0.0
    relaxed_ms = 0

    def __init__(self, playback: PlaybackQueue, mic_level: int = 0, autofeed: bool = True) -> None:
        self.playback = playback
        self.mic_level = mic_level
        self.autofeed = autofeed
        self.blocks_fed = 0
        self.produced: list[bytes] = []
        """Every mic block handed to the client, in order."""
        self._mic: Callable[[bytes, float], None] | None = None
        self.started = False
        self.stopped = False
        self._reports: list[PlayReport] = []
        self._task: asyncio.Task[None] | None = None

    def block(self, n: int) -> bytes:
        pcm = np.full(BLOCK_SAMPLES, self.mic_level, dtype="<i2")
        pcm[0] = n & 0x7FFF
        return pcm.tobytes()

    def start(self, loop: asyncio.AbstractEventLoop, mic: Callable[[bytes, float], None]) -> None:
        self.started = True
        self._mic = mic

        async def feed() -> None:
            while True:
                self.burst(1)
                await asyncio.sleep(BLOCK_S)

        if self.autofeed:
            self._task = loop.create_task(feed())

    def burst(self, n: int) -> None:
        """`n` mic blocks at once, as when the loop was busy and callbacks queued up."""
        for _ in range(n):
            self.hand_over(self.block(self.blocks_fed), 0.0)

    def hand_over(self, pcm: bytes, age_s: float) -> None:
        """One mic block to the client, recorded `age_s` ago."""
        assert self._mic is not None
        self.produced.append(pcm)
        self._mic(pcm, age_s)
        self.blocks_fed += 1

    def play(self, n_samples: int) -> None:
        """The output callback runs once and hands `n_samples` to the speaker."""
        now = loop_now()
        _, accounting = self.playback.pull(n_samples)
        self._reports.append(
            PlayReport(now, now, accounting.spans, accounting.silence_samples, 0, 0)
        )

    def drain_reports(self) -> list[PlayReport]:
        reports, self._reports = self._reports, []
        return reports

    def stop(self) -> None:
        self.stopped = True
        if self._task is not None:
            self._task.cancel()


class FakeButton:
    """The `TalkButton` edge: the test presses and releases it (on the loop)."""

    def __init__(self) -> None:
        self._on_change: Callable[[bool], None] | None = None
        self.stopped = False

    def start(self, loop: asyncio.AbstractEventLoop, on_change: Callable[[bool], None]) -> None:
        self._on_change = on_change

    def press(self) -> None:
        assert self._on_change is not None
        self._on_change(True)

    def release(self) -> None:
        assert self._on_change is not None
        self._on_change(False)

    def stop(self) -> None:
        self.stopped = True


class RecordingUi:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def show(self, kind: str, text: str) -> None:
        self.lines.append((kind, text))

    def text(self, kind: str) -> list[str]:
        return [t for k, t in self.lines if k == kind]


# --- server events ------------------------------------------------------------------------------


def session_created(session_id: str = "sess_1") -> dict[str, Any]:
    return {"type": "session.created", "event_id": "event_1", "session": {"id": session_id}}


def response_created(response_id: str) -> dict[str, Any]:
    return {"type": "response.created", "response": {"id": response_id, "status": "in_progress"}}


def audio_delta(response_id: str, item_id: str, ms: int) -> dict[str, Any]:
    pcm = np.full(ev.ms_to_samples(ms), 1000, dtype="<i2").tobytes()
    return {
        "type": "response.output_audio.delta",
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": ev.encode_audio(pcm),
    }


def audio_done(response_id: str, item_id: str) -> dict[str, Any]:
    return {"type": "response.output_audio.done", "response_id": response_id, "item_id": item_id}


def response_done(response_id: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "response.done", "response": {"id": response_id, "status": status}}


def speech_started(item_id: str = "item_user") -> dict[str, Any]:
    return {"type": "input_audio_buffer.speech_started", "item_id": item_id, "audio_start_ms": 0}


# --- running a scenario ---------------------------------------------------------------------------


@dataclass
class Harness:
    """Everything a scenario script touches: the client, its two fake edges, the UI."""

    client: RealtimeClient
    conversation: Conversation
    connector: FakeConnector
    device: FakeDevice
    ui: RecordingUi
    run_task: asyncio.Task[ClientResult] | None = None

    async def until(self, predicate: Callable[[], bool], what: str, timeout_s: float = 1.0) -> None:
        """Run the loop until `predicate` holds, at most `timeout_s` of its clock; fail at
        once (with the run's own error) if the run ended first."""
        run = self.run_task
        loop = asyncio.get_running_loop()
        assert isinstance(loop, virtual_loop.VirtualClockLoop)
        try:
            await asyncio.wait_for(
                loop.when(lambda: predicate() or (run is not None and run.done())), timeout_s
            )
        except TimeoutError:
            raise AssertionError(f"no {what} within {timeout_s:g} s") from None
        if not predicate():
            assert run is not None
            run.result()  # raises the run's exception, if any
            raise AssertionError(f"the run ended before {what}")

    async def connected(self, n: int = 1, timeout_s: float = 3.0) -> FakeConnection:
        """Wait for the n-th connection to be open and served."""
        await self.until(lambda: self.conversation.connections >= n, f"connection {n}", timeout_s)
        return self.connector.connections[n - 1]


Script = Callable[[Harness], Awaitable[None]]


def drive(
    script: Script,
    connector: FakeConnector | None = None,
    conversation: Conversation | None = None,
    stop_after_script: bool = True,
    button: FakeButton | None = None,
    autofeed: bool = True,
    mic_path: MicPath | None = None,
    **options: Any,
) -> tuple[ClientResult, Harness]:
    """Run the client and `script` side by side on a virtual clock; stop the client when
    the script is done (unless `stop_after_script` is False: then the run must end by
    itself)."""
    connector = connector or FakeConnector()
    conv = conversation or Conversation(ev.SessionConfig(), PlaybackQueue())
    options.setdefault("chime", False)
    options.setdefault("backoff", FAST_BACKOFF)
    opts = ClientOptions(url="ws://fake/v1/realtime", api_key="sk-test-key-123456", **options)

    async def main() -> tuple[ClientResult, Harness]:
        device = FakeDevice(conv.playback, autofeed=autofeed)
        ui = RecordingUi()
        client = RealtimeClient(
            opts,
            conv,
            device,
            ui,
            TraceWriter(None),
            connector=connector,
            clock=asyncio.get_running_loop().time,
            button=button,
            mic_path=mic_path,
        )
        h = Harness(client, conv, connector, device, ui)
        h.run_task = asyncio.create_task(client.run())
        try:
            await script(h)
        finally:
            if stop_after_script:
                client.stop("test")
        result = await asyncio.wait_for(h.run_task, 3)
        return result, h

    return virtual_loop.run(asyncio.wait_for(main(), 120))


def first_sample(append: dict[str, Any]) -> int:
    """The number of the mic block an `input_audio_buffer.append` carries."""
    return int(np.frombuffer(ev.decode_audio(append["audio"]), dtype="<i2")[0])


# --- session start ----------------------------------------------------------------------------


def test_nothing_is_sent_before_session_created_then_session_update_then_fresh_mic_audio():
    marks: dict[str, int] = {}

    async def script(h: Harness) -> None:
        conn = await h.connected()
        await h.until(lambda: h.device.blocks_fed >= 8, "mic blocks before the session")
        assert conn.sent == []  # mic blocks are flowing, but the session is not there yet
        assert not h.conversation.ready
        marks["fed_at_created"] = h.device.blocks_fed
        conn.push(session_created())
        await h.until(lambda: len(conn.of_type("input_audio_buffer.append")) >= 5, "mic audio")

    result, h = drive(script)
    conn = h.connector.last
    assert conn.types()[:2] == ["session.update", "append"], conn.types()
    update = conn.sent[0]
    assert update["session"] == ev.SessionConfig().session_payload()
    assert update["event_id"].startswith("evt_pv_")
    # The audio streamed is what was said after the session existed, not a backlog
    # (one block may have been in flight at the moment session.created arrived).
    appends = conn.of_type("input_audio_buffer.append")
    first = first_sample(appends[0])
    assert first >= marks["fed_at_created"] - 1, (first, marks)
    numbers = [first_sample(a) for a in appends]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)  # in order, once
    assert result.mic_blocks_sent == len(appends)
    assert h.connector.calls[0][2] == {"Authorization": "Bearer sk-test-key-123456"}
    assert h.device.started and h.device.stopped
    assert result.reason == "test" and result.reconnects == 0


# --- answers, playback and barge-in -----------------------------------------------------------


def test_answer_audio_lands_in_the_playback_queue_in_order():
    async def script(h: Harness) -> None:
        conn = await h.connected()
        conn.push(session_created())
        conn.push(response_created("resp_1"))
        conn.push(audio_delta("resp_1", "item_1", 300))
        conn.push(audio_delta("resp_1", "item_1", 200))
        await h.until(
            lambda: h.conversation.playback.queued_samples == ev.ms_to_samples(500), "audio"
        )
        h.device.play(ev.ms_to_samples(120))

    _, h = drive(script)
    playback = h.conversation.playback
    status = playback.item_status("item_1")
    assert status is not None
    assert status.received_samples == ev.ms_to_samples(500)
    assert status.played_samples == ev.ms_to_samples(120)
    assert playback.queued_samples == ev.ms_to_samples(380)
    turn = h.conversation.turns[0]
    assert turn.response_id == "resp_1" and turn.item_id == "item_1"
    assert turn.first_audible_s is not None  # the device's report reached the conversation


def test_speech_over_the_answer_truncates_at_what_the_device_played():
    async def script(h: Harness) -> None:
        conn = await h.connected()
        conn.push(session_created())
        conn.push(response_created("resp_1"))
        conn.push(audio_delta("resp_1", "item_1", 1000))
        await h.until(lambda: h.conversation.playback.queued_samples > 0, "audio")
        h.device.play(ev.ms_to_samples(150))
        h.device.play(ev.ms_to_samples(100))  # 250 ms heard in two callbacks
        conn.push(speech_started())
        await h.until(lambda: conn.of_type("conversation.item.truncate"), "the truncation")
        conn.push(audio_delta("resp_1", "item_1", 200))  # late: sent before the server knew
        conn.push({"type": "conversation.item.truncated", "item_id": "item_1"})
        await h.until(lambda: h.conversation.playback.late_samples_dropped > 0, "late audio")

    _, h = drive(script)
    conn = h.connector.last
    (truncate,) = conn.of_type("conversation.item.truncate")
    assert truncate["item_id"] == "item_1"
    assert truncate["content_index"] == 0
    assert truncate["audio_end_ms"] == 250
    # Server VAD with interrupt_response cancels the answer itself: no response.cancel.
    assert conn.of_type("response.cancel") == []
    assert h.conversation.playback.queued_samples == 0  # the speaker went quiet at once
    assert h.conversation.turns[0].interrupted
    assert any(t.startswith("(interrupted after") for t in h.ui.text("status"))


def test_unknown_garbage_and_error_events_do_not_end_the_session():
    async def script(h: Harness) -> None:
        conn = await h.connected()
        conn.push(session_created())
        conn.push({"type": "some.future_event", "whatever": [1, 2]})
        conn.push("this is not JSON")
        conn.push("[1, 2, 3]")
        conn.push({"type": "response.created", "response": "not an object"})
        conn.push(
            {
                "type": "error",
                "event_id": "event_9",
                "error": {
                    "type": "invalid_request_error",
                    "code": "invalid_value",
                    "message": "Something was wrong",
                },
            }
        )
        conn.push({"type": "error", "error": None})
        # Still alive: an answer afterwards is played and mic audio keeps flowing.
        conn.push(response_created("resp_1"))
        conn.push(audio_delta("resp_1", "item_1", 100))
        await h.until(lambda: h.conversation.playback.queued_samples > 0, "audio after errors")
        sent = len(conn.of_type("input_audio_buffer.append"))
        await h.until(
            lambda: len(conn.of_type("input_audio_buffer.append")) > sent + 2, "more mic audio"
        )

    result, h = drive(script)
    assert len(h.connector.calls) == 1 and result.reconnects == 0
    assert h.conversation.errors[0]["code"] == "invalid_value"
    assert any("Something was wrong" in t for t in h.ui.text("error"))
    assert result.reason == "test"


def test_what_the_service_says_is_shown_with_the_key_masked():
    async def script(h: Harness) -> None:
        conn = await h.connected()
        conn.push(session_created())
        message = "Incorrect API key provided: sk-test-key-123456 (Bearer abc.def)"
        conn.push({"type": "error", "error": {"type": "x", "message": message}})
        await h.until(lambda: bool(h.ui.text("error")), "the error line")

    _result, h = drive(script)
    (line,) = h.ui.text("error")
    assert "sk-test-key-123456" not in line and "abc.def" not in line
    assert "Incorrect API key provided: [REDACTED]" in line


def test_the_echo_gate_stays_shut_while_the_edge_says_its_speaker_still_sounds():
    """The queue is empty, but the edge still holds audio ahead of the speaker (the
    libpulse edge keeps it at the server): the gate must treat that as playing."""
    marks: dict[str, int] = {}

    async def script(h: Harness) -> None:
        conn = await h.connected()
        conn.push(session_created())
        appends = lambda: len(conn.of_type("input_audio_buffer.append"))  # noqa: E731
        await h.until(lambda: appends() >= 3, "mic audio")
        h.device.sounding_until_s = loop_now() + 0.3
        before = appends()
        # Blocks come every 20 ms from now on; the one at 400 ms ends the tail: skip it.
        await asyncio.sleep(0.39)
        marks["during"] = appends() - before  # the sound and the 100 ms tail
        await asyncio.sleep(0.02)
        before = appends()
        await asyncio.sleep(0.2)
        marks["after"] = appends() - before

    guard = EchoGuardSettings(mode="gate", tail_ms=100)
    drive(script, mic_path=MicPath(guard_settings=guard, onset_settings=OnsetMuteSettings(0)))
    assert marks == {"during": 0, "after": 10}  # every 20 ms block once the gate opened


# --- losing the connection ---------------------------------------------------------------------


def test_a_dropped_connection_reconnects_after_the_backoff_and_resends_the_session():
    marks: dict[str, float] = {}

    async def script(h: Harness) -> None:
        first = await h.connected()
        await h.until(lambda: len(first.of_type("input_audio_buffer.append")) >= 2, "audio")
        first.drop()
        marks["dropped_s"] = loop_now()
        second = await h.connected(2)
        await h.until(lambda: len(second.sent) >= 2, "the second session")

    result, h = drive(script, connector=FakeConnector(greet=True))
    first, second = h.connector.connections
    (_, url, headers) = h.connector.calls[1]
    assert second.opened_s - marks["dropped_s"] == pytest.approx(FAST_BACKOFF.initial_delay_s)
    assert first.closed  # the client let go of the dead socket
    assert second.types()[:2] == ["session.update", "append"]
    assert second.sent[0]["session"] == first.sent[0]["session"]
    assert second.sent[0]["event_id"] != first.sent[0]["event_id"]
    assert url == "ws://fake/v1/realtime"
    assert headers["Authorization"] == "Bearer sk-test-key-123456"
    assert result.reconnects == 1
    assert h.conversation.connections == 2
    assert any("connection lost" in t and "reconnecting in 0.1 s" in t for t in h.ui.text("status"))


def test_a_drop_mid_answer_closes_the_turn_and_the_next_connection_works():
    async def script(h: Harness) -> None:
        first = await h.connected()
        first.push(response_created("resp_1"))
        first.push(audio_delta("resp_1", "item_1", 200))
        await h.until(lambda: h.conversation.playback.queued_samples > 0, "audio")
        first.drop(1011, "internal error")
        second = await h.connected(2)
        await h.until(lambda: bool(second.sent), "the second session")
        second.push(response_created("resp_2"))
        second.push(audio_delta("resp_2", "item_2", 100))
        await h.until(lambda: len(h.conversation.turns) == 2, "the second answer")

    _, h = drive(script, connector=FakeConnector(greet=True))
    assert h.conversation.turns[0].status == "disconnected"
    assert any("closed 1011: internal error" in t for t in h.ui.text("status"))


def test_failed_connects_are_retried_with_backoff_and_a_rejection_is_a_user_error():
    async def script(h: Harness) -> None:
        conn = await h.connected()
        await h.until(lambda: bool(conn.sent), "the session")

    failing = FakeConnector(greet=True, failures=(ConnectFailed("refused"), ConnectFailed("x")))
    result, h = drive(script, connector=failing)
    times = [t for t, _, _ in h.connector.calls]
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([0.1, 0.1])
    assert result.reconnects == 2

    async def never(h: Harness) -> None:
        await h.until(lambda: False, "nothing", timeout_s=2)

    with pytest.raises(UserError, match="refused the connection"):
        drive(never, connector=FakeConnector(failures=(ConnectRejected("HTTP 401"),)))
    gives_up = BackoffPolicy(initial_delay_s=0.01, max_delay_s=0.01, max_attempts=1)
    with pytest.raises(UserError, match="giving up"):
        drive(
            never,
            connector=FakeConnector(failures=(ConnectFailed("a"), ConnectFailed("b"))),
            backoff=gives_up,
        )


def test_a_service_that_never_says_session_created_is_a_failed_connection():
    """It accepts the WebSocket and answers pings, so only our own deadline notices."""
    timeout_s = client_module.SESSION_CREATED_TIMEOUT_S

    async def script(h: Harness) -> None:
        await h.until(lambda: bool(h.connector.connections), "the first connection")
        silent = h.connector.last
        await h.until(lambda: len(h.connector.connections) == 2, "a second one", timeout_s + 1)
        assert silent.closed_s == pytest.approx(silent.opened_s + timeout_s)
        second = h.connector.last
        assert second.opened_s == pytest.approx(silent.closed_s + FAST_BACKOFF.initial_delay_s)
        second.push(session_created("sess_2"))
        await h.until(lambda: bool(second.of_type("session.update")), "the second session")

    result, h = drive(script, connector=FakeConnector(greet=False), autofeed=False)
    assert result.reconnects == 1
    assert h.connector.connections[0].sent == []  # nothing was sent to the silent one
    statuses = h.ui.text("status")
    assert any("no session.created within 10 s" in t and "reconnecting" in t for t in statuses)


def test_a_service_silent_during_an_answer_is_a_lost_connection():
    silence_s = client_module.ANSWER_SILENCE_S
    marks: dict[str, float] = {}

    async def script(h: Harness) -> None:
        first = await h.connected()
        await asyncio.sleep(2 * silence_s)  # quiet while no answer is due: nothing happens
        assert not first.closed
        first.push(response_created("resp_1"))  # an answer starts, then nothing more
        marks["answer_s"] = loop_now()
        await h.until(lambda: first.closed, "the silence noticed", 2 * silence_s + 1)
        marks["closed_s"] = loop_now()
        await h.connected(2)

    result, h = drive(script, connector=FakeConnector(greet=True), autofeed=False)
    # Caught once it lasted the limit, at the watcher's next look (within two limits).
    assert silence_s <= marks["closed_s"] - marks["answer_s"] <= 2 * silence_s, marks
    assert result.reconnects == 1
    assert h.conversation.turns[0].status == "disconnected"
    assert any("sent nothing for 30 s during an answer" in t for t in h.ui.text("status"))


def fatal(code: str = "insufficient_quota") -> dict[str, Any]:
    return {
        "type": "error",
        "error": {
            "type": "insufficient_quota",
            "code": code,
            "message": "You exceeded your quota.",
        },
    }


def test_the_same_unhealable_error_twice_in_a_row_ends_the_run_with_exit_2():
    async def script(h: Harness) -> None:
        for n in (1, 2, 3):
            conn = await h.connected(n)
            await h.until(lambda c=conn: bool(c.sent), "the session")
            conn.push(fatal())

    with pytest.raises(UserError) as caught:
        drive(script, connector=FakeConnector(greet=True), stop_after_script=False)
    err = caught.value
    assert err.exit_code == 2
    assert "refused the session 2 times: You exceeded your quota. (insufficient_quota)" in (
        err.message
    )
    assert "quota" in err.hint


def test_a_working_session_or_a_transient_error_between_fatal_ones_keeps_reconnecting():
    async def script(h: Harness) -> None:
        first = await h.connected()
        first.push(fatal())  # ends this connection...
        second = await h.connected(2)
        await h.until(lambda: bool(second.sent), "the second session")
        second.drop(1011, "internal error")  # ...a session without it resets the count
        third = await h.connected(3)
        third.push(fatal())
        fourth = await h.connected(4)
        fourth.push({"type": "error", "error": {"code": "server_error", "message": "oops"}})
        fourth.drop(1011, "internal error")
        await h.connected(5)

    result, _ = drive(script, connector=FakeConnector(greet=True))
    assert result.reconnects == 4


def test_a_reason_for_reconnecting_is_shown_once_not_once_per_attempt():
    async def script(h: Harness) -> None:
        conn = await h.connected()
        await h.until(lambda: bool(conn.sent), "the session")

    failures = tuple(ConnectFailed("refused") for _ in range(3))
    _, h = drive(script, connector=FakeConnector(greet=True, failures=failures))
    shown = [t for t in h.ui.text("status") if "cannot connect" in t]
    assert len(shown) == 1 and len(h.connector.calls) == 4


# --- ending the run ---------------------------------------------------------------------------


def test_the_run_ends_when_duration_s_has_elapsed():
    async def script(h: Harness) -> None:
        await h.connected()

    result, h = drive(
        script, connector=FakeConnector(greet=True), stop_after_script=False, duration_s=0.3
    )
    assert result.reason == "0.3 s elapsed"
    assert result.elapsed_s == pytest.approx(0.3)
    assert h.connector.last.closed
    assert h.device.stopped


def test_duration_s_also_ends_a_run_stuck_connecting_or_waiting_to_reconnect():
    async def script(h: Harness) -> None:
        await h.until(lambda: bool(h.connector.calls), "a connect attempt")

    result, _ = drive(
        script, connector=FakeConnector(hang=True), stop_after_script=False, duration_s=0.3
    )
    assert result.reason == "0.3 s elapsed" and result.elapsed_s == pytest.approx(0.3)
    slow = BackoffPolicy(initial_delay_s=30, max_delay_s=30)
    result, h = drive(
        script,
        connector=FakeConnector(failures=(ConnectFailed("down"),)),
        stop_after_script=False,
        duration_s=0.3,
        backoff=slow,
    )
    assert result.reason == "0.3 s elapsed" and result.elapsed_s == pytest.approx(0.3)
    assert len(h.connector.calls) == 1


def test_the_run_ends_after_max_turns_once_the_answer_was_heard():
    conv = Conversation(ev.SessionConfig(), PlaybackQueue(), max_turns=1)

    async def script(h: Harness) -> None:
        conn = await h.connected()
        conn.push(response_created("resp_1"))
        conn.push(audio_delta("resp_1", "item_1", 200))
        conn.push(audio_done("resp_1", "item_1"))
        conn.push(response_done("resp_1"))
        await h.until(lambda: h.conversation.turns and h.conversation.turns[0].done_s, "done")
        await asyncio.sleep(TICK_S + 0.05)  # a tick passes: the answer is still unheard
        assert not h.run_task.done()
        h.device.play(ev.ms_to_samples(200))
        await h.until(lambda: h.run_task.done(), "the end of the run")

    result, h = drive(
        script, connector=FakeConnector(greet=True), conversation=conv, stop_after_script=False
    )
    assert result.reason == "1 turn(s) done"
    assert h.conversation.turns[0].complete
    assert h.connector.last.closed


# --- session renewal ----------------------------------------------------------------------------


def test_renewal_happens_at_the_first_idle_moment_after_renew_after_s():
    renewal = RenewalPolicy(renew_after_s=0.3, session_limit_s=2.0, force_before_limit_s=0.5)
    marks: dict[str, float] = {}

    async def script(h: Harness) -> None:
        first = await h.connected()
        # An answer keeps the session busy past renew_after_s ...
        first.push(response_created("resp_1"))
        first.push(audio_delta("resp_1", "item_1", 200))
        first.push(audio_done("resp_1", "item_1"))
        first.push(response_done("resp_1"))
        await h.until(lambda: h.conversation.turns and h.conversation.turns[0].done_s, "done")
        await asyncio.sleep(0.6)
        assert len(h.connector.connections) == 1  # ... while its audio waits to be heard
        h.device.play(ev.ms_to_samples(200))
        marks["idle_s"] = loop_now()
        second = await h.connected(2)
        await h.until(lambda: bool(second.sent), "the renewed session")

    result, h = drive(script, connector=FakeConnector(greet=True), renewal=renewal)
    first, second = h.connector.connections
    assert first.closed
    age = second.opened_s - first.opened_s
    assert renewal.renew_after_s < age < renewal.force_at_s, age
    assert second.opened_s >= marks["idle_s"]
    assert second.opened_s - marks["idle_s"] <= TICK_S  # at the next check
    assert second.types()[0] == "session.update"
    assert second.sent[0]["session"] == first.sent[0]["session"]
    assert any("renewing the session" in t for t in h.ui.text("status"))
    assert not any("connection lost" in t for t in h.ui.text("status"))  # no backoff
    assert result.reconnects == 0 and result.renewals == 1


def test_a_session_that_lived_until_its_renewal_resets_the_backoff():
    """Drops before and after a renewal each wait the first delay: the renewed session
    worked, so the next drop is not 'another failure in a row'."""
    growing = BackoffPolicy(initial_delay_s=0.1, max_delay_s=10.0, jitter_fraction=0.0)
    renewal = RenewalPolicy(renew_after_s=0.3, session_limit_s=5.0, force_before_limit_s=1.0)
    marks: dict[str, float] = {}

    async def script(h: Harness) -> None:
        first = await h.connected()
        await h.until(lambda: bool(first.sent), "the first session")
        first.drop()
        second = await h.connected(2)
        await h.until(lambda: bool(second.sent), "the second session")
        third = await h.connected(3)  # the renewal
        await h.until(lambda: bool(third.sent), "the renewed session")
        marks["dropped_s"] = loop_now()
        third.drop()
        fourth = await h.connected(4)
        marks["back_s"] = fourth.opened_s

    result, _h = drive(
        script, connector=FakeConnector(greet=True), renewal=renewal, backoff=growing
    )
    assert result.renewals >= 1
    assert marks["back_s"] - marks["dropped_s"] == pytest.approx(0.1)


def test_no_renewal_while_the_mic_hears_someone_the_service_has_not_reported_yet():
    renewal = RenewalPolicy(renew_after_s=0.3, session_limit_s=10.0, force_before_limit_s=2.0)
    marks: dict[str, float] = {}

    async def script(h: Harness) -> None:
        first = await h.connected()
        await h.until(lambda: bool(first.sent), "the first session")
        h.device.mic_level = LOUD_LEVEL  # a question starts; no speech_started comes
        await asyncio.sleep(1.0)
        marks["quiet_s"] = loop_now()
        h.device.mic_level = 0
        second = await h.connected(2)
        marks["renewed_s"] = second.opened_s

    drive(script, connector=FakeConnector(greet=True), renewal=renewal, uplink=BATCHED)
    hangover_s = BATCHED.hangover_ms / 1000
    assert marks["renewed_s"] >= marks["quiet_s"] + hangover_s - 0.05


def test_renewal_is_forced_before_the_limit_when_never_idle():
    renewal = RenewalPolicy(renew_after_s=0.3, session_limit_s=1.0, force_before_limit_s=0.4)

    async def script(h: Harness) -> None:
        first = await h.connected()
        first.push(speech_started())  # the user talks and talks: never idle
        await h.until(lambda: h.conversation.user_speaking, "speech")
        second = await h.connected(2)
        await h.until(lambda: bool(second.sent), "the renewed session")

    _, h = drive(script, connector=FakeConnector(greet=True), renewal=renewal)
    first, second = h.connector.connections
    age = second.opened_s - first.opened_s
    assert renewal.force_at_s <= age < renewal.session_limit_s, age
    assert second.types()[0] == "session.update"


def test_renewal_keeps_renewing_each_new_session():
    renewal = RenewalPolicy(renew_after_s=0.3, session_limit_s=2.0, force_before_limit_s=0.5)

    async def script(h: Harness) -> None:
        third = await h.connected(3)
        await h.until(lambda: bool(third.sent), "the third session")

    _, h = drive(script, connector=FakeConnector(greet=True), renewal=renewal)
    opened = [c.opened_s for c in h.connector.connections]
    gaps = [b - a for a, b in itertools.pairwise(opened)]
    assert all(renewal.renew_after_s <= g < renewal.force_at_s for g in gaps), gaps
    assert all(c.types()[0] == "session.update" for c in h.connector.connections)


# --- against the real local server ---------------------------------------------------------------


def _run_against(
    server: LocalServerThread, duration_s: float, renewal: RenewalPolicy
) -> tuple[ClientResult, RecordingUi]:
    """A silent mic (the server's VAD hears nothing, so the session is idle) for
    `duration_s` against `server` over real loopback WebSockets."""
    conv = Conversation(ev.SessionConfig(), PlaybackQueue())
    ui = RecordingUi()
    options = ClientOptions(
        url=ev.realtime_url(base_url=server.base_url),
        api_key="k",
        chime=False,
        duration_s=duration_s,
        backoff=FAST_BACKOFF,
        renewal=renewal,
    )

    async def main() -> ClientResult:
        client = RealtimeClient(options, conv, FakeDevice(conv.playback), ui, TraceWriter(None))
        return await client.run()

    return asyncio.run(asyncio.wait_for(main(), 10)), ui


def _expired(server: LocalServerThread) -> list[int]:
    """Connections the server ended with session_expired."""
    return [
        e.connection_id
        for e in server.server.log.entries("out")
        if e.type == "error" and e.detail.get("code") == "session_expired"
    ]


def test_local_server_session_limit_ends_a_session_that_is_not_renewed():
    """The control for the next test: the server's limit really cuts the session."""
    with LocalServerThread(LocalServerSettings(session_limit_s=1.0)) as server:
        result, ui = _run_against(server, 1.4, RenewalPolicy())
        assert _expired(server) == [1]
    assert result.reconnects >= 1
    assert any("session_expired" in t for t in ui.text("error"))


def test_local_server_renewal_comes_before_the_session_limit():
    renewal = RenewalPolicy(renew_after_s=0.3, session_limit_s=1.0, force_before_limit_s=0.4)
    with LocalServerThread(LocalServerSettings(session_limit_s=1.0)) as server:
        result, ui = _run_against(server, 1.4, renewal)
        assert _expired(server) == []
        ids = sorted({e.connection_id for e in server.server.log.entries("in")})
        assert len(ids) >= 2
        for cid in ids:
            assert server.server.log.types("in", cid)[0] == "session.update"
    assert result.reconnects == 0 and result.renewals >= 1
    assert ui.text("error") == []
    assert any("renewing the session" in t for t in ui.text("status"))


# --- regressions: two bugs this file found in the client loop ----------------------------------


def test_renewal_does_not_drop_a_question_whose_answer_has_not_started():
    renewal = RenewalPolicy(renew_after_s=0.3, session_limit_s=2.0, force_before_limit_s=0.5)
    button = FakeButton()
    conv = Conversation(ev.SessionConfig(turn_detection="none"), PlaybackQueue())

    async def script(h: Harness) -> None:
        conn = await h.connected()
        await h.until(lambda: h.conversation.ready, "the session")
        button.press()  # talking through the renew_after_s mark: not idle
        await asyncio.sleep(0.45)
        button.release()  # commit + response.create go out
        await h.until(lambda: conn.of_type("response.create"), "the question")
        await asyncio.sleep(TICK_S + 0.1)  # the service is still thinking
        assert len(h.connector.connections) == 1, "renewed before the answer began"

    drive(
        script,
        connector=FakeConnector(greet=True),
        conversation=conv,
        button=button,
        renewal=renewal,
    )


def test_a_stalled_uplink_drops_mic_audio_but_never_push_to_talk_events():
    button = FakeButton()
    conv = Conversation(ev.SessionConfig(turn_detection="none"), PlaybackQueue())

    async def script(h: Harness) -> None:
        conn = await h.connected()
        await h.until(lambda: h.conversation.ready and bool(conn.sent), "the session")
        conn.stall()
        button.press()
        h.device.burst(10)  # the first question (200 ms)
        button.release()
        button.press()
        h.device.burst(120)  # the second, longer than the queue holds while stalled
        button.release()
        conn.unstall()
        await h.until(lambda: len(conn.of_type("input_audio_buffer.commit")) >= 2, "commits")
        await h.until(lambda: len(conn.of_type("response.create")) >= 2, "both questions")

    result, _ = drive(
        script,
        connector=FakeConnector(greet=True),
        conversation=conv,
        button=button,
        autofeed=False,
    )
    assert result.mic_blocks_dropped > 0


# --- batching quiet mic audio (ClientOptions.uplink) -------------------------------------------
#
# The fake mic's blocks are all zeros but for sample 0 (the block number), far below
# -55 dBFS: quiet for the pacer. Setting `device.mic_level` makes the next blocks loud.

BATCHED = UplinkSettings(quiet_batch_ms=5 * BLOCK_MS)
LOUD_LEVEL = 3000
"""Every sample at 3000: about -21 dBFS, far above UplinkSettings.loud_dbfs."""
BLOCK_BYTES = BLOCK_SAMPLES * 2


def appended(conn: FakeConnection) -> list[bytes]:
    """The audio of each `input_audio_buffer.append`, in order."""
    return [ev.decode_audio(a["audio"]) for a in conn.of_type("input_audio_buffer.append")]


def drive_batched(script: Script, **options: Any) -> tuple[ClientResult, Harness]:
    """`drive` with quiet audio batched, the mic fed by the test (unless `autofeed`)."""
    options.setdefault("autofeed", False)
    options.setdefault("uplink", BATCHED)
    return drive(script, connector=FakeConnector(greet=True), mic_block_ms=BLOCK_MS, **options)


async def ready_session(h: Harness) -> FakeConnection:
    conn = await h.connected()
    await h.until(lambda: h.conversation.ready and bool(conn.sent), "the session")
    await asyncio.sleep(0.05)  # nothing more in flight
    return conn


def test_batched_quiet_audio_arrives_merged_whole_in_order_and_nothing_lost():
    async def script(h: Harness) -> None:
        conn = await h.connected()
        await h.until(lambda: len(appended(conn)) >= 6, "six appends")

    result, h = drive_batched(script, autofeed=True)
    chunks = appended(h.connector.last)
    blocks_per_append = [len(c) // BLOCK_BYTES for c in chunks]
    assert all(len(c) % BLOCK_BYTES == 0 for c in chunks)
    # Five 20 ms blocks in each 100 ms batch, sent as one append.
    assert blocks_per_append == [5] * len(chunks), blocks_per_append
    assert result.mic_messages_sent == len(chunks)
    assert result.mic_blocks_sent == sum(blocks_per_append)
    assert result.mic_blocks_dropped == 0
    # What arrived is exactly a contiguous run of what the mic produced.
    start = first_sample(h.connector.last.of_type("input_audio_buffer.append")[0])
    sent = h.device.produced[start : start + result.mic_blocks_sent]
    assert b"".join(chunks) == b"".join(sent)
    # Only what came before the session, and a batch still waiting at the stop (under
    # five blocks), is left unsent.
    assert len(h.device.produced) - (start + result.mic_blocks_sent) < 5


async def two_quiet_blocks_then_speech(h: Harness) -> FakeConnection:
    """Two quiet blocks that wait, then a loud one that sends all three as one append."""
    conn = await ready_session(h)
    h.device.burst(2)  # quiet: they wait
    await asyncio.sleep(0.05)
    assert appended(conn) == []
    h.device.mic_level = LOUD_LEVEL
    h.device.burst(1)  # speech starts: it and the two before it go out now
    await h.until(lambda: len(appended(conn)) == 1, "the loud block")
    assert appended(conn) == [b"".join(h.device.produced[0:3])]
    return conn


def test_the_edge_may_read_the_mic_seldom_only_while_the_room_is_quiet():
    seen: dict[str, int] = {}

    async def script(h: Harness) -> None:
        await ready_session(h)
        h.device.burst(2)
        seen["quiet"] = h.device.relaxed_ms
        h.device.mic_level = LOUD_LEVEL
        h.device.burst(1)
        seen["loud"] = h.device.relaxed_ms
        h.device.mic_level = 0
        h.device.burst(1)
        seen["hangover"] = h.device.relaxed_ms  # 800 ms after the loud block: not yet

    drive_batched(script)
    assert seen == {"quiet": BATCHED.quiet_batch_ms, "loud": 0, "hangover": 0}

    async def unbatched(h: Harness) -> None:
        await ready_session(h)
        h.device.burst(3)
        seen["unbatched"] = h.device.relaxed_ms

    drive(unbatched, connector=FakeConnector(greet=True), autofeed=False)
    assert seen["unbatched"] == 0  # without batching every block goes out at once


def test_without_batching_every_block_is_its_own_append():
    async def script(h: Harness) -> None:
        conn = await ready_session(h)
        h.device.burst(7)  # even a burst queued at once is not merged
        await h.until(lambda: len(appended(conn)) == 7, "seven appends")

    result, h = drive(script, connector=FakeConnector(greet=True), autofeed=False)
    assert h.client.options.uplink.quiet_batch_ms == 0
    assert appended(h.connector.last) == h.device.produced
    assert (result.mic_blocks_sent, result.mic_messages_sent) == (7, 7)


SPEECH_BATCHED = UplinkSettings(quiet_batch_ms=5 * BLOCK_MS, speech_batch_ms=2 * BLOCK_MS)


def relaxed_before_and_while_an_answer_plays(
    uplink: UplinkSettings, mic_path: MicPath | None = None
) -> tuple[int, int]:
    """How seldom the client lets the edge read a quiet mic: before an answer, and once
    one is queued for the speaker."""
    seen: list[int] = []

    async def script(h: Harness) -> None:
        await ready_session(h)
        h.device.burst(2)
        seen.append(h.device.relaxed_ms)
        h.conversation.playback.push("item_1", "resp_1", bytes(48_000))  # an answer plays
        h.device.burst(1)
        seen.append(h.device.relaxed_ms)

    drive_batched(script, uplink=uplink, mic_path=mic_path)
    return seen[0], seen[1]


def test_the_mic_is_read_every_block_while_a_local_decision_may_stop_the_assistant():
    relaxed = relaxed_before_and_while_an_answer_plays(
        SPEECH_BATCHED, mic_path=MicPath(barge_in="local")
    )
    assert relaxed == (SPEECH_BATCHED.quiet_batch_ms, 0)


def test_device_side_decisions_see_each_block_at_the_time_it_was_recorded():
    """An edge that reads five blocks at once hands the older ones with their age: the
    onset mute and the echo guard compare them with when the speaker played."""
    stamps: list[tuple[float, float]] = []

    class SpyPath(MicPath):
        def feed(self, pcm: bytes, now_s: float, playing: bool) -> MicDecision:
            stamps.append((now_s, loop_now()))
            return super().feed(pcm, now_s, playing)

    async def script(h: Harness) -> None:
        await ready_session(h)
        for age_s in (0.080, 0.060, 0.040, 0.020, 0.0):
            h.device.hand_over(h.device.block(0), age_s)

    drive_batched(script, mic_path=SpyPath())
    ages = [called - now_s for now_s, called in stamps[-5:]]
    assert ages == pytest.approx([0.080, 0.060, 0.040, 0.020, 0.0], abs=1e-9)


IDLE_BATCHED = UplinkSettings(
    quiet_batch_ms=5 * BLOCK_MS, speech_batch_ms=2 * BLOCK_MS, idle_batch_ms=10 * BLOCK_MS
)


def test_the_mic_is_read_an_idle_batch_apart_only_while_nothing_plays():
    relaxed = relaxed_before_and_while_an_answer_plays(IDLE_BATCHED)
    assert relaxed == (IDLE_BATCHED.idle_batch_ms, IDLE_BATCHED.quiet_batch_ms)


def test_speech_while_an_answer_is_under_way_goes_every_speech_batch_even_before_its_audio():
    """Someone talking alone is read and sent in talk batches; once an answer is under
    way their speech may be a barge-in, so it goes every speech batch, even while the
    speaker has nothing (the answer's first delta has not come, or it ran dry)."""
    seen: dict[str, int] = {}

    async def script(h: Harness) -> None:
        conn = await ready_session(h)
        h.device.mic_level = LOUD_LEVEL
        h.device.burst(2)
        seen["alone"] = h.device.relaxed_ms
        conn.push(response_created("resp_1"))
        await h.until(lambda: h.conversation.answering, "the answer under way")
        h.device.burst(1)
        seen["answer"] = h.device.relaxed_ms

    talk = UplinkSettings(
        quiet_batch_ms=5 * BLOCK_MS, speech_batch_ms=2 * BLOCK_MS, talk_batch_ms=5 * BLOCK_MS
    )
    drive_batched(script, uplink=talk)
    assert seen == {"alone": talk.talk_batch_ms, "answer": talk.speech_batch_ms}


def test_once_the_service_ended_the_turn_the_quiet_mic_is_read_an_idle_batch_apart_again():
    """The rest of the 800 ms hangover is not spent reading and sending every speech
    batch once the service said `speech_stopped`."""
    seen: dict[str, int] = {}

    async def script(h: Harness) -> None:
        conn = await two_quiet_blocks_then_speech(h)
        h.device.mic_level = 0
        h.device.burst(1)
        seen["hangover"] = h.device.relaxed_ms
        conn.push(speech_started())
        await h.until(lambda: h.conversation.user_speaking, "the turn's start")
        conn.push({"type": "input_audio_buffer.speech_stopped", "item_id": "item_user"})
        await h.until(lambda: not h.conversation.user_speaking, "the turn's end")
        h.device.burst(1)
        seen["ended"] = h.device.relaxed_ms

    drive_batched(script, uplink=IDLE_BATCHED)
    assert seen == {"hangover": 2 * BLOCK_MS, "ended": IDLE_BATCHED.idle_batch_ms}


def test_without_mic_blocks_the_loop_timer_still_renews_a_grace_later():
    """Housekeeping rides on the mic's wakeups; when the audio stopped, the client's own
    timer does it `MIC_GRACE_S` after it fell due."""
    renewal = RenewalPolicy(renew_after_s=0.3, session_limit_s=10.0, force_before_limit_s=0.5)
    marks: dict[str, float] = {}

    async def script(h: Harness) -> None:
        first = await h.connected()
        marks["opened_s"] = first.opened_s
        second = await h.connected(2, timeout_s=6.0)
        marks["renewed_s"] = second.opened_s

    result, h = drive(script, connector=FakeConnector(greet=True), renewal=renewal, autofeed=False)
    assert h.device.produced == []  # not one mic block
    waited = marks["renewed_s"] - marks["opened_s"]
    # Due at 0.3 s; the timer's check comes the grace after that.
    assert waited == pytest.approx(renewal.renew_after_s + client_module.MIC_GRACE_S)
    assert result.renewals == 1


# --- fuzz, live -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_fuzzed_frames_in_a_live_run_never_crash_it_and_the_answer_plays_whole(seed):
    """The pure fuzz test's frames (schema-valid events from openai-python's models, the
    same spoiled, malformed frames) between the deltas of a real answer, through the
    running client: parsed, handled, traced; the run goes on and the answer is whole."""
    from tests.unit.test_realtime_fuzz import acted_on, malformed, valid_events

    rng = random.Random(seed)
    answer = bytes(rng.randrange(256) for _ in range(4800 * 2))
    chunks = [answer[i : i + 961] for i in range(0, len(answer), 961)]  # odd sizes
    noise = valid_events(rng, 20) + acted_on(rng, 20)
    rng.shuffle(noise)

    async def script(h: Harness) -> None:
        conn = await h.connected()
        conn.push(session_created())
        conn.push(response_created("resp_real"))
        for i, chunk in enumerate(chunks):
            conn.push(
                {
                    "type": "response.output_audio.delta",
                    "response_id": "resp_real",
                    "item_id": "item_real",
                    "delta": ev.encode_audio(chunk),
                }
            )
            for event in noise[i * 4 : i * 4 + 4]:
                conn.push(event)
            frame = malformed(rng)
            conn.push(frame if isinstance(frame, str) else frame.decode("latin-1"))
        await h.until(
            lambda: h.conversation.playback.queued_samples >= len(answer) // 2, "the answer"
        )
        await asyncio.sleep(0.5)  # and what the noise may still do to it

    result, h = drive(script)
    assert result.reason == "test" and len(h.connector.calls) == 1
    played, _ = h.conversation.playback.pull(len(answer) // 2)
    assert played == answer
    assert h.conversation.invalid_events >= len(chunks)
