"""A small MCP server over stdio for the tests, written with the SDK (`MCPServer`, the
SDK's FastMCP): `add` adds, `fail` fails as a tool does (isError), `pid` tells its
process id, `exit_now` exits in the middle of the call, `wait` takes its time,
`picture` answers with an image besides its text and `header` tells a request header.

`python mcp_test_server.py` serves over stdio; `... http PORT` over streamable HTTP on
127.0.0.1:PORT/mcp; `... crash` fails before it serves (a traceback on stderr)."""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("pivoicectl-test")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Always fails, saying why."""
    raise ToolError(f"refused: {reason}")


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def exit_now() -> str:
    """Exits the server before answering."""
    os._exit(3)


@server.tool()
def wait(seconds: float) -> str:
    """Waits, then says so."""
    time.sleep(seconds)
    return f"waited {seconds}"


@server.tool()
def picture() -> list:
    """A caption and a tiny PNG."""
    return ["a red dot", Image(data=b"\x89PNG\r\n\x1a\n", format="png")]


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The value of request header `name` ("-" over stdio or when it is not there)."""
    headers = ctx.headers or {}
    return headers.get(name.lower(), "-")


if __name__ == "__main__":
    if sys.argv[1:] == ["crash"]:
        raise RuntimeError("the test server was told to crash")
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
