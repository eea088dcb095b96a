"""The conversation as a pure state machine: server events and playback reports in,
actions out.

Why pure: barge-in correctness (what to flush, what to truncate, which late deltas to
drop, whether to cancel) and the per-turn metrics are the hard part of `run`, and they
must be testable to the sample without a socket, a sound card or a clock. The transport
(`client.py`) feeds `handle()` with parsed server events and `played()` with what the
audio callback handed to the device, then executes the returned actions: `Send` a
client event, `Show` a transcript or status line, `Record` a trace line, `Finish`.

The only shared object is the `PlaybackQueue` (in memory, thread-safe): the machine
pushes audio deltas into it and flushes it on barge-in; the audio callback pulls from
it. All times are monotonic seconds passed in by the caller (`now_s`).

Longer than most modules (about 700 lines) because it is one class: every handler reads
and writes the same turn bookkeeping (which answers run, what was heard, which cut
awaits the speaker's silence), and the barge-in rules can only be checked as a whole.
What needs none of that state lives apart: the figures in `metrics`, the playback
accounting in `playback`, what the MCP servers the service reaches report in
`mcp_events`, the checks of the service's fields in `protocol.events`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.session.mcp_events import McpEvents, McpStep
from pivoicectl.realtime.session.metrics import TurnMetrics, add_usage
from pivoicectl.realtime.session.playback import (
    PlaybackQueue,
    PlayReport,
    TruncatePlan,
)
from pivoicectl.realtime.session.tool_calls import RunTools, ToolCalls, ToolResult

# --- actions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send this client event over the WebSocket."""

    event: dict[str, Any]


ShowKind = Literal["user", "assistant", "status", "error"]


@dataclass(frozen=True)
class Show:
    """Show a line to the user (transcripts, interruptions, errors)."""

    kind: ShowKind
    text: str


@dataclass(frozen=True)
class Record:
    """Write one record to the trace (the writer redacts and timestamps it)."""

    record: dict[str, Any]


@dataclass(frozen=True)
class Finish:
    """The run is over (turn limit reached); `reason` goes into the summary."""

    reason: str


Action = Send | Show | Record | Finish | RunTools


# --- inputs besides server events --------------------------------------------------------


# --- the machine ---------------------------------------------------------------------------


_ERRORS_TO_IGNORE = frozenset({"response_cancel_not_active"})
"""Error codes that are expected side effects, not problems (shown dimmed, traced)."""
FATAL_ERRORS: dict[str, str] = {
    "invalid_api_key": "check OPENAI_API_KEY or api_key in the config file",
    "insufficient_quota": "the account has no quota left: add credit or raise its limit",
    "billing_not_active": "activate billing for the account",
    "account_deactivated": "the account is deactivated",
    "model_not_found": "check --model (the account may not have access to it)",
    "unsupported_country_region_territory": "the service is not offered where this runs",
}
"""Error codes that no retry can heal, with what the user can do about each."""


