"""The tool box `run` offers the model: command tools run for real (small programs this
test writes), the built-in get_local_time, argument checks, and every mistake in the
`[run]` table as a one-line UserError. set_volume against a real audio server is in
tests/integration/test_tools_room.py.

Why real programs: what can go wrong with a command tool is process business (a
program that is missing, fails, hangs with a child of its own, or prints too much), so
only real processes show that the tool box survives it and leaves nothing running.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pivoicectl.errors import UserError
from pivoicectl.realtime.settings import load_run_settings, read_config_file
from pivoicectl.realtime.settings.loader import read_run_table
from pivoicectl.realtime.tools import Toolbox, ToolOutcome, load_toolbox
from pivoicectl.realtime.tools.box import parse_arguments
from pivoicectl.realtime.tools.builtin import GetLocalTime, SetVolume, local_time, local_zone_name
from pivoicectl.realtime.tools.command import OUTPUT_CAP_BYTES

NO_BUILTINS: dict[str, Any] = {"builtin_tools": []}


def _run(coro: Coroutine[Any, Any, Any], timeout_s: float = 20) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def _script(tmp_path: Path, name: str, body: str, shell: bool = False) -> str:
    path = tmp_path / name
    first = "#!/bin/sh" if shell else f"#!{sys.executable}"
    path.write_text(first + "\n" + body)
    path.chmod(0o755)
    return str(path)


def _box(*tools: dict[str, Any], env: dict[str, str] | None = None) -> Toolbox:
    return load_toolbox({**NO_BUILTINS, "tools": list(tools)}, env or dict(os.environ))


def _call(box: Toolbox, name: str, arguments: str) -> ToolOutcome:
    return _run(box.call(name, arguments))


def _error(outcome: ToolOutcome) -> str:
    assert not outcome.ok
    assert json.loads(outcome.output) == {"error": outcome.error}
    assert "\n" not in outcome.error and len(outcome.error) <= 400
    return outcome.error


def _dead(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (it runs no more)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return text.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_dead(pids: list[int], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not all(_dead(p) for p in pids):
        assert time.monotonic() < deadline, [p for p in pids if not _dead(p)]
        time.sleep(0.01)


async def _pids_when_written(path: Path) -> list[int]:
    for _ in range(500):
        if path.exists():
            return [int(p) for p in path.read_text().split()]
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never written")


# --- command tools ---------------------------------------------------------------------


ECHO = """import json, os, sys
print(json.dumps({
    "stdin": json.load(sys.stdin),
    "env": json.loads(os.environ["PIVOICECTL_TOOL_ARGS"]),
    "argv": sys.argv[1:],
    "key": os.environ.get("OPENAI_API_KEY"),
    "home": os.environ.get("HOME"),
}))
"""


def test_a_command_tool_gets_its_arguments_on_stdin_and_in_the_environment(tmp_path):
    prog = _script(tmp_path, "echo.py", ECHO)
    env = {"PATH": os.environ["PATH"], "HOME": "/home/x", "OPENAI_API_KEY": "sk-secret-0123456789"}
    box = _box(
        {
            "name": "echo",
            "description": "Says back what it got.",
            "command": [prog, "--short", "two words"],
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        env=env,
    )
    out = _call(box, "echo", '{"city": "Zürich"}')
    assert out.ok and out.error == ""
    assert json.loads(out.output) == {
        "stdin": {"city": "Zürich"},
        "env": {"city": "Zürich"},
        "argv": ["--short", "two words"],  # argv as given: no shell split the second
        "key": None,  # the API key is not handed to tools
        "home": "/home/x",  # the environment given to load_toolbox
    }
    assert 0 < out.duration_s < 10


def test_a_program_that_prints_nothing_says_ok(tmp_path):
    out = _call(_box({"name": "quiet", "command": ["/bin/true"]}), "quiet", "{}")
    assert (out.ok, out.output) == (True, '{"ok": true}')


def test_invalid_arguments_run_nothing(tmp_path):
    marker = tmp_path / "ran"
    prog = _script(tmp_path, "touch.py", f"open({str(marker)!r}, 'w').close()\n")
    box = _box(
        {
            "name": "touch",
            "command": [prog],
            "parameters": {
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 1}},
                "required": ["n"],
                "additionalProperties": False,
            },
        }
    )
    bad = {
        '{"n": 0}': "touch: invalid arguments: n: 0 is less than the minimum of 1",
        '{"n": "1"}': "touch: invalid arguments: n: '1' is not of type 'integer'",
        "{}": "touch: invalid arguments: 'n' is a required property",
        '{"n": 1, "x": 2}': "Additional properties are not allowed ('x' was unexpected)",
        "[1]": "touch: invalid arguments: not a JSON object but an array",
        '"n"': "touch: invalid arguments: not a JSON object but a string",
        "{n: 1}": "touch: invalid arguments: not JSON (Expecting property name",
        "": "touch: invalid arguments: 'n' is a required property",  # no text is {}
    }
    for arguments, reason in bad.items():
        assert reason in _error(_call(box, "touch", arguments)), arguments
    assert not marker.exists()
    assert _call(box, "touch", '{"n": 1}').ok  # the same tool with good arguments runs
    assert marker.exists()


def test_arguments_that_are_not_an_object_are_named_by_kind():
    assert parse_arguments(" ") == ({}, "")
    assert parse_arguments('{"a": [1]}') == ({"a": [1]}, "")
    assert parse_arguments("null")[1] == "not a JSON object but null"
    assert parse_arguments("true")[1] == "not a JSON object but a boolean"
    assert parse_arguments("3.5")[1] == "not a JSON object but a number"
    assert parse_arguments("[" * 100_000)[1].startswith("not JSON")


def test_a_non_zero_exit_is_an_error_with_the_end_of_stderr(tmp_path):
    prog = _script(
        tmp_path,
        "fail.py",
        "import sys\nprint('partial answer')\n"
        "sys.stderr.write('x' * 5000 + '\\nTraceback...\\nValueError: no such city\\n')\n"
        "sys.exit(3)\n",
    )
    error = _error(_call(_box({"name": "weather", "command": [prog]}), "weather", "{}"))
    assert error.startswith("weather: exited with status 3: ...xxx")
    assert error.endswith("Traceback... ValueError: no such city")
    killed = _box({"name": "k", "command": ["/bin/sh", "-c", "kill -TERM $$"]})
    assert _error(_call(killed, "k", "{}")) == "k: killed by SIGTERM"


def test_a_timeout_kills_the_program_and_its_children(tmp_path):
    pids = tmp_path / "pids"
    prog = _script(
        tmp_path,
        "hang.sh",
        'sleep 60 &\necho "$$ $!" > "$1.tmp" && mv "$1.tmp" "$1"\nwait\n',
        shell=True,
    )
    box = _box({"name": "hang", "command": [prog, str(pids)], "timeout_s": 0.3})

    async def scenario() -> tuple[ToolOutcome, list[int], bool]:
        call = asyncio.create_task(box.call("hang", "{}"))
        seen = await _pids_when_written(pids)
        alive = not any(_dead(p) for p in seen)
        return await call, seen, alive

    out, seen, alive_before = _run(scenario())
    assert alive_before and len(seen) == 2  # the shell and its sleeping child
    assert _error(out) == "hang: timed out after 0.3 s"
    assert 0.3 <= out.duration_s < 5
    _wait_dead(seen)


def test_a_cancelled_call_and_aclose_kill_what_runs(tmp_path):
    prog = _script(
        tmp_path,
        "hang.sh",
        'sleep 60 &\necho "$$ $!" > "$1.tmp" && mv "$1.tmp" "$1"\nwait\n',
        shell=True,
    )
    first, second = tmp_path / "first", tmp_path / "second"
    box = _box(
        {"name": "a", "command": [prog, str(first)], "timeout_s": 300},
        {"name": "b", "command": [prog, str(second)], "timeout_s": 300},
    )

    async def scenario() -> tuple[list[int], list[int], ToolOutcome, ToolOutcome]:
        cancelled = asyncio.create_task(box.call("a", "{}"))
        a = await _pids_when_written(first)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        closed = asyncio.create_task(box.call("b", "{}"))
        b = await _pids_when_written(second)
        await box.aclose()
        return a, b, await closed, await box.call("b", "{}")

    a, b, closed, after = _run(scenario())
    _wait_dead(a + b)
    assert closed.error == "b: killed by SIGKILL"
    assert _error(after) == "the tool box is closed: pivoicectl is stopping"


def test_what_a_program_leaves_running_is_killed_when_it_exits(tmp_path):
    pid_file = tmp_path / "pid"
    box = _box(
        {
            "name": "bg",
            "command": ["/bin/sh", "-c", f'sleep 60 >/dev/null 2>&1 & echo $! > "{pid_file}"'],
        }
    )
    assert _call(box, "bg", "{}").ok
    _wait_dead([int(pid_file.read_text())])


def test_a_missing_or_not_executable_program_is_an_error(tmp_path):
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\necho hi\n")
    plain.chmod(stat.S_IRUSR | stat.S_IWUSR)
    box = _box(
        {"name": "gone", "command": [str(tmp_path / "nothing-here")]},
        {"name": "plain", "command": [str(plain)]},
        {"name": "nopath", "command": ["pivoicectl-no-such-program"]},
    )
    assert _error(_call(box, "gone", "{}")) == (
        f"gone: program not found: {tmp_path / 'nothing-here'}"
    )
    assert _error(_call(box, "plain", "{}")) == f"plain: program is not executable: {plain}"
    assert _error(_call(box, "nopath", "{}")) == (
        "nopath: program not found: pivoicectl-no-such-program"
    )


def test_the_output_is_cut_at_16_kb_and_says_so(tmp_path):
    prog = _script(tmp_path, "chatty.py", "import sys\nsys.stdout.write('a' * 1_000_000)\n")
    out = _call(_box({"name": "chatty", "command": [prog]}), "chatty", "{}")
    assert out.ok  # the program finished: the rest was read and dropped
    head, note = out.output.split("\n", 1)
    assert head == "a" * OUTPUT_CAP_BYTES == "a" * 16384
    assert note == "[pivoicectl: output cut to its first 16384 bytes of 1000000]"
    exact = _script(
        tmp_path, "exact.py", f"import sys\nsys.stdout.write('b' * {OUTPUT_CAP_BYTES})\n"
    )
    assert _call(_box({"name": "x", "command": [exact]}), "x", "{}").output == "b" * 16384


def test_an_unknown_tool_is_an_error_naming_the_tools():
    box = load_toolbox({}, {})
    assert _error(_call(box, "weather", "{}")) == (
        'no tool named "weather" (tools: set_volume, get_local_time)'
    )
    assert _error(_call(_box(), "x" * 500, "{}")).startswith('no tool named "' + "x" * 64 + '"')


def test_the_duration_is_from_call_to_outcome_on_the_box_clock():
    ticks = iter([10.0, 12.5])
    box = Toolbox([GetLocalTime()], clock=lambda: next(ticks))
    assert _call(box, "get_local_time", "").duration_s == 2.5


def test_declarations_are_the_session_tools_entries():
    box = load_toolbox(
        {"tools": [{"name": "w", "description": "Weather.", "command": ["/bin/true"]}]}, {}
    )
    decl = box.declarations()
    assert box.names() == ["set_volume", "get_local_time", "w"]
    assert [d["type"] for d in decl] == ["function"] * 3
    assert decl[2] == {
        "type": "function",
        "name": "w",
        "description": "Weather.",
        "parameters": {"type": "object", "properties": {}},
    }
    assert decl[0]["parameters"]["properties"]["percent"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 100,
        "description": "The new volume, 0 (silent) to 100 (full).",
    }
    decl[0]["parameters"]["properties"].clear()  # a copy: the box keeps its own
    assert box.declarations()[0]["parameters"]["properties"]


# --- built-ins ---------------------------------------------------------------------------


def test_get_local_time_tells_date_time_weekday_and_zone():
    out = _call(load_toolbox({"builtin_tools": ["get_local_time"]}, {}), "get_local_time", "{}")
    got = json.loads(out.output)
    assert out.ok and set(got) == {
        "date",
        "time",
        "weekday",
        "time_zone",
        "abbreviation",
        "utc_offset",
    }
    stamp = datetime.fromisoformat(f"{got['date']}T{got['time']}{got['utc_offset']}")
    assert abs((stamp - datetime.now(UTC)).total_seconds()) < 60
    assert got["weekday"] == stamp.strftime("%A")
    fixed = datetime(2025, 3, 1, 23, 5, 9, tzinfo=timezone(timedelta(hours=5, minutes=30), "IST"))
    assert local_time(fixed, "Asia/Kolkata") == {
        "date": "2025-03-01",
        "time": "23:05:09",
        "weekday": "Saturday",
        "time_zone": "Asia/Kolkata",
        "abbreviation": "IST",
        "utc_offset": "+05:30",
    }
    west = datetime(2025, 1, 1, 0, 0, tzinfo=timezone(-timedelta(hours=3, minutes=30)))
    assert local_time(west, "")["utc_offset"] == "-03:30"
    assert local_time(west, "")["time_zone"] == "UTC-03:30"  # no name: the offset's


def test_the_zone_name_comes_from_tz_or_where_localtime_points(tmp_path):
    link = tmp_path / "localtime"
    link.symlink_to("/usr/share/zoneinfo/Europe/Berlin")
    assert local_zone_name({}, link) == "Europe/Berlin"
    assert local_zone_name({"TZ": "America/New_York"}, link) == "America/New_York"
    assert local_zone_name({"TZ": ":/usr/share/zoneinfo/Asia/Tokyo"}, link) == "Asia/Tokyo"
    assert local_zone_name({"TZ": "/etc/mytime"}, link) == ""
    assert local_zone_name({}, tmp_path / "missing") == ""
    copied = tmp_path / "copied"
    copied.write_bytes(b"TZif")
    assert local_zone_name({}, copied) == ""


def test_set_volume_checks_its_argument_and_reports_a_missing_server(tmp_path):
    box = Toolbox([SetVolume(server=f"unix:{tmp_path}/no-server/native")])
    for bad in ('{"percent": 150}', '{"percent": -1}', '{"percent": 40.5}', "{}"):
        assert "set_volume: invalid arguments" in _error(_call(box, "set_volume", bad)), bad
    assert _error(_call(box, "set_volume", '{"percent": 40}')) == (
        "cannot set the volume: the audio server is not running"
    )


# --- the [run] table ---------------------------------------------------------------------


def test_builtins_are_on_by_default_and_can_be_chosen():
    assert load_toolbox({}, {}).names() == ["set_volume", "get_local_time"]
    assert load_toolbox({"builtin_tools": ["get_local_time"]}, {}).names() == ["get_local_time"]
    assert load_toolbox({"builtin_tools": []}, {}).names() == []
    # a disabled built-in's name is free for a command tool
    own = {"name": "set_volume", "command": ["/bin/true"]}
    box = load_toolbox({"builtin_tools": ["get_local_time"], "tools": [own]}, {})
    assert box.names() == ["get_local_time", "set_volume"]


TOOL = {"name": "w", "command": ["/bin/true"]}
W = 'config.toml: [[run.tools]] #1 "w"'

BAD_TABLES = [
    (
        {"builtin_tools": ["set_volume", "weather"]},
        "config.toml: builtin_tools names an unknown tool 'weather' (known: set_volume, get_local_time)",
    ),
    (
        {"builtin_tools": "set_volume"},
        "config.toml: builtin_tools in [run] must be a list of tool names",
    ),
    (
        {"builtin_tools": ["get_local_time", "get_local_time"]},
        "config.toml: builtin_tools names a tool twice",
    ),
    (
        {"tools": {"name": "w"}},
        "config.toml: tools in [run] must be an array of tables (write each tool as its own [[run.tools]] table)",
    ),
    ({"tools": ["w"]}, "config.toml: [[run.tools]] #1 is not a table"),
    (
        {"tools": [{"command": ["/bin/true"]}]},
        'config.toml: [[run.tools]] #1: name is missing (add name = "..." (use letters, digits, _ and -, at most 64))',
    ),
    (
        {"tools": [{**TOOL, "name": "get weather"}]},
        "config.toml: [[run.tools]] #1: name = 'get weather' is not a tool name (use letters, digits, _ and -, at most 64)",
    ),
    ({"tools": [{**TOOL, "name": "x" * 65}]}, "config.toml: [[run.tools]] #1: name = 'xxxxxxxx"),
    (
        {"tools": [{**TOOL, "name": 7}]},
        "config.toml: [[run.tools]] #1: name = 7 is not a tool name",
    ),
    (
        {"tools": [TOOL, TOOL]},
        'config.toml: [[run.tools]] #2 "w": name "w" is taken by [[run.tools]] #1 (give each tool its own name)',
    ),
    (
        {"tools": [{**TOOL, "name": "set_volume"}]},
        'config.toml: [[run.tools]] #1 "set_volume": name "set_volume" is taken by the built-in tool of that name (give each tool its own name, or leave it out of builtin_tools)',
    ),
    ({"tools": [{"name": "w"}]}, f"{W}: command is missing"),
    ({"tools": [{**TOOL, "command": []}]}, f"{W}: command is empty"),
    ({"tools": [{**TOOL, "command": [""]}]}, f"{W}: command is empty"),
    ({"tools": [{**TOOL, "command": "/bin/true --x"}]}, f"{W}: command must be a list of strings"),
    (
        {"tools": [{**TOOL, "command": ["/bin/sleep", 5]}]},
        f"{W}: command must be a list of strings",
    ),
    ({"tools": [{**TOOL, "parameters": "{}"}]}, f"{W}: parameters must be a table"),
    (
        {"tools": [{**TOOL, "parameters": {"type": "objekt"}}]},
        f"{W}: parameters is not a valid JSON Schema: 'objekt' is not valid under any of the given schemas",
    ),
    (
        {
            "tools": [
                {**TOOL, "parameters": {"type": "object", "properties": {"n": {"minimum": "1"}}}}
            ]
        },
        f"{W}: parameters is not a valid JSON Schema: '1' is not of type 'number' (at properties/n/minimum)",
    ),
    (
        {"tools": [{**TOOL, "parameters": {"type": "string"}}]},
        f'{W}: parameters must have type = "object"',
    ),
    (
        {"tools": [{**TOOL, "parameters": {"properties": {}}}]},
        f'{W}: parameters must have type = "object"',
    ),
    (
        {"tools": [{**TOOL, "parameters": {"type": "object", "default": datetime(2025, 1, 1)}}]},
        f"{W}: parameters holds a value JSON cannot hold (a date or time)",
    ),
    (
        {"tools": [{**TOOL, "parameters": {"type": "object", "maximum": float("inf")}}]},
        f"{W}: parameters holds a value JSON cannot hold",
    ),
    (
        {"tools": [{**TOOL, "timeout_s": 0.05}]},
        f"{W}: timeout_s = 0.05 is out of range (use a number of seconds from 0.1 to 300)",
    ),
    ({"tools": [{**TOOL, "timeout_s": 301}]}, f"{W}: timeout_s = 301 is out of range"),
    ({"tools": [{**TOOL, "timeout_s": "10"}]}, f"{W}: timeout_s = '10' is not a number"),
    ({"tools": [{**TOOL, "timeout_s": True}]}, f"{W}: timeout_s = True is not a number"),
    ({"tools": [{**TOOL, "description": 3}]}, f"{W}: description must be a string"),
    (
        {"tools": [{**TOOL, "cmd": ["/bin/true"]}]},
        f"{W}: unknown key 'cmd' (known: name, description, command, parameters, timeout_s)",
    ),
]


@pytest.mark.parametrize(("table", "expected"), BAD_TABLES)
def test_a_bad_tools_table_is_a_one_line_user_error(table, expected):
    with pytest.raises(UserError) as err:
        load_toolbox(table, {})
    assert err.value.exit_code == 2
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(expected), str(err.value)


def test_good_limits_and_schemas_load():
    for timeout in (0.1, 300, 10):
        load_toolbox({"tools": [{**TOOL, "timeout_s": timeout}]}, {})
    schema = {
        "type": "object",
        "properties": {"day": {"type": "string", "enum": ["today", "tomorrow"]}},
        "required": ["day"],
    }
    box = load_toolbox({"tools": [{**TOOL, "parameters": schema}]}, {})
    assert box.declarations()[-1]["parameters"] == schema


CONFIG = """
[run]
voice = "cedar"
builtin_tools = ["get_local_time"]

