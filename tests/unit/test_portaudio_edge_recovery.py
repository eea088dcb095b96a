"""The PortAudio edge when its device or audio server goes away: it tells the client,
reopens the streams with backoff, and gives up after `audio_timeout_s`.

Why a fake sounddevice here: what is asked is the edge's reaction to a stream that ends
by itself, an open that fails, an input that stalls, and a device that never returns,
which the real room can only show for the first case (that one is in
tests/integration/test_run.py, with PipeWire restarted under `run`). The fake behaves
as PortAudio does where it matters: `finished_callback` runs when a stream ends by
itself and also when an active stream is stopped, aborted or closed.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from pivoicectl.realtime.edges import portaudio
from pivoicectl.realtime.edges.portaudio import SoundDeviceAudio
from pivoicectl.realtime.session.playback import PlaybackQueue

WAIT_S = 5.0
"""Bound on waiting for the control thread; the steps take milliseconds."""


class FakeStream:
    latency = 0.02

    def __init__(self, sd: FakeSoundDevice, kind: str, options: dict[str, Any]) -> None:
        self.sd = sd
        self.kind = kind
        self.options = options
        self.active = False
        self.closed = False

    def start(self) -> None:
        if self.sd.fail_starts:
            raise self.sd.PortAudioError("Unanticipated host error")
        self.active = True

    def _end(self) -> None:
        was_active, self.active = self.active, False
        finished = self.options.get("finished_callback")
        if was_active and finished is not None:
            finished()

    stop = abort = _end

    def close(self) -> None:
        self._end()
        self.closed = True

    def die(self) -> None:
        """What PortAudio's ALSA host does when the audio server goes away."""
        self._end()

    def deliver(self, pcm: bytes) -> None:
        self.options["callback"](pcm, len(pcm) // 2, None, SimpleNamespace(input_overflow=False))


class FakeSoundDevice:
    class PortAudioError(Exception):
        pass

    def __init__(self) -> None:
        self.streams: list[FakeStream] = []
        self.opens = 0
        self.fail_opens = 0
        """How many of the next opens fail (no device yet)."""
        self.fail_starts = False

    def query_devices(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [{"name": "hw:Fake", "index": 0, "max_input_channels": 1, "max_output_channels": 1}]

    def _open(self, kind: str, options: dict[str, Any]) -> FakeStream:
        self.opens += 1
        if self.fail_opens:
            self.fail_opens -= 1
            raise self.PortAudioError("Device unavailable")
        stream = FakeStream(self, kind, options)
        self.streams.append(stream)
        return stream

    def RawInputStream(self, **options: Any) -> FakeStream:
        return self._open("input", options)

    def RawOutputStream(self, **options: Any) -> FakeStream:
        return self._open("output", options)

    def latest(self, kind: str) -> FakeStream:
        return [s for s in self.streams if s.kind == kind][-1]


@pytest.fixture
def sd(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    fake = FakeSoundDevice()
    monkeypatch.setattr("pivoicectl.system.portaudio.load_sounddevice", lambda: fake)
    monkeypatch.setattr(portaudio, "server_answers", lambda: False)  # a plain ALSA device
    monkeypatch.setattr(SoundDeviceAudio, "reopen_delays_s", (0.01, 0.02))
    return fake


class Edge:
    """The edge started on the running loop, with what it tells the client queued."""

    def __init__(self, audio_timeout_s: float = 30.0) -> None:
        self.playback = PlaybackQueue()
        self.audio = SoundDeviceAudio(self.playback, audio_timeout_s=audio_timeout_s)
        self.states: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.mic: list[bytes] = []
        self.audio.state_listener = lambda state, text: self.states.put_nowait((state, text))
        self.audio.start(asyncio.get_running_loop(), lambda pcm, age_s: self.mic.append(pcm))

    async def next_state(self) -> tuple[str, str]:
        return await asyncio.wait_for(self.states.get(), WAIT_S)

    async def silent_report(self) -> None:
        """Until the edge has reported the speaker silent (it handled a flush)."""
        for _ in range(int(WAIT_S / 0.005)):
            if any(not r.spans for r in self.audio.drain_reports()):
                return
            await asyncio.sleep(0.005)
        raise AssertionError("no silent report")


def test_a_stream_that_ends_by_itself_is_reopened_and_the_mic_flows_again(sd):
    async def scenario() -> None:
        edge = Edge()
        first_in, first_out = sd.latest("input"), sd.latest("output")
        sd.fail_opens = 2  # the first two attempts find no device yet
        first_in.die()
        state, text = await edge.next_state()
        assert (state, text) == ("lost", "sound device lost (the input stream ended)")
        state, text = await edge.next_state()
        assert state == "back" and text.startswith("sound device back after "), text
        assert first_in.closed and first_out.closed
        assert sd.opens == 2 + 2 + 2  # the first pair, two failed attempts, the new pair
        new_in = sd.latest("input")
        assert new_in.active and new_in is not first_in
        new_in.deliver(b"\x01\x00" * 480)
        await asyncio.sleep(0)
        assert edge.mic == [b"\x01\x00" * 480]
        # The old pair's late "ended" (PortAudio may call it again on close) is no loss:
        # the flush after it is handled, and nothing else was told.
        first_in.options["finished_callback"]()
        edge.playback.interrupt()
        await edge.silent_report()
        assert edge.states.empty()
        edge.audio.stop()
        assert new_in.closed

    asyncio.run(scenario())


def test_an_answer_queued_while_the_device_was_away_plays_once_it_is_back(sd):
    async def scenario() -> None:
        edge = Edge()
        sd.fail_opens = 1
        sd.latest("input").die()
        assert (await edge.next_state())[0] == "lost"
        edge.playback.push("item", "resp", bytes(4800))
        assert (await edge.next_state())[0] == "back"
        out = sd.latest("output")
        for _ in range(int(WAIT_S / 0.005)):
            if out.active:
                break
            await asyncio.sleep(0.005)
        assert out.active
        edge.audio.stop()

    asyncio.run(scenario())


def test_an_input_that_stalls_without_ending_is_a_loss(sd, monkeypatch):
    monkeypatch.setattr(portaudio, "INPUT_STALL_S", 0.05)
    monkeypatch.setattr(portaudio, "WATCH_EVERY_S", 0.01)

    async def scenario() -> None:
        edge = Edge()
        state, text = await edge.next_state()  # the fake input never calls back
        assert state == "lost" and "no mic audio for 0.05 s" in text, text
        edge.audio.stop()

    asyncio.run(scenario())


def test_an_output_that_cannot_start_is_a_loss(sd):
    async def scenario() -> None:
        edge = Edge()
        sd.fail_starts = True
        edge.playback.push("item", "resp", bytes(4800))
        state, text = await edge.next_state()
        assert state == "lost" and "the output stream failed: Unanticipated host error" in text
        sd.fail_starts = False
        assert (await edge.next_state())[0] == "back"
        edge.audio.stop()

    asyncio.run(scenario())


def test_a_device_that_stays_away_is_gone_after_the_timeout_and_nothing_more_is_tried(sd):
    async def scenario() -> None:
        edge = Edge(audio_timeout_s=0.1)
        sd.fail_opens = 10_000
        sd.latest("input").die()
        assert (await edge.next_state())[0] == "lost"
        state, text = await edge.next_state()
        assert state == "gone"
        assert text.startswith("the sound device did not come back within 0.1 s"), text
        tried = sd.opens
        await asyncio.sleep(0.1)
        assert sd.opens == tried
        edge.audio.stop()

    asyncio.run(scenario())


def test_a_device_missing_at_start_is_a_user_error(sd):
    from pivoicectl.errors import UserError

    sd.fail_opens = 1

    async def scenario() -> None:
        with pytest.raises(UserError, match="cannot open the sound device: Device unavailable"):
            Edge()

    asyncio.run(scenario())
