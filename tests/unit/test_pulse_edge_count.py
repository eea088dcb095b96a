"""The libpulse edge's own count of what the server holds, with the stream faked.

Why a fake here: the count is plain arithmetic on write times and sizes, and the cases
that matter (a server that stalls, a reply that is stale) cannot be made to happen on
demand on a real server. The real server is in tests/integration/test_pulse_edge.py.
"""

from __future__ import annotations

import time

import pytest

from pivoicectl.realtime.edges.pulse import PulseAudioEdge
from pivoicectl.realtime.protocol.events import ms_to_samples
from pivoicectl.realtime.session.playback import PlaybackQueue


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

    def request_timing(self) -> None:
        pass


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
    assert edge.output_starts == 2  # it ran dry once...
    assert edge.underflows == 1  # ...while audio waited here: an underrun


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
    edge._context = FakeContext()
    edge._top_up(time.monotonic())  # the flush listener reads the real clock
    edge.playback.interrupt()  # what a barge-in calls: flush listener
    edge._on_playback("flush")
    assert speaker.flushed == 1
    assert edge._held_s(edge.sounding_until_s) == 0.0
    assert edge.output_aborts == 1


def test_the_tick_follows_what_the_client_allows_and_the_lead_covers_it():
    edge, speaker = _edge(1000)
    assert edge._period_s() == 0.020
    edge.relaxed_ms = 100  # the client: the room is quiet
    assert edge._period_s() == 0.100
    edge._top_up(100.0)  # a slow tick: enough audio at the server to outlast it
    assert speaker.written_ms == pytest.approx([200], abs=0.1)
    edge.relaxed_ms = 40  # someone talks: speech batches
    assert edge._period_s() == 0.040
    edge._top_up(100.100)  # 100 ms played, 100 ms held: 80 ms is the lead now
    assert speaker.written_ms == pytest.approx([200], abs=0.1)
    edge._top_up(100.140)  # 60 ms held: 20 ms more
    assert speaker.written_ms == pytest.approx([200, 20], abs=0.1)
    edge.relaxed_ms = 0
    edge._top_up(100.160)  # 60 ms held: the 20 ms tick's lead
    assert speaker.written_ms == pytest.approx([200, 20], abs=0.1)


class ClockLoop:
    """A loop whose clock the test sets; runs nothing by itself."""

    class Handle:
        def __init__(self, at_s: float | None, callback, args) -> None:
            self.at_s, self.callback, self.args = at_s, callback, args
            self.cancelled = self.ran = False

        def cancel(self) -> None:
            self.cancelled = True

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s
        self.handles: list[ClockLoop.Handle] = []

    def time(self) -> float:
        return self.now_s

    def call_at(self, at_s: float, callback, *args) -> Handle:
        self.handles.append(self.Handle(at_s, callback, args))
        return self.handles[-1]

    def call_soon(self, callback, *args) -> Handle:
        self.handles.append(self.Handle(None, callback, args))
        return self.handles[-1]

    def pending(self) -> list[Handle]:
        return [h for h in self.handles if not h.cancelled and not h.ran]

    def run_soon(self) -> int:
        """Run the call_soon callbacks pending (one pass of the loop)."""
        ran = 0
        for h in list(self.handles):
            if h.at_s is None and not h.cancelled and not h.ran:
                h.ran = True
                h.callback(*h.args)
                ran += 1
        return ran


class FakeContext:
    alive = True

    def pump(self) -> None:
        pass


class FakeMicStream:
    def __init__(self, blocks: float) -> None:
        self.blocks = blocks

    def read_available(self) -> bytes:
        return bytes(round(960 * self.blocks))


def test_an_answer_that_starts_between_slow_ticks_is_written_at_once_to_outlast_the_wait():
    edge, speaker = _edge(0)
    edge._context = FakeContext()
    now = time.monotonic()
    loop = ClockLoop(now)
    edge._loop = loop
    edge.relaxed_ms = 100
    edge._schedule(loop, now + 0.100)  # a slow tick pending, not due within half of it
    edge.playback.push("item", "resp", bytes(ms_to_samples(300) * 2))
    edge._on_playback("audio")
    assert speaker.written_ms == pytest.approx([200], abs=0.1)
    assert [h.at_s for h in loop.pending()] == [now + 0.100]  # the tick stays where it was


def test_blocks_read_together_are_handed_over_with_their_age():
    edge, _ = _edge(0)
    edge._context = FakeContext()
    edge._mic_stream = FakeMicStream(5.5)  # a slow tick: 5 blocks and half of the next
    handed: list[tuple[int, float]] = []
    edge._mic = lambda pcm, age_s: handed.append((len(pcm), age_s))
    edge._tick()
    assert [size for size, _ in handed] == [960] * 5
    # Each block's last sample came before the blocks after it and the half block.
    assert [age for _, age in handed] == pytest.approx([0.090, 0.070, 0.050, 0.030, 0.010])


