"""MCP servers in the tool box: a real server written with the SDK (mcp_test_server.py)
run over stdio and over streamable HTTP, listed, declared and called through the tool
box; servers that do not start are one warning each and the other tools stay; a server
that dies mid-session fails that call and is started again at the next; every mistake
in a `[[run.mcp]]` table is a one-line UserError; a server the service reaches is
declared in the GA shape, its header values secrets.

Why a real server and not a stub: what goes wrong with MCP is process and transport
business (a program that crashes on start, exits mid-call, hangs, a closed connection),
so only the SDK's real client against a real server shows the tool box survives it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.types import Tool as McpToolInfo
from openai.types.realtime import SessionUpdateEvent

from pivoicectl.errors import UserError
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.tools import Toolbox, ToolOutcome, load_toolbox
from pivoicectl.realtime.tools.mcp_local import (
    McpLocalServer,
    McpServerSpec,
    declared_name,
)

pytestmark = pytest.mark.timeout(60)

SERVER = Path(__file__).with_name("mcp_test_server.py")
TOOLS = ["add", "fail", "pid", "exit_now", "wait", "picture", "header"]


def calc(name: str = "calc", *args: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": [sys.executable, str(SERVER), *args], **fields}


def with_box(
    run_table: dict[str, Any],
    body: Callable[[Toolbox, list[str]], Awaitable[None]],
    env: dict[str, str] | None = None,
) -> None:
    """Load the tool box, start it (warnings collected), run `body`, close it."""

    async def go() -> None:
        box = load_toolbox(run_table, dict(os.environ) if env is None else env)
        warnings: list[str] = []
        try:
            await box.start(warnings.append)
            await body(box, warnings)
        finally:
            await box.aclose()

    asyncio.run(asyncio.wait_for(go(), 50))


def error(outcome: ToolOutcome) -> str:
    assert not outcome.ok, outcome
    assert json.loads(outcome.output) == {"error": outcome.error}
    assert "\n" not in outcome.error
    return outcome.error


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_a_stdio_server_is_listed_declared_and_called():
    async def body(box: Toolbox, warnings: list[str]) -> None:
        assert warnings == []
        assert box.names() == [f"calc_{t}" for t in TOOLS]
        declarations = box.declarations()
        assert declarations[0] == {
            "type": "function",
            "name": "calc_add",
            "description": "Add two whole numbers.",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"title": "A", "type": "integer"},
                    "b": {"title": "B", "type": "integer"},
                },
                "required": ["a", "b"],
                "title": "addArguments",
            },
        }
        SessionUpdateEvent.model_validate(
            ev.session_update(ev.SessionConfig(tools=tuple(declarations)), "evt_1")
        )
        added = await box.call("calc_add", '{"a": 2, "b": 3}')
        assert (added.output, added.ok) == ("5", True)
        assert "refused: too late" in error(await box.call("calc_fail", '{"reason": "too late"}'))
        picture = await box.call("calc_picture", "")
        assert picture.output == "a red dot\n[image content, image/png, not shown]"
        assert "invalid arguments" in error(await box.call("calc_add", '{"a": "two"}'))
        assert (await box.call("calc_header", '{"name": "x"}')).output == "-"

    with_box({"builtin_tools": [], "mcp": [calc()]}, body)


def test_servers_that_do_not_start_are_one_warning_each_and_the_rest_stays():
    async def body(box: Toolbox, warnings: list[str]) -> None:
        assert box.names() == ["get_local_time"] + [f"calc_{t}" for t in TOOLS]
        crashed, missing = sorted(warnings)
        assert crashed.startswith("MCP server broken left out: ")
        assert "RuntimeError: the test server was told to crash" in crashed  # its stderr
        assert missing == "MCP server gone left out: program not found: /nonexistent/mcp-server"
        assert all("\n" not in w for w in warnings)
        assert (await box.call("calc_add", '{"a": 1, "b": 1}')).output == "2"
        assert (await box.call("get_local_time", "")).ok

    tables = [calc("broken", "crash"), {"name": "gone", "command": ["/nonexistent/mcp-server"]}]
    with_box({"builtin_tools": ["get_local_time"], "mcp": [*tables, calc()]}, body)


def test_a_server_that_dies_fails_that_call_and_is_started_again_at_the_next():
    async def body(box: Toolbox, warnings: list[str]) -> None:
        first = int((await box.call("calc_pid", "")).output)
        died = error(await box.call("calc_exit_now", ""))
        assert "the server closed the connection" in died and "started again" in died
        second = int((await box.call("calc_pid", "")).output)
        assert second != first and not alive(first)
        os.kill(second, signal.SIGKILL)  # killed between two calls
        while alive(second):
            await asyncio.sleep(0.01)
        assert "closed the connection" in error(await box.call("calc_add", '{"a": 1, "b": 2}'))
        assert (await box.call("calc_add", '{"a": 1, "b": 2}')).output == "3"

    with_box({"builtin_tools": [], "mcp": [calc()]}, body)


def test_a_call_that_takes_too_long_fails_and_the_server_is_started_again():
    async def body(box: Toolbox, warnings: list[str]) -> None:
        first = int((await box.call("calc_pid", "")).output)
        started = time.monotonic()
        slow = error(await box.call("calc_wait", '{"seconds": 30}'))
        assert slow == "calc_wait: MCP server calc: no answer within 0.5 s"
        assert time.monotonic() - started < 5
        assert int((await box.call("calc_pid", "")).output) != first
        assert not alive(first)

    with_box({"builtin_tools": [], "mcp": [calc(timeout_s=0.5)]}, body)


def test_aclose_stops_the_server_and_later_calls_are_refused():
    pids: list[int] = []

    async def body(box: Toolbox, warnings: list[str]) -> None:
        pids.append(int((await box.call("calc_pid", "")).output))
        await box.aclose()
        assert not alive(pids[0])
        assert "the tool box is closed" in error(await box.call("calc_pid", ""))

    with_box({"builtin_tools": [], "mcp": [calc()]}, body)
    assert pids and not alive(pids[0])


@pytest.fixture
def http_server() -> Iterator[str]:
    """The test server over streamable HTTP on a free local port: its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the HTTP test server did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait()