[[run.tools]]
name = "weather"
description = "Today's weather."
command = ["/bin/echo", "sunny"]
timeout_s = 2
[run.tools.parameters]
type = "object"
properties = { day = { type = "string", enum = ["today", "tomorrow"] } }

[[run.mcp]]
name = "later"
where = "remote"
url = "https://mcp.example/mcp"
"""


def test_the_config_file_passes_the_tool_tables_through_to_the_tool_box(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG)
    assert read_config_file(cfg) == {"voice": "cedar"}  # the settings alone
    assert load_run_settings({}, cfg, {}).service.voice == "cedar"
    table = read_run_table(cfg)
    assert table["builtin_tools"] == ["get_local_time"] and len(table["mcp"]) == 1
    box = load_toolbox(table, {"PATH": os.environ["PATH"]}, source=str(cfg))
    assert box.names() == ["get_local_time", "weather"]
    assert _call(box, "weather", '{"day": "today"}').output == "sunny\n"
    assert "invalid arguments" in _error(_call(box, "weather", '{"day": "monday"}'))
    assert read_run_table(tmp_path / "missing.toml") == {}
    cfg.write_text(CONFIG.replace("timeout_s = 2", "timeout_s = 900"))
    with pytest.raises(
        UserError, match=rf'^{cfg}: \[\[run.tools\]\] #1 "weather": timeout_s = 900'
    ):
        load_toolbox(read_run_table(cfg), {}, source=str(cfg))