def test_a_tick_that_slows_down_while_audio_waits_comes_back_before_the_lead_runs_out():
    """The client's speech hangover ends in the middle of an answer: the top-up kept the
    40 ms tick's lead (80 ms), then the mic blocks let the tick slow to 100 ms."""
    edge, speaker = _edge(1000)
    edge._context = FakeContext()
    edge._mic_stream = FakeMicStream(2)
    edge.relaxed_ms = 40

    def quiet_now(pcm: bytes, age_s: float) -> None:
        edge.relaxed_ms = 100

    edge._mic = quiet_now
    now = time.monotonic()
    loop = ClockLoop(now)
    edge._on_timer(loop, now)
    assert speaker.written_ms == pytest.approx([80], abs=0.1)
    assert edge.relaxed_ms == 100
    # Not 100 ms on (the server would run dry 20 ms before it), but a margin before the
    # 80 ms run out; that tick tops up to the 100 ms tick's lead.
    (tick,) = loop.pending()
    assert tick.at_s <= edge._drain_s - 0.040 + 1e-9
    assert tick.at_s < now + 0.05


def test_running_dry_between_answers_or_late_deltas_is_no_underrun_of_ours():
    edge, _ = _edge(100)
    edge._top_up(100.0)  # 60 ms written, 40 ms waits
    edge._top_up(100.020)  # 20 ms more: the last 20 ms
    edge._top_up(100.040)  # the rest: nothing waits any more
    assert edge.playback.queued_samples == 0
    edge.playback.push("item", "resp", bytes(ms_to_samples(100) * 2))  # a late delta
    edge._top_up(100.500)  # the server ran dry long ago, but nothing was waiting here
    assert edge.output_starts == 2
    assert edge.underflows == 0


def _riding_edge(loop: ClockLoop) -> tuple[PulseAudioEdge, FakeSpeaker, list[float]]:
    edge, speaker = _edge(0)
    edge._context = FakeContext()
    edge._mic_stream = FakeMicStream(5)
    handed: list[float] = []
    edge._mic = lambda pcm, age_s: handed.append(age_s)
    edge.relaxed_ms = 100  # a quiet room while an answer plays
    edge._loop = loop
    edge._schedule(loop, loop.now_s + 0.100)
    return edge, speaker, handed


def test_a_delta_shortly_before_the_tick_carries_it_and_pushes_the_timer_back():
    loop = ClockLoop(50.0)
    edge, speaker, handed = _riding_edge(loop)
    timer = loop.handles[-1]
    loop.now_s = 50.060  # the tick is due in 40 ms, under half a period
    edge.playback.push("item", "resp", bytes(ms_to_samples(100) * 2))
    edge._on_playback("audio")
    assert timer.cancelled
    assert speaker.written_ms == []  # not inside the delta's handling...
    assert handed == []
    assert loop.run_soon() == 1  # ...but in the same pass of the loop
    assert speaker.written_ms == pytest.approx([100], abs=0.1)
    assert len(handed) == 5  # the mic blocks went with it
    # The timer's own tick a period (and the slack) after this one.
    assert [h.at_s for h in loop.pending()] == pytest.approx([50.060 + 0.010 + 0.100])


def test_deltas_a_period_apart_carry_every_tick_and_the_timer_never_fires():
    loop = ClockLoop(50.0)
    edge, _, handed = _riding_edge(loop)
    for n in range(1, 8):
        # Each delta a period after the last, give or take the wakeup's jitter.
        loop.now_s = 50.0 + 0.100 * n + (0.004 if n % 2 else -0.003)
        edge.playback.push("item", "resp", bytes(ms_to_samples(100) * 2))
        edge._on_playback("audio")
        assert loop.run_soon() == 1, f"delta {n} did not carry the tick"
        (timer,) = loop.pending()
        assert timer.at_s > loop.now_s + 0.100  # still behind the next delta
    assert len(handed) == 7 * 5


def test_a_burst_of_deltas_brings_the_tick_forward_once():
    loop = ClockLoop(50.0)
    edge, speaker, handed = _riding_edge(loop)
    loop.now_s = 50.080
    for _ in range(3):  # a service that sends faster than real time
        edge.playback.push("item", "resp", bytes(ms_to_samples(100) * 2))
        edge._on_playback("audio")
    assert loop.run_soon() == 1
    assert len(handed) == 5
    edge.playback.push("item", "resp", bytes(ms_to_samples(100) * 2))
    edge._on_playback("audio")  # the next tick is a period away now: written at once
    assert loop.run_soon() == 0
    assert len(speaker.written_ms) == 2
