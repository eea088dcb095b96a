"""`SpeakerClock`: the libpulse edge's count of what the server holds ahead of the speaker.

Plain arithmetic on write times and sizes, so every case that matters (a late tick, a
server that stalls, a reply within the noise of the count, a flush) is a call with the
time it happens at. The edge that does the I/O around it is in test_pulse_edge_count.py,
the real server in tests/integration/test_pulse_edge.py.
"""

from __future__ import annotations

import pytest

from pivoicectl.realtime.edges.speaker_clock import (
    MARGIN_S,
    TIMING_EVERY_S,
    SpeakerClock,
    TopUp,
    spans_per_block,
)
from pivoicectl.realtime.session.playback import PlayedSpan

DEVICE_S = 0.002
TICK_S = 0.020
LEAD_S = 0.060
"""The edge's lead at 20 ms ticks."""


def ms(samples: int) -> float:
    return samples / 24


def top_up(count: SpeakerClock, now: float, period_s: float = TICK_S, **kw) -> TopUp:
    """Plan a top-up at `now` and write all of it, with more audio waiting in the queue
    (unless `left_queued=False`)."""
    plan = count.plan(now, period_s, DEVICE_S, kw.get("reported_s"))
    if plan.samples:
        count.wrote(now, plan, plan.samples, kw.get("left_queued", True))
    return plan


def test_the_lead_is_kept_from_the_count_of_what_was_written_and_when():
    count = SpeakerClock(LEAD_S)
    first = top_up(count, 100.0)
    assert first == TopUp(0.0, 1440, started=True, underrun=False, server_lagged=False)
    assert ms(first.samples) == 60  # dry: the whole lead at once
    assert count.held_s(100.0) == pytest.approx(0.060)
    assert count.sounding_until_s == pytest.approx(100.062)  # the device's 2 ms on top
    second = top_up(count, 100.020)  # 20 ms played since
    assert second.held_s == pytest.approx(0.040)
    assert ms(second.samples) == pytest.approx(20, abs=0.05)
    assert not second.started
    late = top_up(count, 100.100)  # a late tick: 80 ms played, 0 left, the lead again
    assert (late.held_s, ms(late.samples), late.started) == (0.0, 60, True)
    assert late.underrun  # dry while audio waited here: the tick came too late
    assert count.sounding_until_s == pytest.approx(100.162)


def test_a_server_that_holds_more_than_the_count_wins():
    count = SpeakerClock(LEAD_S)
    top_up(count, 100.0)
    stalled = top_up(count, 100.020, reported_s=0.060)  # nothing of the 60 ms played
    assert stalled.server_lagged
    assert stalled.held_s == 0.060
    assert stalled.samples == 0  # still a full lead there: nothing more to write
    assert count.sounding_until_s == pytest.approx(100.082)  # the count follows the server
    # Within the period noise of the count (60 - 20 = 40 held by it, 45 by the server).
    noise = top_up(count, 100.040, reported_s=0.045)
    assert not noise.server_lagged
    assert noise.held_s == pytest.approx(0.040)
    assert ms(noise.samples) == pytest.approx(20, abs=0.05)


def test_running_dry_between_answers_or_late_deltas_is_no_underrun_of_ours():
    count = SpeakerClock(LEAD_S)
    top_up(count, 100.0)  # 60 ms of 100 written, 40 ms wait
    top_up(count, 100.020)  # 20 ms more
    top_up(count, 100.040, left_queued=False)  # the last 20 ms: nothing waits any more
    late = top_up(count, 100.500)  # a late delta, long after the server ran dry
    assert late.started and not late.underrun


def test_the_lead_outlasts_the_wait_for_the_next_tick():
    count = SpeakerClock(LEAD_S)
    assert count.lead_for(0.020) == LEAD_S  # the configured lead
    assert count.lead_for(0.040) == pytest.approx(0.080)  # a period and a period's margin
    assert count.lead_for(0.100) == pytest.approx(0.200)
    assert count.lead_for(0.200) == pytest.approx(0.400)
    assert SpeakerClock(0.300).lead_for(0.100) == 0.300  # never less than the lead
    assert SpeakerClock(0.0).lead_for(0.010) == pytest.approx(0.010 + MARGIN_S)
    # The tick slows to 100 ms (a quiet room), then speeds up to 40 and 20.
    assert ms(top_up(count, 100.0, 0.100).samples) == 200
    assert top_up(count, 100.100, 0.040).samples == 0  # 100 ms held: over 80 ms
    assert ms(top_up(count, 100.140, 0.040).samples) == pytest.approx(20, abs=0.05)
    assert top_up(count, 100.160, 0.020).samples == 0  # 60 ms held: the 20 ms lead


def test_a_flush_empties_the_count_and_the_speaker_is_silent_from_then_on():
    count = SpeakerClock(LEAD_S)
    top_up(count, 100.0)
    assert count.unheard_ms(100.025) == 35
    assert count.flushed(100.025) is True  # it held audio: an answer was cut off
    assert count.held_s(100.025) == 0.0
    assert count.unheard_ms(100.025) == 0
    assert count.sounding_until_s == 100.025
    assert count.flushed(100.030) is False  # nothing held: nothing aborted
    after = top_up(count, 100.040)  # the next answer starts the speaker again...
    assert after.started and not after.underrun  # ...and the flush was no underrun


def test_the_servers_indices_are_asked_for_every_80_ms_while_audio_is_out():
    count = SpeakerClock(LEAD_S)
    assert not count.wants_timing(100.0)  # nothing out yet
    top_up(count, 100.0)
    # Not again within 80 ms; the server ran dry at 100.060, still worth asking for
    # 100 ms after that (its own figure may say it holds more), then no more.
    times = (100.0, 100.02, 100.04, 100.079, 100.12, 100.20, 100.30)
    assert [t for t in times if count.wants_timing(t)] == [100.0, 100.12]
    assert TIMING_EVERY_S == 0.08
    count.restart()  # fresh streams: nothing held, asked for as soon as audio is out
    assert count.held_s(100.300) == 0.0
    top_up(count, 100.300)
    assert count.wants_timing(100.300)


def test_the_next_tick_must_come_a_margin_before_the_server_runs_dry():
    count = SpeakerClock(LEAD_S)
    top_up(count, 100.0, 0.040)  # 80 ms for a 40 ms tick
    assert count.refill_by_s() == pytest.approx(100.080 - MARGIN_S)


def test_a_write_is_reported_block_by_block_with_the_spans_in_each():
    spans = [PlayedSpan("item_1", "resp_1", 720), PlayedSpan("item_2", "resp_1", 480)]
    blocks = spans_per_block(spans, 1200, 480)  # 50 ms in 20 ms blocks
    assert blocks == [
        (PlayedSpan("item_1", "resp_1", 480),),
        (PlayedSpan("item_1", "resp_1", 240), PlayedSpan("item_2", "resp_1", 240)),
        (PlayedSpan("item_2", "resp_1", 240),),  # the last block is the short rest
    ]
    assert spans == [PlayedSpan("item_1", "resp_1", 720), PlayedSpan("item_2", "resp_1", 480)]
    # Spans that cover less than the write (silence after them): the rest is empty.
    assert spans_per_block([PlayedSpan("a", "r", 100)], 960, 480) == [
        (PlayedSpan("a", "r", 100),),
        (),
    ]
    assert spans_per_block([], 0, 480) == []
