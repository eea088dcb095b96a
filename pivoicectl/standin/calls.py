"""The stand-in's tool calls: which tools a session declares, the calls it made, their outputs.

`run --local` and the tests exercise a client's tool handling with no model: when the
server is told to call a tool (`LocalServerSettings.call_tool`) and the session declares
a function tool of that name, the answer to a question becomes a function call; the
question's audio waits here until the client sends the call's output and asks for a
response, which then repeats the question after saying what the tool said. Pure: no
socket, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pivoicectl.standin.responses import FunctionCall
from pivoicectl.standin.session_config import Rejection

MAX_CALLS = 1000
"""Calls a connection remembers; an output for an older one is for an unknown call."""


def declared_function_names(session: Mapping[str, Any]) -> list[str]:
    """The names of the function tools in a session's `tools` (MCP tools are not ours)."""
    tools = session.get("tools")
    if not isinstance(tools, list):
        return []
    return [
        tool["name"]
        for tool in tools
        if isinstance(tool, dict)
        and tool.get("type") == "function"
        and isinstance(tool.get("name"), str)
    ]


@dataclass(frozen=True)
class OutputItem:
    """A `function_call_output` item a client sent: which call, what the tool said."""

    call_id: str
    output: str
    item_id: str | None


def read_output_item(item: Any) -> OutputItem | Rejection:
    """The `item` of a `conversation.item.create` as a tool's output, or why it is refused.

    The stand-in has no use for other items (a model would read a text message; a
    repeater cannot), so it refuses them rather than pretend.
    """
    if not isinstance(item, dict):
        return Rejection(
            "missing_required_parameter", "Missing required parameter: 'item'.", "item"
        )
    if item.get("type") != "function_call_output":
        return Rejection(
            "invalid_value",
            "The local server only takes items of type 'function_call_output'.",
            "item.type",
        )
    call_id, output = item.get("call_id"), item.get("output")
    for name, value in (("call_id", call_id), ("output", output)):
        if not isinstance(value, str):
            return Rejection(
                "missing_required_parameter",
                f"Missing required parameter: 'item.{name}'.",
                f"item.{name}",
            )
    assert isinstance(call_id, str) and isinstance(output, str)
    item_id = item.get("id")
    return OutputItem(call_id, output, item_id if isinstance(item_id, str) else None)


@dataclass
class CallRecord:
    """A call made in this session: the question it stands for and, once sent, its output."""

    call: FunctionCall
    question_pcm: bytes
    output: str | None = None
    """The client's output until a response answers it."""


@dataclass(frozen=True)
class ToolResult:
    """An output the next response answers: which tool said what, about which question."""

    name: str
    output: str
    question_pcm: bytes
    input_audio_samples: int


class ToolCalls:
    """The calls of one connection, from the question that made one to the answer after it."""

    def __init__(
        self, call_tool: str | None, call_tool_args: str, new_call_id: Callable[[], str]
    ) -> None:
        self._call_tool = call_tool
        self._call_tool_args = call_tool_args
        self._new_call_id = new_call_id
        self._calls: dict[str, CallRecord] = {}

    def tool_to_call(self, session: Mapping[str, Any]) -> str | None:
        """The tool to call instead of answering a question, if the session declares it."""
        if self._call_tool is not None and self._call_tool in declared_function_names(session):
            return self._call_tool
        return None

    def make(self, name: str, question_pcm: bytes, input_audio_samples: int) -> FunctionCall:
        """A new call of `name`, keeping the question for the answer after it.

        Only the newest unanswered call keeps its question's audio: a client that never
        answers calls must not make the server hold every question it was asked.
        """
        for record in self._calls.values():
            if record.output is None:
                record.question_pcm = b""
        call = FunctionCall(self._new_call_id(), name, self._call_tool_args, input_audio_samples)
        self._calls[call.call_id] = CallRecord(call, question_pcm)
        while len(self._calls) > MAX_CALLS:
            del self._calls[next(iter(self._calls))]
        return call

    def knows(self, call_id: str) -> bool:
        """True if `call_id` is a call this session made."""
        return call_id in self._calls

    def record_output(self, call_id: str, output: str) -> None:
        """The client's output for a known call (a later one replaces an earlier one)."""
        self._calls[call_id].output = output

    def take_result(self) -> ToolResult | None:
        """The output of the latest call no response has answered yet, or None.

        Every waiting output counts as answered (one answer speaks for all of them) and
        is forgotten; the call stays known, so its output may be sent again.
        """
        waiting = [r for r in self._calls.values() if r.output is not None]
        if not waiting:
            return None
        newest = waiting[-1]
        assert newest.output is not None
        result = ToolResult(
            newest.call.name,
            newest.output,
            newest.question_pcm,
            newest.call.input_audio_samples,
        )
        newest.question_pcm = b""  # answered audio is not needed again
        for record in waiting:
            record.output = None
        return result
