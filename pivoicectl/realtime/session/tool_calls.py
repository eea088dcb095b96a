"""The model's function calls: collected per answer, run once the answer is done, and
answered on the connection that asked for them (pure, like the conversation).

Why at `response.done` and not at each call: the model may ask for several calls in
one answer, and it only continues after a `response.create`; running them together and
sending all outputs before that one `response.create` is what the service expects.
Why the connection number: a call from a session that was renewed or lost must not be
answered on the new one (that session has no such call), nor on a closed socket.
Why the barge-in flag: the person who talked while a tool ran has started a new turn,
which the service answers by itself; asking for another answer would talk over it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pivoicectl.realtime.protocol import events as ev

KEPT_CALLS = 50
"""Calls kept in memory for the summary (all of them are in the trace)."""
SHOWN_ARGUMENTS_CHARS = 200


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str
    """A JSON object as text, as the model wrote it (checked by the tool box)."""


@dataclass(frozen=True)
class RunTools:
    """Action: run these calls (together), then hand the outcomes to `tool_results`."""

    response_id: str
    calls: tuple[ToolCall, ...]
    connection: int


@dataclass(frozen=True)
class ToolResult:
    """What the client reports back for one call (see `realtime.tools.ToolOutcome`)."""

    output: str
    ok: bool
    duration_s: float
    error: str = ""


@dataclass
class ToolCalls:
    """Pending calls per response, the batch running now, and a log for the summary."""

    pending: dict[str, list[ToolCall]] = field(default_factory=dict)
    running: RunTools | None = None
    barged_in: bool = False
    """The user started talking while `running` ran."""
    log: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    failed: int = 0

    def item_done(self, response_id: str | None, item: dict[str, Any]) -> None:
        """Keep a finished `function_call` output item (other items are not ours)."""
        if response_id is None or item.get("type") != "function_call":
            return
        call = ToolCall(item["call_id"], item["name"], item.get("arguments") or "{}")
        self.pending.setdefault(response_id, []).append(call)

    def response_done(self, response_id: str | None, connection: int) -> RunTools | None:
        calls = self.pending.pop(response_id, None) if response_id else None
        if not calls or response_id is None:
            return None
        self.running = RunTools(response_id, tuple(calls), connection)
        self.barged_in = False
        return self.running

    def user_spoke(self) -> None:
        if self.running is not None:
            self.barged_in = True

    def forget_connection(self) -> None:
        """Calls collected on a connection that is gone can no longer be answered."""
        self.pending.clear()

    def finish(
        self,
        run: RunTools,
        results: Sequence[ToolResult],
        connection: int,
        ready: bool,
        ids: ev.EventIds,
    ) -> tuple[list[dict[str, Any]], bool, list[dict[str, Any]]]:
        """(client events to send in order, whether they may be sent, trace records)."""
        if self.running is run:
            self.running = None
        records = []
        for call, result in zip(run.calls, results, strict=True):
            entry = {
                "name": call.name,
                "call_id": call.call_id,
                "arguments": call.arguments[:SHOWN_ARGUMENTS_CHARS],
                "ok": result.ok,
                "duration_ms": round(result.duration_s * 1000, 1),
                "error": result.error,
            }
            records.append({"type": "tool_call", **entry, "output": result.output[:500]})
            self.total += 1
            self.failed += not result.ok
            self.log.append(entry)
        del self.log[:-KEPT_CALLS]
        if connection != run.connection or not ready:
            return [], False, records
        events = [
            ev.function_call_output(c.call_id, r.output, ids.next())
            for c, r in zip(run.calls, results, strict=True)
        ]
        if not self.barged_in:
            events.append(ev.response_create(ids.next()))
        return events, True, records
