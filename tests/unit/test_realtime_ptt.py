"""Push-to-talk end to end without a sound card: the real client loop, the repeater server
over loopback, a fake mic, and the button as a fake RPi.GPIO module (injected at the
import boundary) or the space bar through a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
import threading
import time
import types
from typing import Any

import numpy as np
import pytest

from pivoicectl.errors import UserError
from pivoicectl.realtime.client import ClientOptions, RealtimeClient
from pivoicectl.realtime.edges.ptt_gpio import GpioButton, GpioSettings, load_gpio
from pivoicectl.realtime.edges.ptt_key import KeyButton, KeyTiming
from pivoicectl.realtime.edges.trace_file import TraceWriter
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.protocol import server_events as se
from pivoicectl.realtime.session.conversation import Conversation
from pivoicectl.realtime.session.playback import PlaybackQueue, TruncationMargins
from pivoicectl.standin import LocalServerThread

pytestmark = pytest.mark.timeout(40)

BLOCK_MS = 20


class FakeMic:
    """An AudioEdge whose mic says a vowel-like tone every 20 ms and whose speaker is mute."""

    underflows = 0
    overflows = 0
    sounding_until_s = 0.0
    relaxed_ms = 0

    def __init__(self) -> None:
        n = ev.ms_to_samples(BLOCK_MS)
        t = np.arange(n) / ev.SAMPLE_RATE_HZ
        self.block = (0.2 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
        self._task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop, mic) -> None:
        async def feed() -> None:
            while True:
                mic(self.block, 0.0)
                await asyncio.sleep(BLOCK_MS / 1000)

        self._task = loop.create_task(feed())

    def drain_reports(self) -> list:
        return []

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class QuietUi:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def show(self, kind: str, text: str) -> None:
        self.lines.append((kind, text))


class FakeGpio(types.ModuleType):
    """The RPi.GPIO calls the button uses; `set_level` plays the pin with contact bounce."""

    BCM, IN, PUD_UP, BOTH, LOW, HIGH = 11, 1, 22, 33, 0, 1

    def __init__(self) -> None:
        super().__init__("RPi.GPIO")
        self.level = self.HIGH
        self.callbacks: dict[int, Any] = {}
        self.calls: list[tuple] = []

    def setmode(self, mode: int) -> None:
        self.calls.append(("setmode", mode))

    def setup(self, pin: int, direction: int, pull_up_down: int) -> None:
        self.calls.append(("setup", pin, direction, pull_up_down))

    def add_event_detect(self, pin: int, edge: int, callback) -> None:
        self.callbacks[pin] = callback

    def remove_event_detect(self, pin: int) -> None:
        self.callbacks.pop(pin, None)

    def cleanup(self, pin: int | None = None) -> None:
        self.calls.append(("cleanup", pin))

    def input(self, pin: int) -> int:
        return self.level

    def set_level(self, pin: int, level: int, bounces: int = 3) -> None:
        """Flip the contact a few times within 3 ms (GPIO's own thread), then settle."""

        def bounce() -> None:
            for i in range(bounces * 2 + 1):
                self.level = level if i % 2 == 0 else 1 - level
                self.callbacks[pin](pin)
                time.sleep(0.0005)
            self.level = level

        t = threading.Thread(target=bounce)
        t.start()
        t.join()


async def _until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _client(server: LocalServerThread, button) -> tuple[RealtimeClient, Conversation]:
    config = ev.SessionConfig(turn_detection="none")
    conversation = Conversation(config, PlaybackQueue(TruncationMargins(received_margin_ms=0)))
    options = ClientOptions(url=ev.realtime_url(base_url=server.base_url), api_key="k", chime=False)
    client = RealtimeClient(
        options, conversation, FakeMic(), QuietUi(), TraceWriter(None), button=button
    )
    return client, conversation


def _sequence(server: LocalServerThread) -> list[str]:
    """What the server received, with runs of appends shown as one 'append'."""
    out: list[str] = []
    for t in server.server.log.types("in"):
        name = "append" if t == "input_audio_buffer.append" else t
        if not (name == "append" and out and out[-1] == "append"):
            out.append(name)
    return out


def test_gpio_button_press_clears_release_commits_and_asks_and_press_stops_the_answer(
    monkeypatch,
):
    fake = FakeGpio()
    monkeypatch.setitem(sys.modules, "RPi", types.ModuleType("RPi"))
    monkeypatch.setitem(sys.modules, "RPi.GPIO", fake)

    async def scenario(server: LocalServerThread) -> Conversation:
        button = GpioButton(GpioSettings(pin_bcm=18, debounce_ms=10))
        client, conv = _client(server, button)
        task = asyncio.create_task(client.run())
        await _until(lambda: conv.ready, 10, "session")
        await asyncio.sleep(0.2)  # mic blocks now: none may be sent (button up)
        fake.set_level(18, fake.LOW)
        await asyncio.sleep(0.6)
        fake.set_level(18, fake.HIGH)
        await _until(lambda: conv.playback.queued_samples > 0, 10, "the repeater's answer")
        fake.set_level(18, fake.LOW)  # talk over the answer: it must stop
        await asyncio.sleep(0.3)
        fake.set_level(18, fake.HIGH)
        await _until(lambda: len(conv.turns) >= 2, 10, "the second answer")
        client.stop("test")
        await asyncio.wait_for(task, 10)
        return conv

    with LocalServerThread() as server:
        conv = asyncio.run(asyncio.wait_for(scenario(server), 30))
        seq = _sequence(server)
    assert ("setup", 18, fake.IN, fake.PUD_UP) in fake.calls
    assert ("cleanup", 18) in fake.calls
    # Nothing before the first press; then clear, audio, commit, response.create; the
    # second press stops the running answer (truncate/cancel) before clearing.
    assert seq[:5] == [
        "session.update",
        "input_audio_buffer.clear",
        "append",
        "input_audio_buffer.commit",
        "response.create",
    ], seq
    second = seq[5:]
    assert "response.cancel" in second
    assert second.index("response.cancel") < second.index("input_audio_buffer.clear")
    assert second[-3:] == ["append", "input_audio_buffer.commit", "response.create"], seq
    assert conv.turns[0].interrupted
    assert "input_audio_buffer.append" not in server.server.log.types("in")[:1]


FIVE = [
    "session.update",
    "input_audio_buffer.clear",
    "append",
    "input_audio_buffer.commit",
    "response.create",
]


async def _hold_space(
    master: int, repeat_delay_s: float, interval_s: float, held_s: float
) -> float:
    """What a terminal sends while the space bar is held: a space, then auto-repeats.
    Returns the time of the last space (time.monotonic, like KeyButton's clock)."""
    start = time.monotonic()
    os.write(master, b" ")
    await asyncio.sleep(repeat_delay_s)
    last = time.monotonic()
    while last - start < held_s:
        os.write(master, b" ")
        last = time.monotonic()
        await asyncio.sleep(interval_s)
    return last


def _key_session(timing: KeyTiming, keys) -> list[str]:
    """Run the client against the local server with the space bar on a pseudo-terminal;
    `keys(master)` types; returns what the server received (see `_sequence`)."""
    master, slave = pty.openpty()

    async def scenario(server: LocalServerThread) -> None:
        client, conv = _client(server, KeyButton(fd=slave, timing=timing))
        task = asyncio.create_task(client.run())
        await _until(lambda: conv.ready, 10, "session")
        await keys(master)
        await _until(lambda: len(conv.turns) >= 1, 10, "the answer")
        client.stop("test")
        await asyncio.wait_for(task, 10)

    try:
        with LocalServerThread() as server:
            asyncio.run(asyncio.wait_for(scenario(server), 30))
            return _sequence(server)
    finally:
        os.close(master)
        os.close(slave)


def test_key_button_tap_to_talk_tap_to_send_through_a_pseudo_terminal():
    async def tap_tap(master: int) -> None:
        os.write(master, b" ")  # start talking
        await asyncio.sleep(0.6)  # no auto-repeat came: it was a tap
        os.write(master, b"x ")  # other keys ignored; this space sends

    seq = _key_session(KeyTiming(max_repeat_delay_s=0.3), tap_tap)
    assert seq == FIVE, seq


def test_key_button_hold_reports_press_then_release_through_a_pseudo_terminal():
    """Auto-repeat at 40 ms after a 300 ms delay, as a terminal sends for a held bar."""
    master, slave = pty.openpty()
    reports: list[tuple[float, bool]] = []

    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        button = KeyButton(fd=slave)  # the real timing
        button.start(loop, lambda pressed: reports.append((time.monotonic(), pressed)))
        try:
            first = time.monotonic()
            last = await _hold_space(master, 0.3, 0.04, 1.2)
            await _until(lambda: len(reports) >= 2, 5, "the release")
            await asyncio.sleep(0.3)  # and nothing after it
        finally:
            button.stop()
        return first, last

    try:
        first, last = asyncio.run(asyncio.wait_for(scenario(), 20))
    finally:
        os.close(master)
        os.close(slave)
    assert [pressed for _, pressed in reports] == [True, False], reports
    (pressed_at, _), (released_at, _) = reports
    assert pressed_at - first < 0.2  # at once, not after the repeat delay
    gap = KeyTiming().release_gap_s
    assert last + gap - 0.02 <= released_at < last + KeyTiming().max_release_gap_s + 0.3


def test_key_button_hold_talks_and_sends_through_the_client():
    async def hold(master: int) -> None:
        await _hold_space(master, 0.3, 0.04, 0.8)

    seq = _key_session(KeyTiming(), hold)
    assert seq == FIVE, seq


def test_key_button_counts_a_space_that_waited_through_a_stall_as_a_repeat():
    """The loop was busy past the release deadline while a repeat sat in the terminal:
    the timer reads it first, so the hold goes on instead of release-then-press."""
    master, slave = pty.openpty()
    reports: list[bool] = []

    async def scenario() -> None:
        button = KeyButton(fd=slave)
        button.start(asyncio.get_running_loop(), reports.append)
        try:
            os.write(master, b" ")
            await asyncio.sleep(0.3)
            os.write(master, b" ")  # the first auto-repeat: a hold
            await _until(lambda: button.tracker.deadline_s is not None, 2, "the repeat")
            await asyncio.sleep(0.05)
            os.write(master, b" ")
            time.sleep(0.4)  # a stall: the release deadline passes with the space unread
            button._deadline()  # the timer runs first
            assert reports == [True]
            await asyncio.sleep(0.1)
            assert reports == [True]
            await _until(lambda: len(reports) >= 2, 3, "the release")
        finally:
            button.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 10))
    finally:
        os.close(master)
        os.close(slave)
    assert reports == [True, False]


