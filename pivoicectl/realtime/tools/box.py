"""The tool box: the tools one `run` offers the model, and the one way to call them.

`call` is what the client runs for each function_call the model makes. It parses the
arguments (a JSON object), checks them against the tool's schema before anything runs,
runs the tool and times it. Whatever a tool does wrong (bad arguments, a failing or
hanging program, an audio server that is not there) comes back as a `ToolOutcome` with
ok=False and a JSON error the model can read: the conversation goes on. A bug in the
tool box itself still raises.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from pivoicectl.realtime.tools.outcome import ToolOutcome, ToolResult
from pivoicectl.realtime.tools.schema import ArgumentCheck

NAME_SHOWN_CHARS = 64


class Tool(Protocol):
    """One tool: its declaration (name, description, parameters) and how to run it."""

    name: str
    description: str
    parameters: Mapping[str, Any]

    async def run(self, arguments: Mapping[str, Any]) -> ToolResult: ...

    async def aclose(self) -> None: ...


class Toolbox:
    def __init__(
        self, tools: Sequence[Tool], clock: Callable[[], float] = time.perf_counter
    ) -> None:
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names repeat: {names}")
        self._tools = {t.name: t for t in tools}
        self._checks = {t.name: ArgumentCheck(t.parameters) for t in tools}
        self._clock = clock
        self._closed = False

    def declarations(self) -> list[dict[str, Any]]:
        """The session.tools entries: one function tool each (copies, to keep)."""
        return [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": copy.deepcopy(dict(t.parameters)),
            }
            for t in self._tools.values()
        ]

    def names(self) -> list[str]:
        return list(self._tools)

    async def call(self, name: str, arguments: str) -> ToolOutcome:
        """Run tool `name` with `arguments` (the JSON text the model sent)."""
        start = self._clock()
        result = await self._result(name, arguments)
        return ToolOutcome(
            output=result.output,
            ok=not result.error,
            duration_s=self._clock() - start,
            error=result.error,
        )

    async def _result(self, name: str, arguments: str) -> ToolResult:
        if self._closed:
            return ToolResult.failed("the tool box is closed: pivoicectl is stopping")
        tool = self._tools.get(name)
        if tool is None:
            shown = json.dumps(name[:NAME_SHOWN_CHARS])
            known = ", ".join(self._tools) or "none"
            return ToolResult.failed(f"no tool named {shown} (tools: {known})")
        parsed, problem = parse_arguments(arguments)
        if not problem:
            problem = self._checks[name].problem(parsed)
        if problem:
            return ToolResult.failed(f"{name}: invalid arguments: {problem}")
        return await tool.run(parsed)

    async def aclose(self) -> None:
        """Refuse further calls and stop what tools still run (their programs killed)."""
        self._closed = True
        for tool in self._tools.values():
            await tool.aclose()


def parse_arguments(text: str) -> tuple[dict[str, Any], str]:
    """The arguments object and "", or {} and why `text` is not a JSON object. No text
    at all counts as {}: a tool without parameters may be called so."""
    if not text.strip():
        return {}, ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, f"not JSON ({exc.msg} at character {exc.pos})"
    except RecursionError:
        return {}, "not JSON (nested too deeply)"
    if not isinstance(value, dict):
        return {}, f"not a JSON object but {_json_kind(value)}"
    return value, ""


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