class Conversation:
    """The client's view of one run, across reconnects.

    `connected()` when a WebSocket opens, `handle()` per server event, `played()` per
    playback report, `disconnected()` when the connection is gone. Session settings are
    sent again after every `session.created`, so a reconnect restores them.
    """

    KEPT_TURNS = 100
    """Completed turns kept in memory for the summary; a Pi that runs for weeks must
    not grow without bound. Older ones are in the trace."""
    KEPT_ERRORS = 50

    def __init__(
        self,
        config: ev.SessionConfig,
        playback: PlaybackQueue,
        max_turns: int | None = None,
        ids: ev.EventIds | None = None,
        barge_in: str = "server",
    ) -> None:
        self.config = config
        self.barge_in = barge_in
        """server: the service's speech_started interrupts; local: the device's VAD does
        (`local_interrupt`), speech_started only as a fallback; off: nothing does."""
        self.playback = playback
        self.max_turns = max_turns
        self.ids = ids or ev.EventIds()
        self.ready = False
        """session.created arrived and our session.update was sent: audio may flow."""
        self.user_speaking = False
        self.turns: list[TurnMetrics] = []
        """The last `KEPT_TURNS` turns (every turn is also a trace record)."""
        self.turns_forgotten = 0
        self._turn_count = 0
        self.usage: dict[str, Any] = {}
        self.errors: list[dict[str, Any]] = []
        self.connections = 0
        self.finished = False
        self._by_response: dict[str, TurnMetrics] = {}
        self._active: dict[str, TurnMetrics] = {}
        self._speech_stopped_s: float | None = None
        self._pending_silence: list[TurnMetrics] = []
        self._last_underflows = 0
        self._last_overflows = 0
        self._transcripts: dict[str, str] = {}
        self._open_turns: list[TurnMetrics] = []
        self.completed_turns = 0
        self._transcripts_shown: set[str] = set()
        self.invalid_events = 0
        """Frames from the service that `parse_server_event` rejected (not JSON, too
        deep, a field the conversation reads missing or malformed)."""
        self.fatal_error: dict[str, Any] | None = None
        """The last error of this connection that no retry can heal (see FATAL_ERRORS)."""
        self._half_sample: dict[str, bytes] = {}
        """Per item: the odd trailing byte of its last delta, the start of a sample the
        next delta completes."""
        self._this_connection: set[str] = set()
        """Responses created on the current connection: only their items exist in the
        service's session (a new connection is a new session)."""
        self.tools = ToolCalls()
        self.mcp = McpEvents()
        """The MCP servers the service reaches: set `mcp.approvals` to answer approval
        requests (refused by default)."""

    # --- derived state -------------------------------------------------------------

    ANSWER_WAIT_S = 10.0
    """After the user's turn ended, how long an answer that has not started yet still
    counts as coming (a turn the service never answers must not block renewal)."""

    @property
    def answering(self) -> bool:
        """An answer is under way (created, not yet done), whether or not its audio is
        at the speaker right now: the speaker may run dry between deltas mid-answer."""
        return bool(self._active)

    def is_idle(self, now_s: float) -> bool:
        """Nobody speaking, no answer awaited, running or playing: a safe moment to
        renew. Between the end of the user's turn and `response.created` (a whole round
        trip with push-to-talk) a renewal would throw the question away."""
        awaiting = (
            self._speech_stopped_s is not None
            and now_s - self._speech_stopped_s < self.ANSWER_WAIT_S
        )
        return (
            not self.user_speaking
            and not awaiting
            and not self._active
            and self.tools.running is None
            and self.playback.queued_samples == 0
        )

    @property
    def server_cancels_on_speech(self) -> bool:
        """Whether the service cancels a running answer by itself when speech starts."""
        return self.config.turn_detection != "none" and self.config.interrupt_response

    # --- connection ------------------------------------------------------------------

    def connected(self, now_s: float) -> list[Action]:
        """A WebSocket is open; nothing is sent until the server's session.created."""
        self.connections += 1
        self.ready = False
        self.fatal_error = None
        self._this_connection.clear()
        return [Record({"type": "connected", "connection": self.connections})]

    def disconnected(self, now_s: float, reason: str) -> list[Action]:
        """The connection is gone: its responses will never finish.

        Audio already queued keeps playing (it was received); the turns that were
        running are closed as `disconnected` so metrics and max-turns stay consistent. A
        question still waiting for its answer is forgotten: the session that would have
        answered it is gone, and waiting for it would only hold off a renewal.
        """
        self.ready = False
        self.user_speaking = False
        self._speech_stopped_s = None
        self._half_sample.clear()
        self.tools.forget_connection()
        self.mcp.forget_connection()
        actions: list[Action] = [Record({"type": "disconnected", "reason": reason})]
        for turn in list(self._active.values()):
            turn.status = "disconnected"
            turn.done_s = now_s
            self.playback.mark_response_done(turn.response_id)
            if turn.response_id not in self._transcripts_shown:  # what had arrived of it
                self._transcripts_shown.add(turn.response_id)
                partial = self._transcripts.pop(turn.response_id, "")
                actions += self._assistant_text(turn.response_id, partial, interrupted=True)
        self._active.clear()
        self._transcripts.clear()  # answers of the lost session never finish
        actions += self._complete_turns(now_s)
        return actions

    # --- server events ----------------------------------------------------------------

    def handle(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        """Actions for one server event. Unknown events are ignored; frames that
        `parse_server_event` rejected are counted and traced, and otherwise ignored too.

        Nothing is caught here: the parser checked every field a handler reads
        (`ev.VALIDATED_EVENTS`), so an exception is a bug of ours and must surface.
        """
        if event.type == ev.INVALID:
            self.invalid_events += 1
            record = {"type": "invalid_event", "event_type": event.wire_type}
            return [Record({**record, "problem": event.problem})]
        handler = _HANDLERS.get(event.type)
        return [] if handler is None else handler(self, event, now_s)

    def _on_session_created(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        self.ready = True
        return [
            Send(ev.session_update(self.config, self.ids.next())),
            Record({"type": "session", "session_id": _session_id(event)}),
        ]

    def _on_speech_started(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        self.user_speaking = True
        self.tools.user_spoke()
        self.mcp.user_spoke()
        actions: list[Action] = [
            Record({"type": "speech_started", "item_id": event.item_id, "at_s": now_s})
        ]
        if self.barge_in == "off":
            return actions
        return actions + self._interrupt(now_s, cancel=not self.server_cancels_on_speech)

    def local_interrupt(self, now_s: float, source: str = "local_vad") -> list[Action]:
        """The device decided the person talks over the assistant (local barge-in,
        echo guard, push-to-talk): stop playback, truncate and cancel ourselves, since
        the service has not (yet) seen the speech. Between sessions (a reconnect) there
        is nothing to truncate or cancel, but what is still playing of the old answer
        stops all the same."""
        if not self.ready:
            if self.playback.queued_samples == 0:
                return []
            self.playback.interrupt()
            record = {"type": "local_barge_in", "source": source, "at_s": now_s}
            return [Record({**record, "session": "none"}), Show("status", "(interrupted)")]
        self.tools.user_spoke()
        self.mcp.user_spoke()
        actions = self._interrupt(now_s, cancel=True, source=source)
        if actions:
            actions.insert(0, Record({"type": "local_barge_in", "source": source, "at_s": now_s}))
        return actions

    # --- push-to-talk -------------------------------------------------------------------

    PTT_MIN_AUDIO_MS = 100
    """The service rejects a commit of less audio (input_audio_buffer_commit_empty)."""

    def ptt_pressed(self, now_s: float) -> list[Action]:
        """The talk button went down: silence the assistant, start a fresh input buffer."""
        if not self.ready:
            return []
        actions = self.local_interrupt(now_s, source="ptt")
        self.user_speaking = True
        return [
            *actions,
            Record({"type": "ptt", "state": "pressed", "at_s": now_s}),
            Send(ev.input_audio_clear(self.ids.next())),
        ]

    def ptt_released(self, now_s: float, held_audio_ms: int) -> list[Action]:
        """The talk button went up: commit what was said and ask for the answer.

        A tap shorter than the service's minimum is dropped (cleared) instead of
        producing an error and an answer to nothing.
        """
        if not self.ready:
            return []
        self.user_speaking = False
        record = Record(
            {"type": "ptt", "state": "released", "at_s": now_s, "audio_ms": held_audio_ms}
        )
        if held_audio_ms < self.PTT_MIN_AUDIO_MS:
            return [
                record,
                Send(ev.input_audio_clear(self.ids.next())),
                Show("status", "(too short: hold the button while you talk)"),
            ]
        self._speech_stopped_s = now_s
        return [
            record,
            Send(ev.input_audio_commit(self.ids.next())),
            Send(ev.response_create(self.ids.next())),
        ]

    def _interrupt(self, now_s: float, cancel: bool, source: str = "server_vad") -> list[Action]:
        actions: list[Action] = []
        was_playing = self.playback.queued_samples > 0
        plan = self.playback.interrupt(active_response_ids=tuple(self._active))
        running = list(self._active.values())
        target = self._by_response.get(plan.response_id) if plan else None
        if target is None and was_playing:
            target = self._last_turn_with_audio()
        if target is None and running:
            target = running[-1]
        if target is None or (plan is None and not was_playing and not running):
            return actions  # an ordinary turn start: nothing was playing or coming
        if plan is not None and plan.response_id not in self._this_connection:
            plan = None  # audio of an earlier session: this one has no such item to cut
        if target.interrupted_s is not None and plan is None and not was_playing:
            return actions  # already interrupted (locally): the service only caught up
        target.interrupted_s = now_s
        self._pending_silence.append(target)
        if plan is not None:
            target.truncate_audio_end_ms = plan.audio_end_ms
            target.played_ms_at_interrupt = ev.samples_to_ms(plan.played_samples)
            target.received_ms_at_interrupt = ev.samples_to_ms(plan.received_samples)
            actions.append(Send(plan.event(self.ids.next())))
        if running and cancel:
            actions.append(Send(ev.response_cancel(self.ids.next())))
            for turn in running:
                turn.cancel_sent = True
        actions.append(Record({**_interruption_record(target, plan, now_s), "source": source}))
        heard = "" if plan is None else f" after {plan.audio_end_ms / 1000:.1f} s"
        actions.append(Show("status", f"(interrupted{heard})"))
        return actions

    def _on_speech_stopped(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        self.user_speaking = False
        self._speech_stopped_s = now_s
        return [Record({"type": "speech_stopped", "item_id": event.item_id})]

    def _on_user_transcript(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        text = event.data["transcript"].strip()
        if not text:
            return []
        return [
            Show("user", text),
            Record({"type": "user", "item_id": event.item_id, "text": text}),
        ]

    def _on_response_created(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        response_id = event.response_id
        if response_id is None or response_id in self._by_response:
            return []
        silence_ms = (
            self.config.vad_silence_duration_ms if self.config.turn_detection == "server_vad" else 0
        )
        self._turn_count += 1
        turn = TurnMetrics(
            index=self._turn_count,
            response_id=response_id,
            created_s=now_s,
            speech_stopped_s=self._speech_stopped_s,
            vad_silence_ms=silence_ms,
        )
        self._speech_stopped_s = None
        self.turns.append(turn)
        self._open_turns.append(turn)
        self._by_response[response_id] = turn
        self._active[response_id] = turn
        self._this_connection.add(response_id)
        self._forget_old_turns()
        return [Record({"type": "response_created", "response_id": response_id})]

    def _forget_old_turns(self) -> None:
        while len(self.turns) > self.KEPT_TURNS and self.turns[0].complete:
            old = self.turns.pop(0)
            self.turns_forgotten += 1
            self._by_response.pop(old.response_id, None)
            self._transcripts_shown.discard(old.response_id)

    def _on_audio_delta(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        response_id, item_id = event.response_id, event.item_id
        if response_id is None or item_id is None:
            return []
        pcm = self._half_sample.pop(item_id, b"") + ev.audio_delta_bytes(event)
        if len(pcm) % ev.BYTES_PER_SAMPLE:
            self._half_sample[item_id] = pcm[-1:]
            pcm = pcm[:-1]
        if not self.playback.push(item_id, response_id, pcm):
            return []  # a late delta of an interrupted response
        turn = self._by_response.get(response_id)
        if turn is not None:
            turn.item_id = turn.item_id or item_id
            turn.received_samples += ev.bytes_to_samples(len(pcm))
            if turn.first_delta_s is None:
                turn.first_delta_s = now_s
        return []

    def _on_audio_done(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        if event.item_id is not None:
            self._half_sample.pop(event.item_id, None)
            self.playback.mark_audio_done(event.item_id)
        return []

    def _on_assistant_transcript_delta(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        response_id = event.response_id
        if response_id is not None:
            delta = event.data["delta"]
            self._transcripts[response_id] = self._transcripts.get(response_id, "") + delta
        return []

    def _on_assistant_transcript(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        response_id = event.response_id or ""
        if response_id in self._transcripts_shown:
            return []
        self._transcripts_shown.add(response_id)
        self._transcripts.pop(response_id, None)
        return self._assistant_text(response_id, event.data["transcript"], interrupted=False)

    def _assistant_text(self, response_id: str, text: str, interrupted: bool) -> list[Action]:
        text = text.strip()
        if not text:
            return []
        shown = f"{text} …(interrupted)" if interrupted else text
        return [
            Show("assistant", shown),
            Record(
                {
                    "type": "assistant",
                    "response_id": response_id,
                    "text": text,
                    "interrupted": interrupted,
                }
            ),
        ]

    def _on_response_done(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        response_id = event.response_id
        if response_id is not None:
            self.playback.mark_response_done(response_id)
        turn = self._active.pop(response_id, None) if response_id else None
        response = event.data.get("response")
        usage = response.get("usage") if isinstance(response, dict) else None
        if isinstance(usage, dict):
            add_usage(self.usage, usage)
        actions: list[Action] = [
            Record(
                {
                    "type": "response_done",
                    "response_id": response_id,
                    "status": event.response_status,
                    "reason": event.response_status_reason,
                }
            )
        ]
        if response_id is not None and response_id not in self._transcripts_shown:
            # No transcript.done (cancelled answers get none): show what had arrived.
            self._transcripts_shown.add(response_id)
            partial = self._transcripts.pop(response_id, "")
            cut = event.response_status != "completed"
            actions += self._assistant_text(response_id, partial, interrupted=cut)
        if turn is not None:
            turn.status = event.response_status or "unknown"
            turn.reason = event.response_status_reason
            turn.done_s = now_s
            turn.usage = usage if isinstance(usage, dict) else None
        if event.response_status == "failed":
            actions.append(Show("error", f"the answer failed: {_status_details(event)}"))
        actions += self._complete_turns(now_s)
        run = self.tools.response_done(response_id, self.connections)
        if run is not None:
            names = ", ".join(dict.fromkeys(call.name for call in run.calls))
            actions += [Show("status", f"(using {names} …)"), run]
        free = run is None and self.ready and not self._active and not self.user_speaking
        if self.mcp.go_on_after(response_id, event.response_status, free):
            actions += [
                Record({"type": "mcp_go_on", "response_id": response_id}),
                Send(ev.response_create(self.ids.next())),
            ]
        return actions

    def _on_output_item_done(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        item = event.data["item"]
        actions = self._mcp_actions(self.mcp.item(item, event.response_id, done=True))
        if item.get("type") != "function_call":
            return actions
        self.tools.item_done(event.response_id, item)
        return [
            *actions,
            Record({"type": "tool_requested", "name": item["name"], "call_id": item["call_id"]}),
        ]

    def _on_mcp_event(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        """An item added or done, a tool listing's or a call's progress: about the MCP
        servers the service reaches (`mcp_events`)."""
        kind = event.type
        if kind.startswith("mcp_list_tools."):
            step = self.mcp.listing(kind.rsplit(".", 1)[1], event.item_id)
        elif kind.startswith("response.mcp_call."):
            step = self.mcp.call(kind.rsplit(".", 1)[1], event.item_id)
        elif isinstance(item := event.data.get("item"), dict):  # checked when not null
            step = self.mcp.item(item, event.response_id, kind.endswith(".done"))
        else:
            return []
        return self._mcp_actions(step)

    def _mcp_actions(self, step: McpStep) -> list[Action]:
        actions: list[Action] = [Record(r) for r in step.records]
        actions += [Show(kind, text) for kind, text in step.shows]
        for a in step.approvals:
            reason = None if a.approve else "not approved on this device"
            event = ev.mcp_approval_response(
                a.request_id, a.approve, a.item_id, self.ids.next(), reason
            )
            actions.append(Send(event))
        return actions

    def tool_results(self, run: RunTools, results: list[ToolResult], now_s: float) -> list[Action]:
        """The outcomes of `run`'s calls: their outputs, then a `response.create` so the
        model speaks, unless the person started a new turn meanwhile; nothing is sent
        when the session that asked is gone."""
        events, sendable, records = self.tools.finish(
            run, results, self.connections, self.ready, self.ids
        )
        actions: list[Action] = [Record(r) for r in records]
        if not sendable:
            dropped = {"type": "tool_output_dropped", "response_id": run.response_id}
            return [*actions, Record({**dropped, "why": "the session that asked is gone"})]
        return actions + [Send(e) for e in events]

    def _on_error(self, event: ev.ServerEvent, now_s: float) -> list[Action]:
        code = event.error_code
        record = {
            "type": "error",
            "code": code,
            "error_type": event.error.get("type"),
            "message": event.error_message,
            "client_event_id": event.error.get("event_id"),
        }
        actions: list[Action] = [Record(record)]
        if code in _ERRORS_TO_IGNORE:
            return actions
        self.errors.append(record)
        del self.errors[: -self.KEPT_ERRORS]
        if code in FATAL_ERRORS:
            self.fatal_error = record
        actions.append(Show("error", f"server error {code or ''}: {event.error_message}".strip()))
        return actions

    # --- playback reports -------------------------------------------------------------

    def played(self, report: PlayReport) -> list[Action]:
        """Account for one device block: first audible sample, silence after a barge-in."""
        for span in report.spans:
            turn = self._by_response.get(span.response_id)
            if turn is not None and turn.first_audible_s is None:
                turn.first_audible_s = report.audible_s
        if self._pending_silence:
            still = []
            for turn in self._pending_silence:
                assert turn.interrupted_s is not None
                # Only a block pulled after the flush reflects it; its first sample is
                # where the speaker falls silent (the queue was empty, so it is silence).
                if report.callback_s >= turn.interrupted_s and not any(
                    s.response_id == turn.response_id for s in report.spans
                ):
                    turn.silent_s = report.audible_s
                else:
                    still.append(turn)
            self._pending_silence = still
        under = report.underflows - self._last_underflows
        over = report.overflows - self._last_overflows
        self._last_underflows, self._last_overflows = report.underflows, report.overflows
        if under or over:
            for turn in self._active.values() or self.turns[-1:]:
                turn.underflows += under
                turn.overflows += over
        return self._complete_turns(report.callback_s)

    # --- internals -----------------------------------------------------------------------

    def _last_turn_with_audio(self) -> TurnMetrics | None:
        for turn in reversed(self.turns):
            if turn.received_samples:
                return turn
        return None

    def _complete_turns(self, now_s: float) -> list[Action]:
        """Close turns whose answer is done and whose audio was played or cut off."""
        actions: list[Action] = []
        for turn in list(self._open_turns):
            if turn.done_s is None:
                continue
            if turn.interrupted and turn.silent_s is None and turn.status != "disconnected":
                continue  # wait for the block that proves the speaker fell silent
            status = self.playback.item_status(turn.item_id) if turn.item_id else None
            still_playing = (
                status is not None
                and not status.truncated
                and not turn.interrupted
                and status.played_samples < status.received_samples
            )
            if still_playing:
                continue
            turn.complete = True
            self._open_turns.remove(turn)
            self.completed_turns += 1
            actions.append(Record({"type": "turn", **turn.to_dict()}))
        if (
            self.max_turns is not None
            and not self.finished
            and self.completed_turns >= self.max_turns
        ):
            self.finished = True
            actions.append(Finish(f"{self.max_turns} turn(s) done"))
        return actions


def _session_id(event: ev.ServerEvent) -> str | None:
    session = event.data.get("session")
    return session.get("id") if isinstance(session, dict) else None


def _status_details(event: ev.ServerEvent) -> str:
    response = event.data.get("response")
    details = response.get("status_details") if isinstance(response, dict) else None
    if isinstance(details, dict):
        error = details.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        return str(details.get("reason") or details.get("type") or "unknown reason")
    return "unknown reason"


def _interruption_record(
    turn: TurnMetrics, plan: TruncatePlan | None, now_s: float
) -> dict[str, Any]:
    return {
        "type": "interruption",
        "response_id": turn.response_id,
        "item_id": plan.item_id if plan else turn.item_id,
        "at_s": now_s,
        "truncate_audio_end_ms": plan.audio_end_ms if plan else None,
        "played_samples": plan.played_samples if plan else None,
        "received_samples": plan.received_samples if plan else None,
        "truncate_sent": plan is not None,
    }


_HANDLERS: dict[str, Callable[[Conversation, ev.ServerEvent, float], list[Action]]] = {
    "session.created": Conversation._on_session_created,
    "input_audio_buffer.speech_started": Conversation._on_speech_started,
    "input_audio_buffer.speech_stopped": Conversation._on_speech_stopped,
    "conversation.item.input_audio_transcription.completed": Conversation._on_user_transcript,
    "response.created": Conversation._on_response_created,
    "response.output_audio.delta": Conversation._on_audio_delta,
    "response.output_audio.done": Conversation._on_audio_done,
    "response.output_audio_transcript.delta": Conversation._on_assistant_transcript_delta,
    "response.output_audio_transcript.done": Conversation._on_assistant_transcript,
    "response.done": Conversation._on_response_done,
    "response.output_item.done": Conversation._on_output_item_done,
    "response.output_item.added": Conversation._on_mcp_event,
    "conversation.item.added": Conversation._on_mcp_event,
    "conversation.item.done": Conversation._on_mcp_event,
    "mcp_list_tools.in_progress": Conversation._on_mcp_event,
    "mcp_list_tools.completed": Conversation._on_mcp_event,
    "mcp_list_tools.failed": Conversation._on_mcp_event,
    "response.mcp_call.in_progress": Conversation._on_mcp_event,
    "response.mcp_call.completed": Conversation._on_mcp_event,
    "response.mcp_call.failed": Conversation._on_mcp_event,
    "error": Conversation._on_error,
}
"""Server events the conversation acts on (GA names; beta names are normalized). Each
has its fields checked by `parse_server_event`: the keys equal `ev.VALIDATED_EVENTS`."""
