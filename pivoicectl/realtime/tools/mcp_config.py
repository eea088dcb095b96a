"""The `[[run.mcp]]` tables of config.toml, every mistake a one-line UserError.

    [[run.mcp]]
    name = "home"                        # ^[a-zA-Z0-9_-]{1,64}$, unique among all tools
    command = ["/home/pi/bin/home-mcp"]  # a server run by the device, over stdio
    timeout_s = 30                       # one call at most (0.1 to 300)

    [[run.mcp]]
    name = "lights"
    url = "http://hub.local:8123/mcp"    # or a streamable-HTTP server on the LAN
    headers_env = { Authorization = "HUB_AUTH" }   # header -> variable holding its value

    [[run.mcp]]
    name = "docs"
    where = "remote"                     # the service reaches it (needs url)
    url = "https://example.com/mcp"
    allowed_tools = ["search"]           # optional
    require_approval = "always"          # "never" (default) or "always"
    approve = ["search"]                 # with "always": what the device approves
    description = "Product manuals"      # optional server_description

A bad table names itself (`config.toml: [[run.mcp]] #2 "docs": ...`) and the run stops
before anything starts; a missing header variable too, so a server is not declared
without the credentials it needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pivoicectl.errors import UserError
from pivoicectl.realtime.tools.config import (
    NAME_HINT,
    NAME_RE,
    _command,
    _show,
    _timeout,
)
from pivoicectl.realtime.tools.mcp_local import McpLocalServer, McpServerSpec
from pivoicectl.realtime.tools.mcp_remote import RemoteMcp

DEFAULT_CALL_TIMEOUT_S = 30.0
LOCAL_FIELDS = ("name", "where", "command", "url", "headers_env", "timeout_s")
REMOTE_FIELDS = (
    "name",
    "where",
    "url",
    "headers_env",
    "allowed_tools",
    "require_approval",
    "approve",
    "description",
)
APPROVALS = ("never", "always")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
"""An HTTP header name (an RFC 9110 token)."""


def mcp_servers(
    tables: Any, env: Mapping[str, str], taken: dict[str, str], source: str
) -> tuple[list[McpLocalServer], list[RemoteMcp]]:
    """The servers of the `[[run.mcp]]` tables; their names join `taken` (name -> what
    holds it), which already has the function tools'."""
    if not isinstance(tables, list):
        raise UserError(
            f"{source}: mcp in [run] must be an array of tables",
            hint="write each server as its own [[run.mcp]] table",
        )
    local: list[McpLocalServer] = []
    remote: list[RemoteMcp] = []
    for number, table in enumerate(tables, 1):
        where = f"{source}: [[run.mcp]] #{number}"
        if not isinstance(table, dict):
            raise UserError(f"{where} is not a table", hint="write it as a [[run.mcp]] table")
        name = _name(table, where, taken)
        where = f"{where} {json.dumps(name)}"
        taken[name] = f"[[run.mcp]] #{number}"
        kind = table.get("where", "local")
        if kind not in ("local", "remote"):
            raise UserError(
                f"{where}: where = {_show(kind)} is neither local nor remote",
                hint='where = "local" (the device talks to the server, the default) or '
                '"remote" (the service does)',
            )
        fields = LOCAL_FIELDS if kind == "local" else REMOTE_FIELDS
        unknown = [k for k in table if k not in fields]
        if unknown:
            raise UserError(
                f"{where}: unknown key {_show(unknown[0])} for where = {json.dumps(kind)}",
                hint="known: " + ", ".join(fields),
            )
        if kind == "local":
            local.append(McpLocalServer(_local_spec(table, name, where, env)))
        else:
            remote.append(_remote(table, name, where, env))
    return local, remote


def _name(table: dict[str, Any], where: str, taken: Mapping[str, str]) -> str:
    name = table.get("name")
    if name is None:
        raise UserError(f"{where}: name is missing", hint=f'add name = "..." ({NAME_HINT})')
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UserError(f"{where}: name = {_show(name)} is not a server name", hint=NAME_HINT)
    if name in taken:
        raise UserError(
            f"{where} {json.dumps(name)}: name {json.dumps(name)} is taken by {taken[name]}",
            hint="give each tool and server its own name",
        )
    return name


