"""MCP servers the device reaches itself (`[[run.mcp]]`, where = "local"): their tools
offered to the model as function tools, each call forwarded with the official SDK.

A server is a program run over stdio (`command`) or a streamable-HTTP endpoint on the
LAN (`url`). At start its tools are listed and declared under names the service takes
(`declared_name`); a server that does not start or list is reported in one line and its
tools are left out, the run goes on. A server that dies mid-session fails the call it
was on (the model reads why) and is started again at the next call.

Why each connection lives in a task of its own: the SDK's client is an anyio context (a
task group and cancel scopes) that the task which entered it must also leave, while
calls come from whichever task runs the model's tool calls. The owner task enters it,
hands the client over, and leaves it when told to close.

Why the server's stderr goes into a pipe read here: a server logs to stderr for as long
as it runs (weeks on a Pi), so only its last `STDERR_TAIL_BYTES` are kept, in memory;
they end the reason when the server fails to start.

The SDK is imported only when a table names a server, so `run --help` and a run without
MCP do not pay for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from pivoicectl.realtime.tools.outcome import ToolResult, one_line
from pivoicectl.realtime.tools.schema import schema_problem

if TYPE_CHECKING:
    from mcp import Client
    from mcp.types import CallToolResult
    from mcp.types import Tool as McpToolInfo

START_TIMEOUT_S = 20.0
"""How long a server has to start and list its tools."""
CLOSE_TIMEOUT_S = 8.0
"""How long closing may take: the SDK closes stdin, waits 2 s, then terminates and kills
the server's process group (2 s more)."""
STDERR_TAIL_BYTES = 2048
REASON_CHARS = 300
OUTPUT_CAP_CHARS = 16 * 1024
"""What the model reads of a call's output at most (as for command tools)."""
LIST_PAGES = 20
"""Pages of tools/list read at most: a server whose cursor never ends cannot hang the start."""
HIDDEN_VARS = ("OPENAI_API_KEY",)
"""Not passed to a server the device runs: a server that printed its environment would
hand the key to the model."""
NAME_CHARS = 64
HASH_CHARS = 8
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_-]")