def test_a_streamable_http_server_gets_its_headers_from_the_environment(http_server):
    async def body(box: Toolbox, warnings: list[str]) -> None:
        assert warnings == [] and box.secrets() == ("hub-secret-123",)
        token = await box.call("hub_header", '{"name": "X-Hub-Token"}')
        assert token.output == "hub-secret-123"

    table = {"name": "hub", "url": http_server, "headers_env": {"X-Hub-Token": "HUB_TOKEN"}}
    with_box({"builtin_tools": [], "mcp": [table]}, body, env={"HUB_TOKEN": "hub-secret-123"})


def test_declared_names_are_valid_unique_and_stable():
    taken: set[str] = {"home_lights"}
    assert declared_name("home", "light.on", set()) == "home_light_on"
    clash = declared_name("home", "lights", taken)
    assert clash != "home_lights" and clash.startswith("home_lights_") and len(clash) == 20
    assert clash == declared_name("home", "lights", taken)  # the same next run
    long = declared_name("s", "x" * 100, set())
    assert len(long) == 64 and long[:55] == "s_" + "x" * 53
    assert long != declared_name("s", "x" * 99 + "y", set())
    a = declared_name("s", "a.b", set())
    assert declared_name("s", "a_b", {a}) != a


def test_a_tool_whose_schema_the_service_would_refuse_is_left_out_in_one_line():
    server = McpLocalServer(McpServerSpec(name="odd", command=("/bin/true",)))
    server._listed = [
        McpToolInfo(name="good", input_schema={"type": "object", "properties": {}}),
        McpToolInfo(name="text", input_schema={"type": "string"}),
        McpToolInfo(name="broken", input_schema={"type": "object", "properties": {"x": 5}}),
    ]
    warnings: list[str] = []
    tools = server.tools(set(), warnings.append)
    assert [t.name for t in tools] == ["odd_good"] and tools[0].description == ""
    assert warnings == [
        "MCP server odd: tools left out, their input schema is not a JSON Schema object: "
        '"text", "broken"'
    ]


