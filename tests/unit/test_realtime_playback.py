"""Playback accounting and truncation arithmetic for barge-in."""

from __future__ import annotations

import threading

import pytest

from pivoicectl.realtime.protocol.events import ms_to_samples
from pivoicectl.realtime.session.playback import (
    PlaybackQueue,
    PlayedSpan,
    TruncationMargins,
    truncate_audio_end_ms,
)

NO_MARGIN = TruncationMargins(device_latency_ms=0, received_margin_ms=0)


def pcm(n_samples: int, value: int = 1) -> bytes:
    return value.to_bytes(2, "little", signed=True) * n_samples


def test_truncate_arithmetic_rounds_down_and_clamps():
    assert truncate_audio_end_ms(24_000, 48_000, NO_MARGIN) == 1000
    assert truncate_audio_end_ms(24_023, 48_000, NO_MARGIN) == 1000  # 1000.96 ms -> 1000
    assert truncate_audio_end_ms(48_000, 24_000, NO_MARGIN) == 1000  # clamped to received
    assert truncate_audio_end_ms(0, 24_000, NO_MARGIN) == 0
    margins = TruncationMargins(device_latency_ms=40, received_margin_ms=100)
    assert truncate_audio_end_ms(24_000, 48_000, margins) == 960  # minus device latency
    assert truncate_audio_end_ms(24_000, 24_000, margins) == 900  # received minus margin
    assert truncate_audio_end_ms(100, 200, margins) == 0  # never negative
    with pytest.raises(ValueError):
        TruncationMargins(device_latency_ms=-1)


def test_pull_returns_exact_blocks_with_accounting_and_silence():
    q = PlaybackQueue(NO_MARGIN)
    assert q.push("item_a", "resp_1", pcm(300, 7))
    assert q.push("item_b", "resp_1", pcm(100, 9))
    data, acc = q.pull(256)
    assert len(data) == 512
    assert data == pcm(256, 7)
    assert acc.spans == (PlayedSpan("item_a", "resp_1", 256),)
    assert acc.silence_samples == 0
    data, acc = q.pull(256)
    assert data == pcm(44, 7) + pcm(100, 9) + bytes(2 * 112)
    assert acc.spans == (PlayedSpan("item_a", "resp_1", 44), PlayedSpan("item_b", "resp_1", 100))
    assert acc.silence_samples == 112
    assert acc.audio_samples == 144
    data, acc = q.pull(10)
    assert data == bytes(20)
    assert acc.spans == ()
    a = q.item_status("item_a")
    assert (a.received_samples, a.played_samples) == (300, 300)
    assert q.pull(0) == (b"", q.pull(0)[1])


def test_consecutive_chunks_of_one_item_merge_into_one_span():
    q = PlaybackQueue(NO_MARGIN)
    for _ in range(4):
        q.push("item_a", "resp_1", pcm(100))
    _, acc = q.pull(350)
    assert acc.spans == (PlayedSpan("item_a", "resp_1", 350),)


def test_interrupt_mid_item_truncates_at_what_was_played_and_goes_silent():
    q = PlaybackQueue(NO_MARGIN)
    q.push("item_a", "resp_1", pcm(ms_to_samples(2000)))
    q.pull(ms_to_samples(700))
    plan = q.interrupt()
    assert plan is not None
    assert (plan.item_id, plan.response_id, plan.audio_end_ms) == ("item_a", "resp_1", 700)
    assert plan.received_samples == ms_to_samples(2000)
    assert plan.event("e1") == {
        "type": "conversation.item.truncate",
        "event_id": "e1",
        "item_id": "item_a",
        "content_index": 0,
        "audio_end_ms": 700,
    }
    assert q.queued_samples == 0
    data, acc = q.pull(480)  # the very next block is silence
    assert data == bytes(960)
    assert acc.silence_samples == 480
    assert q.interrupt() is None  # idempotent: that item was already truncated


def test_truncation_is_clamped_to_received_audio_on_underrun():
    # The network delivered less than the device wanted; playback consumed all of it and
    # the rest of the answer is still on its way.
    q = PlaybackQueue(TruncationMargins(received_margin_ms=100))
    q.push("item_a", "resp_1", pcm(ms_to_samples(500)))
    q.pull(ms_to_samples(800))
    plan = q.interrupt()
    assert plan is not None
    assert plan.audio_end_ms == 400  # 500 ms received minus the 100 ms margin
    assert plan.played_samples == ms_to_samples(500)


def test_device_latency_is_subtracted():
    q = PlaybackQueue(TruncationMargins(device_latency_ms=60, received_margin_ms=0))
    q.push("item_a", "resp_1", pcm(ms_to_samples(1000)))
    q.pull(ms_to_samples(500))
    assert q.interrupt().audio_end_ms == 440


