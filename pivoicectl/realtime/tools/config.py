"""The tool box from the `[run]` table of config.toml, every mistake a one-line UserError.

    [run]
    builtin_tools = ["get_local_time"]   # the built-ins to offer (default: all of them)

    [[run.tools]]
    name = "weather"                     # ^[a-zA-Z0-9_-]{1,64}$, unique
    description = "Today's weather where the device is."
    command = ["/home/pi/bin/weather", "--short"]   # argv, run without a shell
    timeout_s = 10                       # 0.1 to 300
    [run.tools.parameters]               # a JSON Schema of the arguments object
    type = "object"
    properties = { day = { type = "string", enum = ["today", "tomorrow"] } }

A bad table names itself and the field (`config.toml: [[run.tools]] #2 "weather":
timeout_s = 900 is out of range`), so the user fixes it before anything talks to the
service. `[[run.mcp]]` tables (MCP servers) are read by `mcp_config`; their names share
one namespace with the tools'.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from pivoicectl.errors import UserError
from pivoicectl.realtime.tools.box import Tool, Toolbox
from pivoicectl.realtime.tools.builtin import GetLocalTime, SetVolume
from pivoicectl.realtime.tools.command import CommandTool
from pivoicectl.realtime.tools.schema import EMPTY_PARAMETERS, schema_problem

NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
"""A function tool's name, as the Realtime API accepts it."""
NAME_HINT = "use letters, digits, _ and -, at most 64"
DEFAULT_TIMEOUT_S = 10.0
MIN_TIMEOUT_S = 0.1
MAX_TIMEOUT_S = 300.0
TOOL_FIELDS = ("name", "description", "command", "parameters", "timeout_s")

BUILTINS: dict[str, Callable[[Mapping[str, str]], Tool]] = {
    "set_volume": lambda env: SetVolume(server=env.get("PULSE_SERVER") or None),
    "get_local_time": lambda env: GetLocalTime(),
}
"""The built-in tools by name, each made from the environment `run` has."""


def load_toolbox(
    run_table: Mapping[str, Any], env: Mapping[str, str], source: str = "config.toml"
) -> Toolbox:
    """The tools of the `[run]` table (`read_run_table`): the built-ins it enables and
    its `[[run.tools]]` commands, run with `env`. `source` names the file in errors."""
    enabled = _builtin_names(run_table.get("builtin_tools", list(BUILTINS)), source)
    tools: list[Tool] = [BUILTINS[name](env) for name in enabled]
    taken = {name: "the built-in tool of that name" for name in enabled}
    tables = run_table.get("tools", [])
    if not isinstance(tables, list):
        raise UserError(
            f"{source}: tools in [run] must be an array of tables",
            hint="write each tool as its own [[run.tools]] table",
        )
    for number, table in enumerate(tables, 1):
        where = f"{source}: [[run.tools]] #{number}"
        if not isinstance(table, dict):
            raise UserError(f"{where} is not a table", hint="write it as a [[run.tools]] table")
        tool = _command_tool(table, where, env, taken)
        taken[tool.name] = f"[[run.tools]] #{number}"
        tools.append(tool)
    if "mcp" not in run_table:
        return Toolbox(tools)
    from pivoicectl.realtime.tools.mcp_config import mcp_servers
    from pivoicectl.realtime.tools.mcp_local import quiet_sdk_logs

    local, remote = mcp_servers(run_table["mcp"], env, taken, source)
    if local:
        quiet_sdk_logs()
    return Toolbox(tools, sources=local, remote=remote)


def _builtin_names(value: Any, source: str) -> list[str]:
    known = ", ".join(BUILTINS)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(
            f"{source}: builtin_tools in [run] must be a list of tool names",
            hint=f'e.g. builtin_tools = ["get_local_time"]; known: {known}',
        )
    for name in value:
        if name not in BUILTINS:
            raise UserError(
                f"{source}: builtin_tools names an unknown tool {_show(name)}",
                hint=f"known: {known}",
            )
    if len(set(value)) != len(value):
        raise UserError(f"{source}: builtin_tools names a tool twice", hint="list each tool once")
    return list(value)


def _command_tool(
    table: dict[str, Any], where: str, env: Mapping[str, str], taken: Mapping[str, str]
) -> CommandTool:
    name = table.get("name")
    if name is None:
        raise UserError(f"{where}: name is missing", hint=f'add name = "..." ({NAME_HINT})')
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UserError(f"{where}: name = {_show(name)} is not a tool name", hint=NAME_HINT)
    where = f"{where} {json.dumps(name)}"
    if name in taken:
        raise UserError(
            f"{where}: name {json.dumps(name)} is taken by {taken[name]}",
            hint="give each tool its own name"
            + (", or leave it out of builtin_tools" if taken[name].startswith("the") else ""),
        )
    unknown = [k for k in table if k not in TOOL_FIELDS]
    if unknown:
        raise UserError(
            f"{where}: unknown key {_show(unknown[0])}", hint="known: " + ", ".join(TOOL_FIELDS)
        )
    description = table.get("description", "")
    if not isinstance(description, str):
        raise UserError(f"{where}: description must be a string", hint='use description = "..."')
    return CommandTool(
        name=name,
        description=description,
        command=_command(table.get("command"), where),
        parameters=_parameters(table.get("parameters", EMPTY_PARAMETERS), where),
        timeout_s=_timeout(table.get("timeout_s", DEFAULT_TIMEOUT_S), where),
        env=dict(env),
    )


def _command(value: Any, where: str) -> tuple[str, ...]:
    hint = 'use command = ["/path/to/program", "arg", ...] (run without a shell)'
    if value is None:
        raise UserError(f"{where}: command is missing", hint=hint)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: command must be a list of strings", hint=hint)
    if not value or not value[0].strip():
        raise UserError(f"{where}: command is empty", hint=hint)
    return tuple(value)


def _parameters(value: Any, where: str) -> dict[str, Any]:
    hint = 'a JSON Schema object: [run.tools.parameters] with type = "object" and properties'
    if not isinstance(value, dict):
        raise UserError(f"{where}: parameters must be a table", hint=hint)
    try:
        json.dumps(value, allow_nan=False)
    except ValueError as exc:  # a TOML date or time, nan or inf: JSON has none
        raise UserError(
            f"{where}: parameters holds a value JSON cannot hold ({exc})", hint=hint
        ) from exc
    except TypeError as exc:
        raise UserError(
            f"{where}: parameters holds a value JSON cannot hold (a date or time)", hint=hint
        ) from exc
    problem = schema_problem(value)
    if problem:
        raise UserError(f"{where}: parameters is not a valid JSON Schema: {problem}", hint=hint)
    if value.get("type") != "object":
        raise UserError(f'{where}: parameters must have type = "object"', hint=hint)
    return value


def _timeout(value: Any, where: str) -> float:
    hint = f"use a number of seconds from {MIN_TIMEOUT_S:g} to {MAX_TIMEOUT_S:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{where}: timeout_s = {_show(value)} is not a number", hint=hint)
    if not MIN_TIMEOUT_S <= value <= MAX_TIMEOUT_S:
        raise UserError(f"{where}: timeout_s = {value:g} is out of range", hint=hint)
    return float(value)


def _show(value: Any) -> str:
    """A value from the file, shown short and on one line."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."