def test_a_remote_server_is_declared_in_the_ga_shape_with_headers_from_the_environment():
    table = {
        "name": "docs",
        "where": "remote",
        "url": "https://mcp.example/mcp",
        "allowed_tools": ["search", "fetch"],
        "require_approval": "always",
        "approve": ["search"],
        "headers_env": {"Authorization": "DOCS_AUTH", "X-Team": "DOCS_TEAM"},
        "description": "Product manuals",
    }
    plain = {"name": "open", "where": "remote", "url": "https://open.example/mcp"}
    env = {"DOCS_AUTH": "Bearer docs-token-1", "DOCS_TEAM": "team-secret-7"}
    box = load_toolbox({"builtin_tools": ["get_local_time"], "mcp": [table, plain]}, env)
    declarations = box.declarations()
    assert [d["type"] for d in declarations] == ["function", "mcp", "mcp"]
    assert declarations[1] == {
        "type": "mcp",
        "server_label": "docs",
        "server_url": "https://mcp.example/mcp",
        "require_approval": "always",
        "allowed_tools": ["search", "fetch"],
        "headers": {"Authorization": "Bearer docs-token-1", "X-Team": "team-secret-7"},
        "server_description": "Product manuals",
    }
    assert declarations[2] == {
        "type": "mcp",
        "server_label": "open",
        "server_url": "https://open.example/mcp",
        "require_approval": "never",
    }
    update = ev.session_update(ev.SessionConfig(tools=tuple(declarations)), "evt_1")
    SessionUpdateEvent.model_validate(update)
    assert box.names() == ["get_local_time"]  # nothing runs on the device for them
    assert box.secrets() == ("Bearer docs-token-1", "team-secret-7")
    assert box.mcp_approvals() == {"docs": frozenset({"search"}), "open": None}
    assert "docs-token" not in repr(box._remote)


M = "config.toml: [[run.mcp]] #1"
C = f'{M} "calc"'
CALC = {"name": "calc", "command": ["/bin/true"]}
REMOTE = {"name": "calc", "where": "remote", "url": "https://x.example/mcp"}