def declared_name(server: str, tool: str, taken: set[str]) -> str:
    """The function tool name for `tool` of `server`: `<server>_<tool>` with characters
    the service refuses made `_`; cut and ended with a short hash of the real names when
    too long or already taken, so that names stay unique and stable from run to run."""
    name = _NOT_NAME.sub("_", f"{server}_{tool}")
    if len(name) <= NAME_CHARS and name not in taken:
        return name
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()
    for extra in range(len(digest) - HASH_CHARS + 1):
        suffix = "_" + digest[extra : extra + HASH_CHARS]
        candidate = name[: NAME_CHARS - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    raise ValueError(f"no free name for {server}/{tool}")  # 57 hashes all taken: a bug


@dataclass(frozen=True)
class McpServerSpec:
    """One `[[run.mcp]]` table with where = "local", checked."""

    name: str
    command: tuple[str, ...] = ()
    """argv of a server spoken to over stdio (empty when `url` is set)."""
    url: str = ""
    """A streamable-HTTP endpoint (empty when `command` is set)."""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    """HTTP headers for `url` (values from the environment: secrets)."""
    timeout_s: float = 30.0
    """How long one call may take; a server that does not answer in time is restarted."""
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The environment a `command` server starts with (less `HIDDEN_VARS`)."""


class McpUnavailable(Exception):
    """The server is not there (did not start, exited, closed the connection): a reason
    for the model or the start-up line."""


class McpConnection:
    """One server: started on `open`, called from any task, started again after it died."""

    def __init__(self, spec: McpServerSpec) -> None:
        self.spec = spec
        self.starts = 0
        """How often the server was started (a restart after a death counts)."""
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._stderr = StderrTail(STDERR_TAIL_BYTES)

    @property
    def up(self) -> bool:
        return self._client is not None and self._owner is not None and not self._owner.done()

    async def open(self) -> list[McpToolInfo]:
        """Start the server (stopping a previous one) and list its tools."""
        await self._shut()
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[tuple[Client, list[McpToolInfo]]] = loop.create_future()
        self._stop = asyncio.Event()
        self.starts += 1
        # Whoever stops waiting first, the owner's outcome counts as seen.
        ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._owner = asyncio.create_task(self._own(ready, self._stop), name=self.spec.name)
        try:
            client, tools = await asyncio.wait_for(asyncio.shield(ready), START_TIMEOUT_S)
        except TimeoutError:
            reason = self._with_tail(f"no answer within {START_TIMEOUT_S:g} s")
            await self._shut()
            raise McpUnavailable(reason) from None
        except McpUnavailable:
            await self._shut()
            raise
        self._client = client
        return tools

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call `tool` on the server, starting it first if it is not up. Raises
        McpUnavailable when the server is not there (it is started again next time)."""
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one restart, however many calls wait for it
            if not self.up:
                await self.open()
            client = self._client
        assert client is not None
        try:
            return await client.call_tool(tool, arguments, read_timeout_seconds=self.spec.timeout_s)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                self._client = None  # a hung server is started again at the next call
                raise McpUnavailable(f"no answer within {self.spec.timeout_s:g} s") from None
            if exc.code != CONNECTION_CLOSED:
                raise McpUnavailable(f"the server refused the call: {exc.message}") from None
            self._client = None
            if self.spec.command:
                why = "the server closed the connection (it exited?); it is started again"
            else:
                why = "the connection to the server closed; it is connected again"
            raise McpUnavailable(f"{why} at the next call") from None
        except Exception as exc:  # a transport's own errors (pipes, HTTP): outside data
            self._client = None
            raise McpUnavailable(f"the call failed: {_reason(exc)}") from None

    async def close(self) -> None:
        """Stop the server (stdin closed, then its process group terminated and killed)."""
        await self._shut()

    async def _own(
        self, ready: asyncio.Future[tuple[Client, list[McpToolInfo]]], stop: asyncio.Event
    ) -> None:
        """Enter the SDK's client, hand it over, leave it when `stop` is set."""
        from mcp import Client

        errlog = self._stderr.open() if self.spec.command else None
        try:
            async with self._http_client() as http:
                transport = self._transport(errlog, http)
                async with Client(transport) as client:
                    _close_quietly(errlog)  # the server has its own copy now
                    tools = await _list_tools(client)
                    if not ready.done():
                        ready.set_result((client, tools))
                    await stop.wait()
        except Exception as exc:  # the server's failure, not ours: a reason for the user
            if not ready.done():
                ready.set_exception(McpUnavailable(self._with_tail(_reason(exc))))
        finally:
            _close_quietly(errlog)
            if not ready.done():  # cancelled while starting
                ready.set_exception(McpUnavailable("stopped while starting"))

    def _transport(self, errlog: TextIO | None, http: Any) -> Any:
        if self.spec.command:
            from mcp import StdioServerParameters
            from mcp.client.stdio import stdio_client

            program, *args = self.spec.command
            env = {k: v for k, v in self.spec.env.items() if k not in HIDDEN_VARS}
            params = StdioServerParameters(command=os.path.expanduser(program), args=args, env=env)
            assert errlog is not None
            return stdio_client(params, errlog=errlog)
        from mcp.client.streamable_http import streamable_http_client

        return streamable_http_client(self.spec.url, http_client=http)

    @contextlib.asynccontextmanager
    async def _http_client(self) -> Any:
        """The HTTP client of a `url` server (its headers set), None for a program."""
        if not self.spec.url:
            yield None
            return
        import httpx2

        timeout = httpx2.Timeout(30.0, read=300.0)  # the SDK's own defaults
        async with httpx2.AsyncClient(headers=dict(self.spec.headers), timeout=timeout) as http:
            yield http

    async def _shut(self) -> None:
        owner, stop = self._owner, self._stop
        self._client = self._owner = self._stop = None
        if owner is None or stop is None:
            return
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(owner), CLOSE_TIMEOUT_S)
        except TimeoutError:
            owner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await owner
        self._stderr.close()

    def _with_tail(self, reason: str) -> str:
        tail = self._stderr.tail()
        return one_line(reason + (f" (its stderr: {tail})" if tail else ""), REASON_CHARS)


class StderrTail:
    """The end of what a server writes on stderr, read from a pipe as it comes."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._tail = b""
        self._fd: int | None = None

    def open(self) -> TextIO:
        """A new pipe: its write end for the server to inherit (close it once the
        server runs), its read end read on the loop until the server is gone."""
        self.close()
        self._tail = b""
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        self._fd = read_fd
        asyncio.get_running_loop().add_reader(read_fd, self._drain)
        return os.fdopen(write_fd, "w")

    def _drain(self) -> None:
        if self._fd is None:
            return
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            if not chunk:  # every copy of the write end is closed: the server is gone
                self.close()
                return
            self._tail = (self._tail + chunk)[-self._keep :]

    def tail(self) -> str:
        """The last line or so of stderr, one line (what is in the pipe now included)."""
        self._drain()
        text = self._tail.decode("utf-8", errors="replace").strip()
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return one_line(" | ".join(lines[-3:]), 200) if lines else ""

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None


def _close_quietly(stream: TextIO | None) -> None:
    if stream is not None and not stream.closed:
        stream.close()


async def _list_tools(client: Client) -> list[McpToolInfo]:
    tools: list[McpToolInfo] = []
    cursor: str | None = None
    for _ in range(LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _reason(exc: BaseException) -> str:
    """A short reason for an exception from the SDK (the first of a group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, FileNotFoundError):
        return f"program not found: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"program is not executable: {exc.filename or exc}"
    text = str(exc).strip()
    return one_line(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, 200)