def _local_spec(
    table: dict[str, Any], name: str, where: str, env: Mapping[str, str]
) -> McpServerSpec:
    has_url, has_command = "url" in table, "command" in table
    if has_url == has_command:
        raise UserError(
            f"{where}: give either command or url" + (", not both" if has_url else ""),
            hint='command = ["/path/to/server", ...] runs it over stdio; url = "http://..." '
            "reaches a streamable-HTTP server",
        )
    timeout = _timeout(table.get("timeout_s", DEFAULT_CALL_TIMEOUT_S), where)
    if has_command:
        if "headers_env" in table:
            raise UserError(f"{where}: headers_env is for a url", hint="remove headers_env")
        return McpServerSpec(
            name=name,
            command=_command(table["command"], where),
            timeout_s=timeout,
            env=dict(env),
        )
    return McpServerSpec(
        name=name,
        url=_url(table["url"], where),
        headers=_headers(table.get("headers_env", {}), where, env),
        timeout_s=timeout,
    )


def _remote(table: dict[str, Any], name: str, where: str, env: Mapping[str, str]) -> RemoteMcp:
    if "url" not in table:
        raise UserError(
            f'{where}: where = "remote" needs url',
            hint="the service reaches the server at that URL; a server the device runs "
            'is where = "local"',
        )
    approval = table.get("require_approval", "never")
    if approval not in APPROVALS:
        raise UserError(
            f"{where}: require_approval = {_show(approval)} is not never or always",
            hint='require_approval = "never" (the default) or "always" (with approve = [...])',
        )
    if "approve" in table and approval != "always":
        raise UserError(
            f'{where}: approve is only read with require_approval = "always"',
            hint='add require_approval = "always", or remove approve',
        )
    description = table.get("description", "")
    if not isinstance(description, str):
        raise UserError(f"{where}: description must be a string", hint='use description = "..."')
    allowed = table.get("allowed_tools")
    return RemoteMcp(
        label=name,
        url=_url(table["url"], where),
        require_approval=approval,
        allowed_tools=None if allowed is None else _names(allowed, "allowed_tools", where),
        approve=frozenset(_names(table.get("approve", []), "approve", where)),
        headers=_headers(table.get("headers_env", {}), where, env),
        description=description,
    )


def _url(value: Any, where: str) -> str:
    hint = 'use url = "https://host/path" (or http:// on the LAN)'
    if not isinstance(value, str):
        raise UserError(f"{where}: url must be a string", hint=hint)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError as exc:
        raise UserError(f"{where}: url {_show(value)} is not a URL ({exc})", hint=hint) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or value != value.strip():
        raise UserError(f"{where}: url {_show(value)} is not an http(s) URL", hint=hint)
    return value


def _names(value: Any, key: str, where: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not all(isinstance(v, str) and v.strip() for v in value)
        or len(set(value)) != len(value)
    ):
        raise UserError(
            f"{where}: {key} must be a list of tool names, each once",
            hint=f'e.g. {key} = ["search", "fetch"]',
        )
    return tuple(value)


def _headers(value: Any, where: str, env: Mapping[str, str]) -> dict[str, str]:
    """Header name -> the value of the environment variable the table names for it."""
    hint = 'e.g. headers_env = { Authorization = "HUB_AUTH" } (the variable holds the value)'
    if not isinstance(value, dict):
        raise UserError(f"{where}: headers_env must be a table", hint=hint)
    headers: dict[str, str] = {}
    for header, var in value.items():
        if not _HEADER.fullmatch(header):
            raise UserError(
                f"{where}: headers_env: {_show(header)} is not a header name", hint=hint
            )
        if not isinstance(var, str) or not var:
            raise UserError(
                f"{where}: headers_env: {header} must name an environment variable", hint=hint
            )
        secret = env.get(var)
        if secret is None:
            raise UserError(
                f"{where}: headers_env: the variable {var} (for {header}) is not set",
                hint=f"set {var} in the environment pivoicectl runs in",
            )
        if not secret.strip() or "\n" in secret or "\r" in secret:
            raise UserError(
                f"{where}: headers_env: the variable {var} (for {header}) is empty or "
                "holds a line break",
                hint=f"set {var} to the header's value",
            )
        headers[header] = secret
    return headers