def test_an_answer_handed_over_but_not_yet_heard_is_still_truncated():
    # All 300 ms left the queue, but the edge says 250 ms of it are still at the server.
    q = PlaybackQueue(TruncationMargins(received_margin_ms=100))
    q.set_unheard_estimate(lambda: 250)
    q.push("item_a", "resp_1", pcm(ms_to_samples(300)))
    q.mark_audio_done("item_a")
    q.pull(ms_to_samples(300))
    plan = q.interrupt()
    assert plan is not None and plan.audio_end_ms == 50
    # With the estimate gone (nothing held), the same answer counts as heard in full.
    q2 = PlaybackQueue(TruncationMargins(received_margin_ms=100))
    q2.set_unheard_estimate(lambda: 0)
    q2.push("item_a", "resp_1", pcm(ms_to_samples(300)))
    q2.mark_audio_done("item_a")
    q2.pull(ms_to_samples(300))
    assert q2.interrupt() is None


def test_counters_reset_when_the_item_id_changes():
    q = PlaybackQueue(NO_MARGIN)
    q.push("item_a", "resp_1", pcm(ms_to_samples(1000)))
    q.mark_audio_done("item_a")
    q.push("item_b", "resp_2", pcm(ms_to_samples(1000)))
    q.pull(ms_to_samples(1200))  # all of a, 200 ms of b
    plan = q.interrupt()
    assert plan.item_id == "item_b"
    assert plan.audio_end_ms == 200
    assert q.item_status("item_a").finished


def test_head_of_queue_item_not_yet_started_truncates_at_zero():
    q = PlaybackQueue(NO_MARGIN)
    q.push("item_a", "resp_1", pcm(480))
    q.mark_audio_done("item_a")
    q.push("item_b", "resp_1", pcm(480))
    q.pull(480)
    plan = q.interrupt()
    assert (plan.item_id, plan.audio_end_ms) == ("item_b", 0)


def test_no_truncate_when_playback_had_finished():
    q = PlaybackQueue(NO_MARGIN)
    q.push("item_a", "resp_1", pcm(ms_to_samples(300)))
    q.mark_audio_done("item_a")
    q.pull(ms_to_samples(400))
    assert q.interrupt() is None


def test_no_truncate_when_finished_within_the_margin():
    q = PlaybackQueue(TruncationMargins(received_margin_ms=100))
    q.push("item_a", "resp_1", pcm(ms_to_samples(1000)))
    q.mark_response_done("resp_1")
    q.pull(ms_to_samples(950))
    assert q.interrupt() is None


def test_no_truncate_when_nothing_was_received_or_nothing_played_yet():
    q = PlaybackQueue(NO_MARGIN)
    assert q.interrupt() is None
    q.push("item_a", "resp_1", b"")
    assert q.interrupt() is None
    q2 = PlaybackQueue(NO_MARGIN)
    q2.push("item_a", "resp_1", pcm(480))
    plan = q2.interrupt()  # received, none played: the user heard nothing of it
    assert plan.audio_end_ms == 0


def test_late_deltas_of_interrupted_responses_are_dropped():
    q = PlaybackQueue(NO_MARGIN)
    q.push("item_a", "resp_1", pcm(4800))
    q.pull(480)
    q.interrupt(active_response_ids=["resp_2"])
    assert q.is_dropped("resp_1")
    assert q.is_dropped("resp_2")  # created, no audio yet: its audio must not play either
    assert not q.push("item_a", "resp_1", pcm(4800))
    assert not q.push("item_x", "resp_2", pcm(100))
    assert q.queued_samples == 0
    assert q.late_samples_dropped == 4900
    assert q.item_status("item_a").received_samples == 4800  # late audio not counted
    assert q.push("item_c", "resp_3", pcm(10))  # the next answer plays
    assert q.queued_samples == 10


def test_flush_keeps_accounting():
    q = PlaybackQueue(NO_MARGIN)
    q.push("item_a", "resp_1", pcm(1000))
    q.pull(100)
    assert q.flush() == 900
    assert q.queued_samples == 0
    status = q.item_status("item_a")
    assert (status.received_samples, status.played_samples) == (1000, 100)
    assert q.truncate_plan("item_a").audio_end_ms == 4  # 100 samples = 4.17 ms
    assert q.truncate_plan("item_a") is not None  # no side effect
    assert q.truncate_plan("nope") is None


def test_odd_bytes_are_not_half_samples():
    q = PlaybackQueue(NO_MARGIN)
    q.push("item_a", "resp_1", b"\x01\x00\x02")
    assert q.item_status("item_a").received_samples == 1
    data, _ = q.pull(1)
    assert data == b"\x01\x00"


def test_tracked_items_are_bounded():
    q = PlaybackQueue(NO_MARGIN, max_tracked_items=3)
    for i in range(10):
        q.push(f"item_{i}", "resp_1", pcm(1))
    assert q.item_status("item_0") is None
    assert q.item_status("item_9") is not None


@pytest.mark.timeout(10)
def test_concurrent_push_and_pull_conserve_samples():
    q = PlaybackQueue(NO_MARGIN)
    total = 200 * 480
    pulled = 0
    done = threading.Event()

    def callback_thread():
        nonlocal pulled
        while not done.is_set() or q.queued_samples:
            _, acc = q.pull(256)
            pulled += acc.audio_samples

    thread = threading.Thread(target=callback_thread)
    thread.start()
    for i in range(200):
        q.push(f"item_{i // 50}", "resp_1", pcm(480))
    done.set()
    thread.join(5)
    assert not thread.is_alive()
    assert pulled == total
    assert sum(q.item_status(f"item_{i}").played_samples for i in range(4)) == total