@dataclass
class McpTool:
    """A tool of a local MCP server, declared under `name` (see `declared_name`)."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    server_tool: str
    """Its name on the server."""
    connection: McpConnection

    async def run(self, arguments: Mapping[str, Any]) -> ToolResult:
        try:
            result = await self.connection.call(self.server_tool, dict(arguments))
        except McpUnavailable as exc:
            return ToolResult.failed(f"{self.name}: MCP server {self.connection.spec.name}: {exc}")
        text = result_text(result)
        if result.is_error:
            return ToolResult.failed(f"{self.name}: {text or 'the tool reported an error'}")
        return ToolResult(text if text else json.dumps({"ok": True}))

    async def aclose(self) -> None:
        """Nothing: the server is closed by its `McpLocalServer`."""


def result_text(result: CallToolResult) -> str:
    """What the model reads of a call's result: its text content joined, other content
    described in a few words, or the structured content as JSON; cut to the cap."""
    parts = list(_content_texts(result))
    if not parts and result.structured_content is not None:
        parts = [json.dumps(result.structured_content)]
    text = "\n".join(parts)
    if len(text) > OUTPUT_CAP_CHARS:
        text = text[:OUTPUT_CAP_CHARS] + (
            f"\n[pivoicectl: output cut to its first {OUTPUT_CAP_CHARS} characters]"
        )
    return text


def _content_texts(result: CallToolResult) -> Iterator[str]:
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            yield block.text  # type: ignore[union-attr]
        elif kind in ("image", "audio"):
            yield f"[{kind} content, {getattr(block, 'mime_type', '?')}, not shown]"
        elif kind == "resource_link":
            yield f"[resource link: {getattr(block, 'uri', '?')}]"
        elif kind == "resource":
            resource = getattr(block, "resource", None)
            text = getattr(resource, "text", None)
            yield text if isinstance(text, str) else f"[resource {getattr(resource, 'uri', '?')}]"
        else:
            yield f"[{kind or 'unknown'} content, not shown]"


class McpLocalServer:
    """A `[[run.mcp]]` server of the device: started by the tool box's `start`, its tools
    named and checked by `tools`, stopped by `aclose`."""

    def __init__(self, spec: McpServerSpec) -> None:
        self.spec = spec
        self.connection = McpConnection(spec)
        self._listed: list[McpToolInfo] = []

    async def start(self, warn: Callable[[str], None]) -> None:
        # The SDK takes a while to import (half a second on a fast machine): not on the
        # event loop, which carries the watchdog's pings.
        await asyncio.to_thread(importlib.import_module, "mcp.client.stdio")
        try:
            self._listed = await self.connection.open()
        except McpUnavailable as exc:
            warn(f"MCP server {self.spec.name} left out: {exc}")

    def tools(self, taken: set[str], warn: Callable[[str], None]) -> list[McpTool]:
        """The listed tools as function tools, with names not in `taken` (added to it).
        A tool whose input schema the service or the argument check would refuse is
        left out (one line for all of them): one bad schema must not cost the session."""
        out: list[McpTool] = []
        refused: list[str] = []
        for info in self._listed:
            schema = info.input_schema
            if (
                not isinstance(schema, dict)
                or schema.get("type") != "object"
                or schema_problem(schema)
                or not _json_safe(schema)
            ):
                refused.append(info.name)
                continue
            name = declared_name(self.spec.name, info.name, taken)
            taken.add(name)
            out.append(McpTool(name, info.description or "", schema, info.name, self.connection))
        if refused:
            shown = ", ".join(json.dumps(n[:40]) for n in refused[:5])
            more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
            warn(
                f"MCP server {self.spec.name}: tools left out, their input schema is not a "
                f"JSON Schema object: {shown}{more}"
            )
        return out

    def secrets(self) -> tuple[str, ...]:
        """The header values of a `url` server (from the environment)."""
        return tuple(v for v in self.spec.headers.values() if v)

    async def aclose(self) -> None:
        await self.connection.close()


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def quiet_sdk_logs() -> None:
    """The SDK logs a server's misbehaviour (a line on stdout that is not JSON, a
    process that outlived its kill) with tracebacks; with no handler Python would print
    them on the console, which is the assistant's transcript. The reasons reach the user
    through `McpUnavailable` instead."""
    for name in ("mcp", "httpx2"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
