"""Scenarios of the session core, driven by hand: barge-in, truncation, late audio,
cancel races, reconnects and session renewal.

A `Conversation` and its `PlaybackQueue`, server events built by
`protocol.server_events` and sent through the parser as the client sends them, and a
speaker that pulls 10 ms blocks at times the test chooses. No asyncio and no sleeps:
every time is a number, so every figure asserted is exact.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.protocol import server_events as se
from pivoicectl.realtime.session.conversation import (
    Action,
    Conversation,
    Record,
    Send,
    Show,
)
from pivoicectl.realtime.session.playback import PlaybackQueue, PlayReport, TruncationMargins
from pivoicectl.realtime.session.reconnect import RenewalPolicy, SessionRenewal

BLOCK = ev.ms_to_samples(10)
NO_MARGIN = TruncationMargins(received_margin_ms=0)
LATENCY_S = 0.02
"""From the callback that pulls a block to the block's first sample at the speaker."""


def pcm(ms: int, value: int = 1) -> bytes:
    """`ms` of PCM16 whose every sample is `value` (tells answers apart when played)."""
    return value.to_bytes(2, "little", signed=True) * ev.ms_to_samples(ms)


class Rig:
    """A conversation, its playback queue, a clock and what came out of it."""

    def __init__(
        self,
        margins: TruncationMargins = NO_MARGIN,
        barge_in: str = "server",
        max_turns: int | None = None,
        **config: Any,
    ) -> None:
        self.playback = PlaybackQueue(margins)
        self.conv = Conversation(
            ev.SessionConfig(**config), self.playback, max_turns=max_turns, barge_in=barge_in
        )
        self.t = 0.0
        self.sent: list[dict[str, Any]] = []
        self.shown: list[Show] = []
        self.records: list[dict[str, Any]] = []
        self._event_ids = itertools.count(1)

    def take(self, actions: list[Action]) -> list[Action]:
        for action in actions:
            if isinstance(action, Send):
                self.sent.append(action.event)
            elif isinstance(action, Show):
                self.shown.append(action)
            elif isinstance(action, Record):
                self.records.append(action.record)
        return actions

    def at(self, t: float) -> Rig:
        assert t >= self.t, "time runs forwards"
        self.t = t
        return self

    def recv(self, event: dict[str, Any]) -> list[Action]:
        """One server event over the wire: stamped, serialized, parsed, handled."""
        wire = ev.dumps(se.stamp(event, f"event_{next(self._event_ids)}"))
        parsed = ev.parse_server_event(wire)
        assert parsed.type != ev.INVALID, parsed.problem  # the builders make valid events
        return self.take(self.conv.handle(parsed, self.t))

    def play(self, ms: int) -> bytes:
        """The speaker pulls `ms` in 10 ms blocks, one every 10 ms from now on."""
        out = []
        for _ in range(ms // 10):
            block, acct = self.playback.pull(BLOCK)
            report = PlayReport(self.t, self.t + LATENCY_S, acct.spans, acct.silence_samples)
            self.take(self.conv.played(report))
            out.append(block)
            self.t = round(self.t + 0.01, 6)
        return b"".join(out)

    # --- the usual sequences -----------------------------------------------------------

    def connect(self, session_id: str = "sess_1") -> list[Action]:
        self.take(self.conv.connected(self.t))
        return self.recv(se.session_created(se.session_resource(session_id, "gpt-realtime")))

    def disconnect(self, reason: str = "closed 1006") -> list[Action]:
        return self.take(self.conv.disconnected(self.t, reason))

    def user_turn(self, item_id: str = "item_u1", stop_at: float | None = None) -> None:
        self.recv(se.input_audio_buffer_speech_started(item_id, 0))
        if stop_at is not None:
            self.at(stop_at)
        self.recv(se.input_audio_buffer_speech_stopped(item_id, 1000))

    def answer(
        self,
        response_id: str,
        item_id: str,
        ms: int,
        value: int = 1,
        chunk_ms: int = 100,
        text: str | None = None,
    ) -> None:
        """`response.created`, a transcript delta and `ms` of audio in `chunk_ms` deltas."""
        self.recv(se.response_created(response_id))
        if text is not None:
            self.recv(se.response_output_audio_transcript_delta(response_id, item_id, text))
        self.deltas(response_id, item_id, ms, value, chunk_ms)

    def deltas(
        self, response_id: str, item_id: str, ms: int, value: int = 1, chunk_ms: int = 100
    ) -> None:
        for _ in range(ms // chunk_ms):
            self.recv(se.response_output_audio_delta(response_id, item_id, pcm(chunk_ms, value)))

    def finish(self, response_id: str, item_id: str, status: str = "completed", **kw: Any) -> None:
        """The end of an answer's generation: audio done, then response done."""
        self.recv(se.response_output_audio_done(response_id, item_id))
        self.recv(se.response_done(response_id, status, **kw))

    def speech_started(self, item_id: str = "item_u2") -> list[Action]:
        return self.recv(se.input_audio_buffer_speech_started(item_id, 0))


def types(actions: list[Action]) -> list[str]:
    return [a.event["type"] for a in actions if isinstance(a, Send)]


def truncates(actions: list[Action]) -> list[tuple[str, int]]:
    return [
        (a.event["item_id"], a.event["audio_end_ms"])
        for a in actions
        if isinstance(a, Send) and a.event["type"] == "conversation.item.truncate"
    ]


def turn_records(rig: Rig) -> list[dict[str, Any]]:
    return [r for r in rig.records if r["type"] == "turn"]


# --- barge-in while an answer plays ------------------------------------------------------------


def test_barge_in_flushes_truncates_at_the_played_position_and_the_turn_ends_at_silence():
    rig = Rig()
    rig.connect()
    rig.at(0.5).user_turn(stop_at=1.5)
    rig.at(1.6).answer("resp_1", "item_1", 1000, text="Once upon a time")
    rig.play(400)  # 1.60 .. 2.00
    actions = rig.at(2.0).speech_started()
    # The service cancels by itself (server VAD, interrupt_response): only the truncate.
    assert types(actions) == ["conversation.item.truncate"]
    assert truncates(actions) == [("item_1", 400)]
    assert rig.playback.queued_samples == 0
    assert Show("status", "(interrupted after 0.4 s)") in actions
    turn = rig.conv.turns[0]
    assert (turn.played_ms_at_interrupt, turn.received_ms_at_interrupt) == (400, 1000)
    assert not turn.cancel_sent
    # The service's cancellation: the text that had arrived is shown as cut off.
    actions = rig.at(2.03).recv(se.response_done("resp_1", "cancelled", reason="turn_detected"))
    assert Show("assistant", "Once upon a time …(interrupted)") in actions
    assert not turn.complete  # no block since the flush: the speaker may still sound
    assert rig.at(2.034).play(10) == bytes(2 * BLOCK)  # silence
    (record,) = turn_records(rig)
    assert record["status"] == "cancelled" and record["reason"] == "turn_detected"
    assert record["interrupted"] and record["truncate_audio_end_ms"] == 400
    assert record["interrupt_latency_ms"] == 54.0  # 2.000 -> first silent sample at 2.054
    assert record["response_latency_ms"] == 120.0  # speech stopped 1.50 -> audible 1.62
    assert rig.conv.user_speaking and not rig.conv.is_idle(2.05)  # the user has the floor


def test_the_second_speech_started_of_the_same_barge_in_changes_nothing():
    rig = Rig()
    rig.connect()
    rig.at(1.0).answer("resp_1", "item_1", 1000)
    rig.play(300)
    first = rig.speech_started("item_u2")
    again = rig.at(1.5).speech_started("item_u3")
    assert truncates(first) == [("item_1", 300)]
    assert types(again) == [] and not [s for s in again if isinstance(s, Show)]
    assert rig.conv.turns[0].interrupted_s == 1.3


# --- truncation arithmetic ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("latency_ms", "margin_ms", "received_ms", "played", "audio_done", "audio_end_ms"),
    [
        (0, 0, 1000, ev.ms_to_samples(400), False, 400),
        (40, 0, 1000, ev.ms_to_samples(400), False, 360),  # the device still held 40 ms
        (40, 0, 1000, ev.ms_to_samples(20), False, 0),  # nothing reached the ear yet
        (0, 100, 1000, ev.ms_to_samples(950), False, 900),  # kept off the received end
        (0, 0, 1000, 4799, False, 199),  # 199.96 ms: rounded down, never up
        (0, 0, 1000, 4801, False, 200),
        (0, 100, 500, ev.ms_to_samples(500), False, 400),  # all played, more may come
        (0, 100, 500, ev.ms_to_samples(380), True, 380),
        (0, 100, 500, ev.ms_to_samples(400), True, None),  # within the margin of the end
        (0, 0, 500, ev.ms_to_samples(500), True, None),  # heard whole: nothing to cut
    ],
)
def test_truncation_point(latency_ms, margin_ms, received_ms, played, audio_done, audio_end_ms):
    rig = Rig(TruncationMargins(device_latency_ms=latency_ms, received_margin_ms=margin_ms))
    rig.connect()
    rig.answer("resp_1", "item_1", received_ms, chunk_ms=received_ms)
    if audio_done:
        rig.recv(se.response_output_audio_done("resp_1", "item_1"))
    rig.playback.pull(played)
    actions = rig.at(1.0).speech_started()
    expected = [] if audio_end_ms is None else [("item_1", audio_end_ms)]
    assert truncates(actions) == expected
    assert ev.samples_to_ms(rig.playback.item_status("item_1").played_samples) == (
        ev.samples_to_ms(played)
    )


def test_a_short_answer_handed_over_whole_but_still_sounding_is_cut_where_the_ear_is():
    """An edge that keeps audio ahead of the speaker (the libpulse one) says how much is
    handed over but unheard; all of a short answer may be out of the queue."""
    rig = Rig()
    rig.playback.set_unheard_estimate(lambda: 120)
    rig.connect()
    rig.answer("resp_1", "item_1", 300, chunk_ms=300)
    rig.finish("resp_1", "item_1")
    rig.playback.pull(ev.ms_to_samples(300))
    assert rig.playback.queued_samples == 0
    actions = rig.at(1.0).speech_started()
    assert truncates(actions) == [("item_1", 180)]
    assert rig.conv.turns[0].interrupted


def test_the_truncation_names_the_item_being_played_when_an_answer_has_two():
    rig = Rig()
    rig.connect()
    rig.answer("resp_1", "item_1", 200, chunk_ms=200)
    rig.deltas("resp_1", "item_2", 500)
    rig.play(300)  # all of item_1, 100 ms of item_2
    assert truncates(rig.at(1.0).speech_started()) == [("item_2", 100)]


# --- late audio after an interruption ------------------------------------------------------------


def test_deltas_already_on_their_way_when_the_answer_was_cut_are_dropped_not_played():
    rig = Rig(interrupt_response=False)  # the service waits for our response.cancel
    rig.connect()
    rig.at(1.0).answer("resp_1", "item_1", 300, value=1)
    rig.play(200)
    actions = rig.speech_started()
    assert types(actions) == ["conversation.item.truncate", "response.cancel"]
    assert truncates(actions) == [("item_1", 200)]
    rig.deltas("resp_1", "item_1", 300, value=1)  # sent before the service saw the cancel
    assert rig.playback.queued_samples == 0
    assert rig.playback.late_samples_dropped == ev.ms_to_samples(300)
    assert rig.conv.turns[0].received_samples == ev.ms_to_samples(300)  # as at the cut
    rig.finish("resp_1", "item_1", "cancelled", reason="client_cancelled")
    assert rig.conv.turns[0].status == "cancelled"
    # The answer to what the user said instead plays, every sample of it.
    rig.answer("resp_2", "item_2", 200, value=2)
    assert rig.play(200) == pcm(200, value=2)


def test_an_answer_cut_before_its_first_delta_is_cancelled_and_its_audio_never_plays():
    rig = Rig(barge_in="local")
    rig.connect()
    rig.at(1.0).recv(se.response_created("resp_1"))
    actions = rig.take(rig.conv.local_interrupt(1.1))
    assert types(actions) == ["response.cancel"]  # nothing heard: nothing to truncate
    assert Show("status", "(interrupted)") in actions
    rig.deltas("resp_1", "item_1", 500)
    assert rig.playback.queued_samples == 0
    rig.finish("resp_1", "item_1", "cancelled", reason="client_cancelled")
    rig.at(1.2).play(10)
    (record,) = turn_records(rig)
    assert record["cancel_sent"] and record["audio_received_ms"] == 0
    assert record["truncate_audio_end_ms"] is None


def test_when_the_speaker_ran_dry_mid_answer_the_cut_is_at_all_that_arrived():
    rig = Rig(interrupt_response=False)
    rig.connect()
    rig.at(1.0).answer("resp_1", "item_1", 200)
    rig.play(300)  # the last 100 ms are silence: the service is slow
    assert rig.conv.answering and rig.playback.queued_samples == 0
    actions = rig.speech_started()
    assert truncates(actions) == [("item_1", 200)]
    assert "response.cancel" in types(actions)
    rig.deltas("resp_1", "item_1", 200)
    assert rig.playback.queued_samples == 0


# --- cancel races ----------------------------------------------------------------------------------


def test_an_answer_generated_whole_but_still_playing_is_truncated_not_cancelled():
    """The service makes audio faster than real time: response.done usually comes long
    before the user interrupts. There is nothing left to cancel."""
    rig = Rig(interrupt_response=False)
    rig.connect()
    rig.at(1.0).answer("resp_1", "item_1", 1000)
    rig.finish("resp_1", "item_1")
    rig.play(300)
    actions = rig.speech_started()
    assert types(actions) == ["conversation.item.truncate"]
    turn = rig.conv.turns[0]
    assert turn.status == "completed" and not turn.cancel_sent
    rig.play(10)
    (record,) = turn_records(rig)
    assert record["interrupted"] and record["status"] == "completed"


def test_a_cancel_that_crosses_the_response_done_is_answered_by_a_quiet_error():
    rig = Rig(interrupt_response=False)
    rig.connect()
    rig.at(1.0).answer("resp_1", "item_1", 1000)
    rig.play(300)
    actions = rig.speech_started()
    (cancel,) = [a.event for a in actions if isinstance(a, Send) and "cancel" in a.event["type"]]
    # The service had finished generating before our cancel reached it.
    rig.finish("resp_1", "item_1", "completed")
    actions = rig.recv(
        se.error("response_cancel_not_active", "no active response", None, cancel["event_id"])
    )
    assert not [a for a in actions if isinstance(a, Show)]
    assert rig.conv.errors == [] and rig.conv.fatal_error is None
    assert any(
        r["type"] == "error" and r["client_event_id"] == cancel["event_id"] for r in rig.records
    )
    turn = rig.conv.turns[0]
    assert turn.status == "completed" and turn.cancel_sent and turn.interrupted


def test_a_local_barge_in_and_the_services_own_cancel_cut_the_answer_once():
    """Local barge-in cancels at once; the service, which heard the speech too, cancels
    by itself, so our cancel finds nothing running."""
    rig = Rig(barge_in="local")
    rig.connect()
    rig.at(1.0).answer("resp_1", "item_1", 1000, text="Well")
    rig.play(500)
    local = rig.take(rig.conv.local_interrupt(1.5))
    assert types(local) == ["conversation.item.truncate", "response.cancel"]
    assert truncates(local) == [("item_1", 500)]
    assert types(rig.at(1.55).speech_started()) == []
    rig.at(1.56).recv(se.response_done("resp_1", "cancelled", reason="turn_detected"))
    rig.recv(se.error("response_cancel_not_active", "no active response"))
    sent = [e["type"] for e in rig.sent]
    assert sent.count("response.cancel") == 1 and sent.count("conversation.item.truncate") == 1
    assert [s.text for s in rig.shown if s.kind == "status"] == ["(interrupted after 0.5 s)"]
    assert [s.text for s in rig.shown if s.kind == "assistant"] == ["Well …(interrupted)"]
    turn = rig.conv.turns[0]
    assert turn.interrupted_s == 1.5 and turn.reason == "turn_detected"
    assert rig.conv.errors == []


def test_an_answer_already_done_and_heard_is_not_cancelled_by_the_talk_button():
    rig = Rig(turn_detection="none")
    rig.connect()
    rig.at(1.0).answer("resp_1", "item_1", 200)
    rig.finish("resp_1", "item_1")
    rig.play(300)
    assert turn_records(rig) and rig.conv.is_idle(rig.t)
    actions = rig.take(rig.conv.ptt_pressed(rig.t))
    assert types(actions) == ["input_audio_buffer.clear"]
    assert not rig.conv.turns[0].interrupted


# --- reconnecting mid-answer -----------------------------------------------------------------------


def test_a_drop_mid_answer_closes_the_turn_and_what_arrived_still_plays():
    rig = Rig(max_turns=2)
    rig.connect()
    rig.at(1.0).answer("resp_1", "item_1", 1000, value=3)
    rig.play(300)
    actions = rig.disconnect("closed 1006: gone")
    assert Record({"type": "disconnected", "reason": "closed 1006: gone"}) in actions
    turn = rig.conv.turns[0]
    assert turn.status == "disconnected" and not rig.conv.answering and not rig.conv.ready
    assert not turn.complete  # what arrived is still to be heard
    assert rig.play(700) == pcm(700, value=3)  # received audio is not thrown away
    assert turn.complete and rig.conv.completed_turns == 1 and not rig.conv.finished
    first_update = rig.sent[0]
    actions = rig.connect("sess_2")
    (update,) = [a.event for a in actions if isinstance(a, Send)]
    assert update["session"] == first_update["session"]
    assert rig.conv.connections == 2 and rig.conv.ready
    rig.answer("resp_2", "item_2", 100)
    rig.finish("resp_2", "item_2")
    rig.play(100)
    assert rig.conv.finished and [r["status"] for r in turn_records(rig)] == [
        "disconnected",
        "completed",
    ]


def test_a_barge_in_over_audio_of_the_previous_session_does_not_truncate_in_the_new_one():
    """The new session has no such item: a truncate would come back as an error."""
    rig = Rig()
    rig.connect()
    rig.at(1.0).answer("resp_1", "item_1", 1000)
    rig.play(300)
    rig.disconnect()
    rig.connect("sess_2")
    rig.play(100)  # the old answer goes on playing
    actions = rig.speech_started()
    assert types(actions) == []
    assert rig.playback.queued_samples == 0  # but it stops
    assert Show("status", "(interrupted)") in actions
    # An answer of the new session is cut as usual.
    rig.answer("resp_2", "item_2", 500)
    rig.play(200)
    assert truncates(rig.speech_started("item_u3")) == [("item_2", 200)]


def test_a_question_whose_answer_had_not_started_is_forgotten_with_the_session():
    rig = Rig()
    rig.connect()
    rig.at(1.0).user_turn(stop_at=2.0)
    assert not rig.conv.is_idle(2.5)  # its answer is awaited
    rig.at(2.5).disconnect()
    rig.connect("sess_2")
    assert rig.conv.is_idle(2.6)  # the new session will never answer it
    rig.at(3.0).user_turn("item_u2", stop_at=4.0)
    rig.at(4.2).answer("resp_1", "item_1", 100)
    rig.play(10)
    assert rig.conv.turns[0].speech_stopped_s == 4.0


def test_a_drop_while_an_interrupted_answer_awaits_silence_still_closes_it():
    rig = Rig()
    rig.connect()
    rig.at(1.0).answer("resp_1", "item_1", 1000)
    rig.play(300)
    rig.speech_started()
    rig.disconnect()
    (record,) = turn_records(rig)
    assert record["status"] == "disconnected" and record["interrupted"]
    assert record["interrupt_latency_ms"] is None  # no block came after the flush


# --- session renewal -----------------------------------------------------------------------------


POLICY = RenewalPolicy(renew_after_s=300.0, session_limit_s=600.0, force_before_limit_s=30.0)


def renewal_for(rig: Rig) -> SessionRenewal:
    renewal = SessionRenewal(POLICY, clock=lambda: rig.t)
    renewal.started()
    return renewal


def due(rig: Rig, renewal: SessionRenewal) -> bool:
    """What the client's housekeeping asks at each tick."""
    return renewal.should_renew(rig.conv.is_idle(rig.t))


def renew(rig: Rig, renewal: SessionRenewal) -> list[Action]:
    """What the client does when renewal is due: close, reconnect, restore the session."""
    rig.disconnect("renew")
    actions = rig.connect(f"sess_{rig.conv.connections + 1}")
    renewal.started()
    return actions


def test_renewal_waits_for_the_answer_to_be_heard_then_restores_the_session():
    rig = Rig()
    rig.connect()
    renewal = renewal_for(rig)
    rig.at(290.0).user_turn(stop_at=291.0)
    rig.at(291.2).answer("resp_1", "item_1", 2000)
    rig.finish("resp_1", "item_1")
    rig.at(299.0).play(1000)
    assert rig.t == 300.0 and not due(rig, renewal)  # half the answer still to hear
    rig.play(990)
    assert not due(rig, renewal)
    rig.play(10)
    assert rig.conv.is_idle(rig.t) and due(rig, renewal)  # the first idle moment
    actions = renew(rig, renewal)
    assert types(actions) == ["session.update"]
    assert [e["session"] for e in rig.sent if e["type"] == "session.update"] == [
        actions[0].event["session"]
    ] * 2
    assert not due(rig, renewal) and renewal.age_s == 0.0
    assert [r["status"] for r in turn_records(rig)] == ["completed"]  # heard, not cut


def test_renewal_is_forced_before_the_limit_while_the_user_talks():
    rig = Rig()
    rig.connect()
    renewal = renewal_for(rig)
    rig.at(100.0).speech_started("item_u1")  # talking and talking
    rig.at(569.99)
    assert not due(rig, renewal)
    rig.at(POLICY.force_at_s)
    assert due(rig, renewal)
    renew(rig, renewal)
    assert not rig.conv.user_speaking  # the new session starts with nobody speaking
    assert rig.conv.is_idle(rig.t)


def test_a_forced_renewal_mid_answer_lets_the_received_audio_play_out_uncut():
    rig = Rig()
    rig.connect()
    renewal = renewal_for(rig)
    rig.at(569.0).answer("resp_1", "item_1", 3000, value=5)
    rig.play(1000)
    assert due(rig, renewal)
    renew(rig, renewal)
    assert rig.conv.turns[0].status == "disconnected"
    assert rig.play(2000) == pcm(2000, value=5)
    assert not [e for e in rig.sent if e["type"] == "conversation.item.truncate"]


def test_renewal_does_not_drop_a_push_to_talk_question_awaiting_its_answer():
    rig = Rig(turn_detection="none")
    rig.connect()
    renewal = renewal_for(rig)
    rig.take(rig.conv.ptt_pressed(rig.at(298.0).t))
    assert not due(rig, renewal)  # talking
    actions = rig.take(rig.conv.ptt_released(rig.at(301.0).t, held_audio_ms=3000))
    assert types(actions) == ["input_audio_buffer.commit", "response.create"]
    rig.at(302.0)
    assert not due(rig, renewal)  # the service is thinking
    rig.recv(se.response_created("resp_1"))
    rig.at(310.0)
    assert not due(rig, renewal)  # answering
    rig.finish("resp_1", "item_1")
    assert due(rig, renewal)
    # A question the service never answers stops holding renewal off after a while.
    rig.take(rig.conv.ptt_pressed(rig.at(320.0).t))
    rig.take(rig.conv.ptt_released(rig.at(321.0).t, held_audio_ms=1000))
    rig.at(321.0 + rig.conv.ANSWER_WAIT_S - 0.01)
    assert not due(rig, renewal)
    rig.at(321.0 + rig.conv.ANSWER_WAIT_S)
    assert due(rig, renewal)


def test_a_local_barge_in_between_sessions_stops_the_old_answers_audio():
    """The audio server lost during a reconnect: what still plays of the old answer
    stops, though there is no session to truncate or cancel in."""
    playback = PlaybackQueue()
    conv = Conversation(ev.SessionConfig(), playback)
    conv.connected(0.0)
    conv.handle(ev.parse_server_event(se.session_created({"id": "sess_1"})), 0.0)
    created = {"type": "response.created", "response": {"id": "r1"}}
    conv.handle(ev.parse_server_event(created), 1.0)
    conv.handle(ev.parse_server_event(se.response_output_audio_delta("r1", "it", pcm(200))), 1.1)
    conv.disconnected(1.2, "lost")
    assert playback.queued_samples == ev.ms_to_samples(200) and not conv.ready
    actions = conv.local_interrupt(1.3, source="audio_lost")
    assert playback.queued_samples == 0
    assert not [a for a in actions if isinstance(a, Send)]
    assert Show("status", "(interrupted)") in actions
    assert conv.local_interrupt(1.4) == []  # nothing left to stop


def test_an_answer_cut_by_a_lost_connection_shows_what_had_arrived_and_forgets_it():
    conv = Conversation(ev.SessionConfig(), PlaybackQueue())
    conv.connected(0.0)
    conv.handle(ev.parse_server_event(se.session_created({"id": "sess_1"})), 0.0)
    created = {"type": "response.created", "response": {"id": "r1"}}
    conv.handle(ev.parse_server_event(created), 1.0)
    part = {
        "type": "response.output_audio_transcript.delta",
        "response_id": "r1",
        "item_id": "it",
        "output_index": 0,
        "content_index": 0,
        "delta": "The time is",
    }
    conv.handle(ev.parse_server_event(part), 1.1)
    actions = conv.disconnected(1.2, "lost")
    assert Show("assistant", "The time is …(interrupted)") in actions
    late = {"type": "response.done", "response": {"id": "r1", "status": "cancelled"}}
    again = conv.handle(ev.parse_server_event(late), 1.3)
    assert not [a for a in again if isinstance(a, Show) and a.kind == "assistant"]