def test_key_button_ends_a_hold_when_the_terminal_goes_away():
    master, slave = pty.openpty()
    reports: list[bool] = []

    async def scenario() -> None:
        button = KeyButton(fd=slave)
        button.start(asyncio.get_running_loop(), reports.append)
        try:
            os.write(master, b" ")
            await asyncio.sleep(0.3)
            os.write(master, b" ")
            await asyncio.sleep(0.03)
            os.close(master)  # the terminal closes while the bar is held
            await _until(lambda: len(reports) >= 2, 3, "the release")
        finally:
            button.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 10))
    finally:
        os.close(slave)
    assert reports == [True, False]


def test_a_short_tap_sends_no_commit():
    from pivoicectl.realtime.session.conversation import Send

    conv = Conversation(ev.SessionConfig(turn_detection="none"), PlaybackQueue(TruncationMargins()))
    conv.connected(0.0)
    conv.handle(ev.parse_server_event(se.session_created({})), 0.0)
    sent = [
        a.event["type"] for a in conv.ptt_released(1.0, held_audio_ms=40) if isinstance(a, Send)
    ]
    assert sent == ["input_audio_buffer.clear"]


def test_missing_gpio_library_and_bad_pin_are_one_line_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "RPi.GPIO", None)  # import fails like a missing package
    with pytest.raises(UserError) as err:
        load_gpio()
    assert "pivoicectl[gpio]" in err.value.hint
    with pytest.raises(ValueError, match="pin_bcm = 40 is out of range"):
        GpioSettings(pin_bcm=40)


def test_key_mode_without_a_terminal_is_a_user_error():
    r, w = os.pipe()
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(UserError):
            KeyButton(fd=r).start(loop, lambda pressed: None)
    finally:
        loop.close()
        os.close(r)
        os.close(w)
