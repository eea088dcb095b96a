"""What the service says about the MCP servers it reaches itself (`[[run.mcp]]` with
where = "remote"), turned into lines, trace records, approvals and a nudge to go on
(pure, like the conversation, which calls it).

The service lists a server's tools when the session declares it (an `mcp_list_tools`
item, then `mcp_list_tools.in_progress/completed/failed`) and runs a call itself (an
`mcp_call` output item, then `response.mcp_call.in_progress/completed/failed`). Those
events carry only an item id, so the names shown come from the items seen before them
(`KEPT_ITEMS` at most). Lines name the server and tool only: arguments and outputs go to
the trace (every event is traced by the client) and not to the console.

An `mcp_approval_request` item (a table with require_approval = "always") is answered at
once from the table's allow-list; a server the table does not name, or a tool not in the
list, is refused.

Why a `response.create` after some answers: when an answer ends with an MCP call or an
approval request as its last item, the model has said nothing about the result and, as
after a function call, does not go on by itself. When the model already spoke after the
call, or another answer has started (the service went on by itself), or the person
spoke, nothing is asked; `MAX_CONTINUATIONS` in a row at most until the person speaks
again, so a model that keeps calling cannot loop.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

KEPT_ITEMS = 200
"""Item names and answered requests remembered at most (oldest forgotten first)."""
MAX_CONTINUATIONS = 5


@dataclass(frozen=True)
class Approval:
    """An answer to one approval request, for the conversation to send."""

    request_id: str
    approve: bool
    server: str
    tool: str
    item_id: str
    """The id of the approval response item (the client names the items it creates)."""


@dataclass
class McpStep:
    """What one event means: (kind, text) lines, trace records, approvals to send."""

    shows: list[tuple[Literal["status", "error"], str]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)


class McpEvents:
    def __init__(self, approvals: Mapping[str, frozenset[str] | None] | None = None) -> None:
        self.approvals: dict[str, frozenset[str] | None] = dict(approvals or {})
        """Per server label: the tools approved (None: all of them)."""
        self._names: OrderedDict[str, tuple[str, str]] = OrderedDict()
        """Item id -> (server label, tool name or "")."""
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._last_item: OrderedDict[str, tuple[str, str]] = OrderedDict()
        """Response id -> (type, id) of its last output item done so far."""
        self._item_numbers = itertools.count(1)
        self._continuations = 0
        self.calls_failed = 0
        self.lists_failed = 0

    # --- items -----------------------------------------------------------------------

    def item(self, item: dict[str, Any], response_id: str | None, done: bool) -> McpStep:
        """An item seen in `conversation.item.added/done` or `response.output_item.*`
        (`response_id` for the latter; `done` for a finished one)."""
        step = McpStep()
        kind, item_id = item.get("type"), item.get("id")
        if response_id is not None and done and isinstance(kind, str):
            last = (kind, item_id if isinstance(item_id, str) else "")
            self._remember(self._last_item, response_id, last)
        if kind not in ("mcp_call", "mcp_approval_request", "mcp_list_tools"):
            return step
        if not isinstance(item_id, str):
            return step  # a tool listing without an id: nothing can refer to it
        server = item["server_label"]
        tool = item.get("name") or ""
        self._remember(self._names, item_id, (server, tool))
        if kind == "mcp_approval_request" and done and item_id not in self._answered:
            self._remember(self._answered, item_id, None)
            approve = self._approves(server, tool)
            number = next(self._item_numbers)
            step.approvals.append(Approval(item_id, approve, server, tool, f"pv_mcpr_{number:06d}"))
            verdict = "approved" if approve else "refused (not in its approve list)"
            step.shows.append(("status", f"(MCP {server}: {tool} {verdict})"))
            step.records.append(
                {"type": "mcp_approval", "server": server, "tool": tool, "approve": approve}
            )
        return step

    def _approves(self, server: str, tool: str) -> bool:
        if server not in self.approvals:
            return False
        allowed = self.approvals[server]
        return allowed is None or tool in allowed

    # --- progress events ------------------------------------------------------------------

    def listing(self, state: str, item_id: str | None) -> McpStep:
        """`mcp_list_tools.<state>`."""
        server, _ = self._names.get(item_id or "", ("an MCP server", ""))
        step = McpStep(records=[{"type": "mcp_list_tools", "server": server, "state": state}])
        if state == "completed":
            step.shows.append(("status", f"(MCP {server}: tools listed)"))
        elif state == "failed":
            self.lists_failed += 1
            step.shows.append(("error", f"MCP {server}: the service could not list its tools"))
        return step

    def call(self, state: str, item_id: str | None) -> McpStep:
        """`response.mcp_call.<state>`."""
        server, tool = self._names.get(item_id or "", ("an MCP server", ""))
        tool = tool or "a tool"
        step = McpStep(
            records=[{"type": "mcp_call", "server": server, "tool": tool, "state": state}]
        )
        if state == "completed":
            step.shows.append(("status", f"(MCP {server}: {tool} done)"))
        elif state == "failed":
            self.calls_failed += 1
            step.shows.append(("error", f"MCP {server}: {tool} failed"))
        return step

    # --- answers ------------------------------------------------------------------------------

    def go_on_after(self, response_id: str | None, status: str | None, free: bool) -> bool:
        """At response.done: whether to ask for another answer (see the module doc).
        `free`: nothing else answers or asks already, nobody speaks."""
        last = self._last_item.pop(response_id, None) if response_id else None
        if last is None or not free or status in ("cancelled", "failed"):
            return False
        kind, item_id = last
        ended_on_mcp = kind == "mcp_call" or (
            kind == "mcp_approval_request" and item_id in self._answered
        )
        if not ended_on_mcp or self._continuations >= MAX_CONTINUATIONS:
            return False
        self._continuations += 1
        return True

    def user_spoke(self) -> None:
        """The person spoke: a new turn, the continuation count starts again."""
        self._continuations = 0

    def forget_connection(self) -> None:
        """Answers of a connection that is gone will never be done."""
        self._last_item.clear()

    @staticmethod
    def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > KEPT_ITEMS:
            table.popitem(last=False)