BAD_TABLES = [
    ({"mcp": {"name": "calc"}}, "config.toml: mcp in [run] must be an array of tables"),
    ({"mcp": ["calc"]}, f"{M} is not a table"),
    ({"mcp": [{"command": ["/bin/true"]}]}, f"{M}: name is missing"),
    ({"mcp": [{**CALC, "name": "my calc"}]}, f"{M}: name = 'my calc' is not a server name"),
    ({"mcp": [{**CALC, "name": 3}]}, f"{M}: name = 3 is not a server name"),
    (
        {"mcp": [CALC, CALC]},
        'config.toml: [[run.mcp]] #2 "calc": name "calc" is taken by [[run.mcp]] #1',
    ),
    (
        {"tools": [{"name": "calc", "command": ["/bin/true"]}], "mcp": [CALC]},
        f'{C}: name "calc" is taken by [[run.tools]] #1 (give each tool and server its own name)',
    ),
    (
        {"mcp": [{**CALC, "name": "set_volume"}]},
        f'{M} "set_volume": name "set_volume" is taken by the built-in tool of that name',
    ),
    (
        {"mcp": [{**CALC, "where": "cloud"}]},
        f"{C}: where = 'cloud' is neither local nor remote",
    ),
    (
        {"mcp": [{**CALC, "server_url": "https://x"}]},
        f"{C}: unknown key 'server_url' for where = \"local\" (known: name, where, command, url, "
        "headers_env, timeout_s)",
    ),
    (
        {"mcp": [{**REMOTE, "timeout_s": 3}]},
        f"{C}: unknown key 'timeout_s' for where = \"remote\"",
    ),
    ({"mcp": [{**REMOTE, "command": ["/bin/true"]}]}, f"{C}: unknown key 'command'"),
    ({"mcp": [{"name": "calc"}]}, f"{C}: give either command or url (command = ["),
    (
        {"mcp": [{**CALC, "url": "http://hub.local/mcp"}]},
        f"{C}: give either command or url, not both",
    ),
    (
        {"mcp": [{"name": "calc", "where": "remote"}]},
        f'{C}: where = "remote" needs url (the service reaches',
    ),
    ({"mcp": [{**CALC, "command": []}]}, f"{C}: command is empty"),
    ({"mcp": [{**CALC, "command": "/bin/true"}]}, f"{C}: command must be a list of strings"),
    ({"mcp": [{**CALC, "timeout_s": 0}]}, f"{C}: timeout_s = 0 is out of range"),
    ({"mcp": [{**REMOTE, "url": "ftp://x.example/"}]}, f"{C}: url 'ftp://x.example/' is not an"),
    ({"mcp": [{**REMOTE, "url": "https:///mcp"}]}, f"{C}: url 'https:///mcp' is not an http(s)"),
    ({"mcp": [{**REMOTE, "url": "http://x:port/"}]}, f"{C}: url 'http://x:port/' is not a URL"),
    ({"mcp": [{**REMOTE, "url": 5}]}, f"{C}: url must be a string"),
    (
        {"mcp": [{**REMOTE, "require_approval": "sometimes"}]},
        f"{C}: require_approval = 'sometimes' is not never or always",
    ),
    (
        {"mcp": [{**REMOTE, "approve": ["search"]}]},
        f'{C}: approve is only read with require_approval = "always"',
    ),
    (
        {"mcp": [{**REMOTE, "allowed_tools": "search"}]},
        f"{C}: allowed_tools must be a list of tool names, each once",
    ),
    (
        {"mcp": [{**REMOTE, "require_approval": "always", "approve": ["a", "a"]}]},
        f"{C}: approve must be a list of tool names, each once",
    ),
    ({"mcp": [{**REMOTE, "description": 1}]}, f"{C}: description must be a string"),
    (
        {"mcp": [{**REMOTE, "headers_env": {"Authorization": "NOT_SET_ANYWHERE"}}]},
        f"{C}: headers_env: the variable NOT_SET_ANYWHERE (for Authorization) is not set "
        "(set NOT_SET_ANYWHERE in the environment pivoicectl runs in)",
    ),
    (
        {"mcp": [{**REMOTE, "headers_env": {"Authorization": "EMPTY"}}]},
        f"{C}: headers_env: the variable EMPTY (for Authorization) is empty",
    ),
    (
        {"mcp": [{**REMOTE, "headers_env": {"Bad Header": "TOKEN"}}]},
        f"{C}: headers_env: 'Bad Header' is not a header name",
    ),
    (
        {"mcp": [{**REMOTE, "headers_env": {"Authorization": 5}}]},
        f"{C}: headers_env: Authorization must name an environment variable",
    ),
    ({"mcp": [{**REMOTE, "headers_env": "TOKEN"}]}, f"{C}: headers_env must be a table"),
    (
        {"mcp": [{**CALC, "headers_env": {"Authorization": "TOKEN"}}]},
        f"{C}: headers_env is for a url",
    ),
]


@pytest.mark.parametrize(("table", "expected"), BAD_TABLES)
def test_a_bad_mcp_table_is_a_one_line_user_error(table, expected):
    env = {"TOKEN": "secret-value-9", "EMPTY": " "}
    with pytest.raises(UserError) as err:
        load_toolbox({"builtin_tools": ["set_volume"], **table}, env)
    assert err.value.exit_code == 2
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(expected), str(err.value)
    assert "secret-value-9" not in str(err.value)


def test_good_tables_load_without_starting_anything():
    box = load_toolbox(
        {
            "mcp": [
                {**CALC, "timeout_s": 300},
                {"name": "hub", "url": "http://hub.local:8123/mcp"},
                {**REMOTE, "name": "r", "require_approval": "never", "allowed_tools": []},
            ]
        },
        {},
    )
    assert box.names() == ["set_volume", "get_local_time"]  # listed only at start
    assert box.declarations()[-1]["allowed_tools"] == []
