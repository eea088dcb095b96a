"""The pure conversation state machine: server events and playback reports in, actions out.

No socket, no sound device, no clock: times are plain numbers, the "device" is a call
to `PlaybackQueue.pull`.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.session.conversation import (
    Conversation,
    Finish,
    Record,
    Send,
    Show,
)
from pivoicectl.realtime.session.metrics import summarize
from pivoicectl.realtime.session.playback import PlaybackQueue, PlayReport, TruncationMargins

BLOCK = ev.ms_to_samples(10)


def make(max_turns=None, **config) -> Conversation:
    playback = PlaybackQueue(TruncationMargins(received_margin_ms=0))
    return Conversation(ev.SessionConfig(**config), playback, max_turns=max_turns)


def evt(event_type: str, **fields) -> ev.ServerEvent:
    return ev.parse_server_event({"type": event_type, **fields})


def delta(ms: int, response_id="resp_1", item_id="item_a", wire="response.output_audio.delta"):
    pcm = b"\x01\x00" * ev.ms_to_samples(ms)
    return evt(wire, response_id=response_id, item_id=item_id, delta=ev.encode_audio(pcm))


def done(response_id="resp_1", status="completed", reason=None, usage=None):
    details = {"type": status, "reason": reason} if reason else None
    return evt(
        "response.done",
        response={"id": response_id, "status": status, "status_details": details, "usage": usage},
    )


def play(conv: Conversation, blocks: int, t0: float, latency_s: float = 0.02) -> float:
    """Pull `blocks` 10 ms blocks as the device would; returns the time after them."""
    t = t0
    for _ in range(blocks):
        _, acct = conv.playback.pull(BLOCK)
        conv.played(PlayReport(t, t + latency_s, acct.spans, acct.silence_samples))
        t += 0.01
    return t


def sends(actions) -> list[dict]:
    return [a.event for a in actions if isinstance(a, Send)]


def start_answer(conv: Conversation, ms: int = 1000, t: float = 0.0) -> None:
    conv.handle(evt("session.created", session={"id": "sess_1"}), t)
    conv.handle(evt("input_audio_buffer.speech_started", item_id="item_u"), t)
    conv.handle(evt("input_audio_buffer.speech_stopped", item_id="item_u"), t + 1.0)
    conv.handle(evt("response.created", response={"id": "resp_1", "status": "in_progress"}), 1.1)
    conv.handle(delta(ms), 1.2)


def test_session_created_sends_the_configured_session_update_every_time():
    conv = make(voice="cedar")
    assert not conv.ready
    for _ in range(2):  # a reconnect restores the same settings
        conv.connected(0.0)
        actions = conv.handle(evt("session.created", session={"id": "s"}), 0.0)
        (update,) = sends(actions)
        assert update["type"] == "session.update"
        assert update["session"]["audio"]["output"]["voice"] == "cedar"
        assert conv.ready
        conv.disconnected(0.0, "test")
        assert not conv.ready


def test_barge_in_flushes_truncates_at_played_samples_and_drops_late_deltas():
    conv = make()
    start_answer(conv, ms=1000)
    t = play(conv, 30, 1.25)  # 300 ms handed to the device
    actions = conv.handle(evt("input_audio_buffer.speech_started", item_id="item_u2"), t)
    (truncate,) = sends(actions)  # server_vad cancels by itself: no response.cancel
    assert truncate == {
        "type": "conversation.item.truncate",
        "event_id": truncate["event_id"],
        "item_id": "item_a",
        "content_index": 0,
        "audio_end_ms": 300,
    }
    assert conv.playback.queued_samples == 0  # flushed at once
    assert any(isinstance(a, Show) and "interrupted" in a.text for a in actions)
    # The next block is silence, and marks the interrupt latency.
    play(conv, 1, t + 0.004, latency_s=0.02)
    turn = conv.turns[0]
    assert turn.to_dict()["interrupt_latency_ms"] == 24.0
    # A delta of the interrupted response that was already on its way is dropped.
    conv.handle(delta(100), t + 0.01)
    assert conv.playback.queued_samples == 0
    # A second speech_started for the same item truncates nothing more.
    assert sends(conv.handle(evt("input_audio_buffer.speech_started"), t + 0.1)) == []


def test_no_truncate_when_playback_had_finished():
    conv = make()
    start_answer(conv, ms=200)
    conv.handle(evt("response.output_audio.done", response_id="resp_1", item_id="item_a"), 1.3)
    conv.handle(done(), 1.3)
    t = play(conv, 25, 1.3)
    actions = conv.handle(evt("input_audio_buffer.speech_started", item_id="item_u2"), t)
    assert sends(actions) == []
    assert not conv.turns[0].interrupted


def test_response_cancel_only_when_the_server_would_not_cancel():
    conv = make(interrupt_response=False)
    start_answer(conv, ms=1000)
    t = play(conv, 10, 1.25)
    types = [e["type"] for e in sends(conv.handle(evt("input_audio_buffer.speech_started"), t))]
    assert types == ["conversation.item.truncate", "response.cancel"]

    conv = make()  # interrupt_response=True (default): the service cancels itself
    start_answer(conv, ms=1000)
    t = play(conv, 10, 1.25)
    types = [e["type"] for e in sends(conv.handle(evt("input_audio_buffer.speech_started"), t))]
    assert types == ["conversation.item.truncate"]


def test_beta_event_names_work_like_ga_ones():
    conv = make()
    conv.handle(evt("session.created"), 0)
    conv.handle(evt("response.created", response={"id": "resp_1"}), 0)
    conv.handle(delta(100, wire="response.audio.delta"), 0.1)
    assert conv.playback.queued_samples == ev.ms_to_samples(100)
    actions = conv.handle(
        evt("response.audio_transcript.done", response_id="resp_1", transcript="hi there"), 0.2
    )
    assert Show("assistant", "hi there") in actions


def test_metrics_turn_completion_usage_and_max_turns():
    conv = make(max_turns=1)
    start_answer(conv, ms=100)  # speech_stopped at 1.0, first delta at 1.2
    conv.handle(evt("response.output_audio.done", item_id="item_a"), 1.2)
    usage = {"total_tokens": 10, "input_token_details": {"audio_tokens": 4}}
    actions = conv.handle(done(usage=usage), 1.21)
    assert not any(isinstance(a, Finish) for a in actions)  # still playing
    actions = []
    t = 1.25
    for _ in range(12):
        _, acct = conv.playback.pull(BLOCK)
        actions += conv.played(PlayReport(t, t + 0.03, acct.spans, acct.silence_samples))
        t += 0.01
    assert Finish("1 turn(s) done") in actions
    turn = next(a.record for a in actions if isinstance(a, Record) and a.record["type"] == "turn")
    assert turn["first_audio_latency_ms"] == 80.0  # delta 1.20 -> audible 1.28
    assert turn["response_latency_ms"] == 280.0  # speech_stopped 1.00 -> audible 1.28
    assert turn["voice_to_voice_ms"] == 780.0  # + 500 ms VAD silence window
    assert conv.usage == usage
    assert summarize(conv).turns[0]["status"] == "completed"


def test_errors_are_shown_and_recorded_but_expected_ones_are_quiet():
    conv = make()
    bad = evt("error", error={"type": "invalid_request_error", "code": "x", "message": "boom"})
    actions = conv.handle(bad, 0)
    assert Show("error", "server error x: boom") in actions
    quiet = evt("error", error={"code": "response_cancel_not_active", "message": "none"})
    assert not any(isinstance(a, Show) for a in conv.handle(quiet, 0))
    assert len(conv.errors) == 1


def test_unknown_events_are_ignored_and_rejected_frames_counted_and_traced():
    conv = make()
    start_answer(conv, ms=100)
    assert conv.handle(evt("something.new", x=1), 0) == []
    (record,) = conv.handle(ev.parse_server_event("not json"), 0)
    assert isinstance(record, Record) and record.record["type"] == "invalid_event"
    assert conv.handle(ev.parse_server_event("[" * 5000 + "]" * 5000), 0)
    assert conv.invalid_events == 2
    assert summarize(conv).invalid_events == 2
    bad_audio = evt("response.output_audio.delta", response_id="resp_1", item_id="item_a")
    (record,) = conv.handle(bad_audio, 1.3)
    assert record == Record(
        {
            "type": "invalid_event",
            "event_type": "response.output_audio.delta",
            "problem": "response.output_audio.delta: delta is missing",
        }
    )
    assert conv.playback.queued_samples == ev.ms_to_samples(100)  # nothing added
    (record,) = conv.handle(evt("response.done", response={"id": "resp_1", "status": 5}), 1.4)
    assert record.record["type"] == "invalid_event"
    assert conv.answering and conv.turns[0].status == "in_progress"  # not taken as done
    assert summarize(conv).invalid_events == 4


def test_every_event_the_conversation_acts_on_is_checked_by_the_parser():
    from pivoicectl.realtime.session.conversation import _HANDLERS

    assert set(_HANDLERS) == set(ev.VALIDATED_EVENTS)


def test_a_bug_in_a_handler_raises_instead_of_becoming_a_trace_line():
    """An event built without the parser's checks reaches a handler that trusts them:
    the failure must show in a test, not be swallowed."""
    conv = make()
    unchecked = ev.ServerEvent("response.output_audio_transcript.done", "x", {"response_id": "r"})
    with pytest.raises(KeyError):
        conv.handle(unchecked, 0)


def test_disconnect_closes_running_turns_and_keeps_the_queue():
    conv = make(max_turns=1)
    start_answer(conv, ms=500)
    actions = conv.disconnected(1.5, "closed 1006")
    assert conv.turns[0].status == "disconnected"
    assert conv.playback.queued_samples > 0  # what arrived still plays
    assert Record({"type": "disconnected", "reason": "closed 1006"}) in actions
    t = play(conv, 60, 1.5)
    assert conv.completed_turns == 1 and conv.finished and t > 1.5


def test_idle_and_user_transcripts():
    conv = make()
    assert conv.is_idle(0)
    conv.handle(evt("input_audio_buffer.speech_started"), 0)
    assert not conv.is_idle(0)
    actions = conv.handle(
        evt(
            "conversation.item.input_audio_transcription.completed",
            item_id="item_u",
            transcript=" hello ",
        ),
        0.1,
    )
    assert Show("user", "hello") in actions


def test_not_idle_while_an_answer_is_awaited_but_not_forever():
    conv = make()
    conv.handle(evt("session.created", session={"id": "sess_1"}), 0)
    conv.handle(evt("input_audio_buffer.speech_started", item_id="item_u"), 0)
    conv.handle(evt("input_audio_buffer.speech_stopped", item_id="item_u"), 1.0)
    assert not conv.is_idle(1.5)  # the question is in; its answer has not started
    assert conv.is_idle(1.0 + conv.ANSWER_WAIT_S)  # an answer that never comes
    conv.handle(evt("response.created", response={"id": "resp_1", "status": "in_progress"}), 2)
    assert not conv.is_idle(2.0)  # running
    conv.handle(done("resp_1"), 2.5)
    assert conv.is_idle(2.5)


def test_memory_stays_bounded_over_many_turns():
    conv = make()
    conv.KEPT_TURNS = 5  # an instance attribute shadows the class default
    conv.KEPT_ERRORS = 3
    conv.handle(evt("session.created", session={"id": "sess_1"}), 0)
    t = 1.0
    for k in range(1, 13):
        rid, iid = f"resp_{k}", f"item_{k}"
        conv.handle(evt("response.created", response={"id": rid, "status": "in_progress"}), t)
        conv.handle(delta(20, response_id=rid, item_id=iid), t)
        conv.handle(
            evt("response.output_audio_transcript.done", response_id=rid, transcript="x"), t
        )
        conv.handle(evt("response.output_audio.done", item_id=iid), t)
        conv.handle(done(rid), t)
        t = play(conv, 3, t)
        conv.handle(evt("error", error={"code": f"e{k}", "message": "m"}), t)
    assert [turn.index for turn in conv.turns] == [8, 9, 10, 11, 12]  # numbering goes on
    assert all(turn.complete for turn in conv.turns)
    assert conv.turns_forgotten == 7
    assert len(conv._by_response) == 5 and len(conv._transcripts_shown) <= 5
    assert [e["code"] for e in conv.errors] == ["e10", "e11", "e12"]
    summary = summarize(conv)
    assert summary.turns_not_shown == 7 and summary.turns[0]["turn"] == 8


def test_deltas_split_at_odd_byte_offsets_play_every_sample_unchanged():
    """The service may cut an item's audio anywhere: a half sample at the end of one
    delta is the start of the next one's first sample, not noise to drop."""
    conv = make()
    start_answer(conv, ms=0)
    samples = (np.arange(4801, dtype="<i2") * 7).tobytes()  # no two bytes alike in a row
    cuts = [0, 1, 4, 1001, 1002, 4999, len(samples)]  # odd and even offsets
    for a, b in itertools.pairwise(cuts):
        conv.handle(delta_bytes(samples[a:b]), 1.3)
    pcm, _ = conv.playback.pull(len(samples) // 2)
    assert pcm == samples
    # Another item starts clean: its odd byte is not glued to the previous item's.
    conv.handle(delta_bytes(b"\x05", item_id="item_b"), 1.4)
    conv.handle(delta_bytes(b"\x06\x07\x08", item_id="item_b"), 1.5)
    pcm, _ = conv.playback.pull(2)
    assert pcm == b"\x05\x06\x07\x08"


def delta_bytes(pcm: bytes, response_id="resp_1", item_id="item_a") -> ev.ServerEvent:
    return evt(
        "response.output_audio.delta",
        response_id=response_id,
        item_id=item_id,
        delta=ev.encode_audio(pcm),
    )
