"""The tool box: the tools one `run` offers the model, and the one way to call them.

`call` is what the client runs for each function_call the model makes. It parses the
arguments (a JSON object), checks them against the tool's schema before anything runs,
runs the tool and times it. Whatever a tool does wrong (bad arguments, a failing or
hanging program, an audio server that is not there) comes back as a `ToolOutcome` with
ok=False and a JSON error the model can read: the conversation goes on. A bug in the
tool box itself still raises.

MCP servers join it at `start` (an await, so it is not in the constructor): a server
the device runs is a `ToolSource` whose tools are added once listed; a server the
service reaches (`RemoteMcp`) is only declared, and its header values are `secrets`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from pivoicectl.realtime.tools.mcp_remote import RemoteMcp
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


class ToolSource(Protocol):
    """Tools found at start (an MCP server the device runs): `start` reports a failure
    through `warn` instead of raising; `tools` then gives what it found, named apart
    from `taken` (and adds the names to it)."""

    async def start(self, warn: Callable[[str], None]) -> None: ...

    def tools(self, taken: set[str], warn: Callable[[str], None]) -> Sequence[Tool]: ...

    def secrets(self) -> tuple[str, ...]: ...

    async def aclose(self) -> None: ...


class Toolbox:
    def __init__(
        self,
        tools: Sequence[Tool],
        clock: Callable[[], float] = time.perf_counter,
        sources: Sequence[ToolSource] = (),
        remote: Sequence[RemoteMcp] = (),
    ) -> None:
        self._tools: dict[str, Tool] = {}
        self._checks: dict[str, ArgumentCheck] = {}
        for tool in tools:
            self._add(tool)
        self._clock = clock
        self._closed = False
        self._sources = tuple(sources)
        self._remote = tuple(remote)
        self._started = False

    def _add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool names repeat: {tool.name}")
        self._checks[tool.name] = ArgumentCheck(tool.parameters)
        self._tools[tool.name] = tool

    async def start(self, warn: Callable[[str], None]) -> None:
        """Start the MCP servers the device runs (together) and add their tools. A
        server that does not start is one `warn` line and no tools; nothing to do
        without servers. Declarations change: send them after this."""
        if self._started:
            return
        self._started = True
        await asyncio.gather(*(source.start(warn) for source in self._sources))
        taken = set(self._tools)
        for source in self._sources:
            for tool in source.tools(taken, warn):
                self._add(tool)

    def declarations(self) -> list[dict[str, Any]]:
        """The session.tools entries: a function tool each, then the MCP servers the
        service reaches (copies, to keep)."""
        functions = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": copy.deepcopy(dict(t.parameters)),
            }
            for t in self._tools.values()
        ]
        return functions + [server.declaration() for server in self._remote]

    def secrets(self) -> tuple[str, ...]:
        """Values that must never reach a trace or a log: the MCP servers' headers."""
        return tuple(s for server in self._remote for s in server.secrets()) + tuple(
            s for source in self._sources for s in source.secrets()
        )

    def mcp_approvals(self) -> dict[str, frozenset[str] | None]:
        """Per server the service reaches: the tools whose approval requests the device
        grants (None: all)."""
        return {server.label: server.approved() for server in self._remote}

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
        for source in self._sources:
            await source.aclose()


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
