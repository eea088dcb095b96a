"""The libpulse edge's own count of what the server holds, with the stream faked.

Why a fake here: the count is plain arithmetic on write times and sizes, and the cases
that matter (a server that stalls, a reply that is stale) cannot be made to happen on
demand on a real server. The real server is in tests/integration/test_pulse_edge.py.
"""

from __future__ import annotations

import time

import pytest

from pivoicectl.realtime.events import ms_to_samples
from pivoicectl.realtime.playback import PlaybackQueue
from pivoicectl.realtime.pulse_edge import PulseAudioEdge


class FakeSpeaker:
    def __init__(self) -> None:
        self.written_ms: list[float] = []
        self.server_says_s: float | None = None
        self.flushed = 0

    def playback_timing(self, max_age_s: float) -> tuple[float, float | None]:
        return 0.002, self.server_says_s

    def write(self, pcm: bytes) -> None:
        self.written_ms.append(len(pcm) / 48)

    def flush(self) -> None:
        self.flushed += 1


def _edge(queued_ms: int) -> tuple[PulseAudioEdge, FakeSpeaker]:
    queue = PlaybackQueue()
    queue.push("item", "resp", bytes(ms_to_samples(queued_ms) * 2))
    edge = PulseAudioEdge(queue)  # 20 ms blocks, 60 ms lead
    speaker = FakeSpeaker()
    edge._speaker = speaker
    return edge, speaker


def test_the_lead_is_kept_from_the_count_of_what_was_written_and_when():
    edge, speaker = _edge(1000)
    edge._top_up(100.0)
    assert speaker.written_ms == pytest.approx([60], abs=0.1)  # dry: the whole lead at once
    assert edge.sounding_until_s == pytest.approx(100.062)
    edge._top_up(100.020)  # 20 ms played since
    assert speaker.written_ms == pytest.approx([60, 20], abs=0.1)
    edge._top_up(100.100)  # a late tick: 80 ms played, 0 left, the lead again
    assert speaker.written_ms == pytest.approx([60, 20, 60], abs=0.1)
    assert edge.output_starts == 2  # it ran dry once


def test_a_server_that_holds_more_than_the_count_wins():
    edge, speaker = _edge(1000)
    edge._top_up(100.0)
    speaker.server_says_s = 0.060  # it stalled: nothing played of the 60 ms, not 20
    edge._top_up(100.020)
    assert speaker.written_ms == pytest.approx(
        [60], abs=0.1
    )  # still a full lead there: nothing more to write
    assert edge.server_lags == 1
    assert edge.sounding_until_s == pytest.approx(100.082)  # the count follows the server
    speaker.server_says_s = 0.045  # within the period noise of the count (60 - 20 = 40)
    edge._top_up(100.040)
    assert edge.server_lags == 1
    assert speaker.written_ms == pytest.approx([60, 20], abs=0.1)


def test_a_flush_empties_the_count_and_the_speaker_is_silent_from_then_on():
    edge, speaker = _edge(1000)
    edge._context = type("Ctx", (), {"pump": lambda self: None})()
    edge._top_up(time.monotonic())  # the flush listener reads the real clock
    edge.playback.interrupt()  # what a barge-in calls: flush listener
    edge._on_playback("flush")
    assert speaker.flushed == 1
    assert edge._held_s(edge.sounding_until_s) == 0.0
    assert edge.output_aborts == 1


def test_the_tick_slows_down_only_while_allowed_and_nothing_is_to_play():
    edge, _ = _edge(0)
    now = time.monotonic()
    assert edge._period_s(now) == 0.020
    edge.relaxed_ms = 100  # the client: the room is quiet
    assert edge._period_s(now) == 0.100
    edge.playback.push("item", "resp", bytes(960))
    assert edge._period_s(now) == 0.020  # audio to play: every block again


def test_a_delta_brings_a_slow_tick_forward():
    class Loop:
        def __init__(self) -> None:
            self.calls: list[float] = []

        def call_at(self, at_s: float, *args: object) -> object:
            self.calls.append(at_s)
            return type("Handle", (), {"cancel": lambda self: None})()

    edge, _ = _edge(0)
    edge._context = type("Ctx", (), {"pump": lambda self: None})()
    loop = Loop()
    now = time.monotonic()
    edge._schedule(loop, now + 0.100)  # a slow tick pending
    edge.playback.push("item", "resp", bytes(4800))
    edge._on_playback("audio")
    assert len(loop.calls) == 2 and loop.calls[1] < now + 0.05
