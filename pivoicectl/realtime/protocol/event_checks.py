"""Which fields of a server event the conversation reads, and what each must be.

`parse_server_event` applies these checks, so a malformed event is rejected (and
counted) where frames are parsed, and the conversation can treat any exception of its
own as a bug. Kept apart from the event shapes because it is a table of limits that
grows with every field the conversation starts to read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

MAX_ID_CHARS = 256
"""Longest id accepted; the service's ids (`resp_`, `item_`, `event_` + about 20
characters) are far shorter. Ids are opaque: any visible characters are accepted, so a
change in the service's id format cannot make every event look malformed."""
MAX_NAME_CHARS = 128
"""Longest status, reason, error code or error type accepted."""
MAX_TEXT_CHARS = 100_000
"""Longest transcript, transcript delta or error message accepted."""
MAX_INDEX = 10_000
"""Largest `output_index`/`content_index` accepted (the service counts from 0)."""
MAX_COUNT = 10**15
"""Largest token count accepted in `usage`; sums of larger ones would stop being exact
in the JSON that traces and summaries carry."""
_ID = re.compile(rf"[^\s\x00-\x1f\x7f]{{1,{MAX_ID_CHARS}}}")

Check = Callable[[Any], str]
"""A field check: "" when the value is fine, else what is wrong with it."""


def _an_id(value: Any) -> str:
    if isinstance(value, str) and _ID.fullmatch(value):
        return ""
    return f"is not an id (1 to {MAX_ID_CHARS} visible characters)"


def _a_name(value: Any) -> str:
    ok = isinstance(value, str) and len(value) <= MAX_NAME_CHARS
    return "" if ok else f"is not a string of at most {MAX_NAME_CHARS} characters"


def _a_text(value: Any) -> str:
    ok = isinstance(value, str) and len(value) <= MAX_TEXT_CHARS
    return "" if ok else f"is not a string of at most {MAX_TEXT_CHARS} characters"


def _a_string(value: Any) -> str:
    return "" if isinstance(value, str) else "is not a string"


def _an_object(value: Any) -> str:
    return "" if isinstance(value, dict) else "is not an object"


def _an_index(value: Any) -> str:
    ok = type(value) is int and 0 <= value <= MAX_INDEX
    return "" if ok else f"is not an index from 0 to {MAX_INDEX}"


def _a_usage(value: Any) -> str:
    """Token counts: every number, at any depth, a finite count from 0 to MAX_COUNT
    (what `add_usage` sums); other values are carried along unread."""
    if not isinstance(value, dict):
        return "is not an object"
    stack: list[Any] = [value]
    while stack:
        for item in stack.pop().values():
            if isinstance(item, dict):
                stack.append(item)
            elif not isinstance(item, int | float) or isinstance(item, bool):
                continue
            elif not (math.isfinite(item) and 0 <= item <= MAX_COUNT):
                return f"holds {item!r}, not a count from 0 to {MAX_COUNT}"
    return ""


TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
"""A function tool's name as the service accepts it in `session.tools`."""


def _a_function_call_if_one(value: Any) -> str:
    """An output item; when it is a function call, with the call id, a tool name and
    the arguments the client needs to run and answer it."""
    if not isinstance(value, dict):
        return "is not an object"
    if value.get("type") != "function_call":
        return ""
    for key, check in (("call_id", _an_id), ("name", _a_tool_name), ("arguments", _a_text)):
        problem = check(value.get(key))
        if problem:
            return f"is a function call whose {key} {problem}"
    return ""


MCP_ITEMS = ("mcp_call", "mcp_approval_request", "mcp_list_tools")
"""Output and conversation items about MCP servers the service reaches."""
_VISIBLE = re.compile(rf"[^\s\x00-\x1f\x7f]{{1,{MAX_NAME_CHARS}}}")


def _a_visible_name(value: Any) -> str:
    """A server label or MCP tool name: shown on a status line, so one word of
    visible characters."""
    if isinstance(value, str) and _VISIBLE.fullmatch(value):
        return ""
    return f"is not a name (1 to {MAX_NAME_CHARS} visible characters)"


def _an_mcp_item_if_one(value: Any) -> str:
    """An item; when it is about an MCP server, with the ids and names the client
    shows, keeps and answers (an approval request's id is what the approval names)."""
    if not isinstance(value, dict):
        return "is not an object"
    kind = value.get("type")
    if kind not in MCP_ITEMS:
        return ""
    checks: list[tuple[str, Check, bool]] = [("server_label", _a_visible_name, _REQUIRED)]
    if kind == "mcp_list_tools":
        checks.append(("id", _an_id, _OPTIONAL))
    else:
        checks += [("id", _an_id, _REQUIRED), ("name", _a_visible_name, _REQUIRED)]
    for key, check, required in checks:
        if value.get(key) is None:
            if required:
                return f"is an {kind} item without {key}"
            continue
        problem = check(value[key])
        if problem:
            return f"is an {kind} item whose {key} {problem}"
    return ""


def _a_tool_item_if_one(value: Any) -> str:
    """An output item; a function call or an MCP item checked as such."""
    return _a_function_call_if_one(value) or _an_mcp_item_if_one(value)


def _a_tool_name(value: Any) -> str:
    ok = isinstance(value, str) and TOOL_NAME.fullmatch(value) is not None
    return "" if ok else "is not a tool name (1 to 64 of a-z, A-Z, 0-9, _ and -)"


def check_field(data: dict[str, Any], path: str, check: Check, required: bool) -> str:
    """What is wrong with `data` at the dotted `path`: "" if nothing. An absent or null
    field is fine unless `required`; an object on the way that is absent or null is
    fine too (its own check says whether it is required)."""
    value: Any = data
    for name in path.split("."):
        if not isinstance(value, dict):
            return ""  # the parent's own check reports it
        value = value.get(name)
        if value is None:
            return f"{path} is missing" if required else ""
    problem = check(value)
    return f"{path} {problem}" if problem else ""


FieldCheck = tuple[str, Check, bool]
_REQUIRED, _OPTIONAL = True, False
_INDEXES: tuple[FieldCheck, ...] = (
    ("output_index", _an_index, _OPTIONAL),
    ("content_index", _an_index, _OPTIONAL),
)
COMMON_CHECKS: tuple[FieldCheck, ...] = (("event_id", _an_id, _OPTIONAL),)
VALIDATED_EVENTS: dict[str, tuple[FieldCheck, ...]] = {
    "session.created": (
        ("session", _an_object, _OPTIONAL),
        ("session.id", _an_id, _OPTIONAL),
    ),
    "input_audio_buffer.speech_started": (("item_id", _an_id, _OPTIONAL),),
    "input_audio_buffer.speech_stopped": (("item_id", _an_id, _OPTIONAL),),
    "conversation.item.input_audio_transcription.completed": (
        ("item_id", _an_id, _OPTIONAL),
        ("transcript", _a_text, _REQUIRED),
    ),
    "response.created": (
        ("response", _an_object, _REQUIRED),
        ("response.id", _an_id, _REQUIRED),
        ("response.status", _a_name, _OPTIONAL),
    ),
    "response.output_audio.delta": (
        ("response_id", _an_id, _REQUIRED),
        ("item_id", _an_id, _REQUIRED),
        ("delta", _a_string, _REQUIRED),  # and base64, checked by decoding it
        *_INDEXES,
    ),
    "response.output_audio.done": (
        ("item_id", _an_id, _REQUIRED),
        ("response_id", _an_id, _OPTIONAL),
        *_INDEXES,
    ),
    "response.output_audio_transcript.delta": (
        ("response_id", _an_id, _REQUIRED),
        ("item_id", _an_id, _OPTIONAL),
        ("delta", _a_text, _REQUIRED),
        *_INDEXES,
    ),
    "response.output_audio_transcript.done": (
        ("response_id", _an_id, _REQUIRED),
        ("item_id", _an_id, _OPTIONAL),
        ("transcript", _a_text, _REQUIRED),
        *_INDEXES,
    ),
    "response.done": (
        ("response", _an_object, _REQUIRED),
        ("response.id", _an_id, _REQUIRED),
        ("response.status", _a_name, _OPTIONAL),
        ("response.status_details", _an_object, _OPTIONAL),
        ("response.status_details.type", _a_name, _OPTIONAL),
        ("response.status_details.reason", _a_name, _OPTIONAL),
        ("response.status_details.error", _an_object, _OPTIONAL),
        ("response.status_details.error.message", _a_text, _OPTIONAL),
        ("response.usage", _a_usage, _OPTIONAL),
    ),
    "response.output_item.done": (
        ("response_id", _an_id, _OPTIONAL),
        ("item", _a_tool_item_if_one, _REQUIRED),
        ("item.type", _a_name, _OPTIONAL),
        ("item.id", _an_id, _OPTIONAL),
    ),
    "response.output_item.added": (
        ("response_id", _an_id, _OPTIONAL),
        ("item", _an_mcp_item_if_one, _OPTIONAL),
        ("item.type", _a_name, _OPTIONAL),
    ),
    "conversation.item.added": (
        ("item", _an_mcp_item_if_one, _OPTIONAL),
        ("item.type", _a_name, _OPTIONAL),
    ),
    "conversation.item.done": (
        ("item", _an_mcp_item_if_one, _OPTIONAL),
        ("item.type", _a_name, _OPTIONAL),
    ),
    "mcp_list_tools.in_progress": (("item_id", _an_id, _OPTIONAL),),
    "mcp_list_tools.completed": (("item_id", _an_id, _OPTIONAL),),
    "mcp_list_tools.failed": (("item_id", _an_id, _OPTIONAL),),
    "response.mcp_call.in_progress": (("item_id", _an_id, _OPTIONAL), *_INDEXES[:1]),
    "response.mcp_call.completed": (("item_id", _an_id, _OPTIONAL), *_INDEXES[:1]),
    "response.mcp_call.failed": (("item_id", _an_id, _OPTIONAL), *_INDEXES[:1]),
    "error": (
        ("error", _an_object, _REQUIRED),
        ("error.type", _a_name, _OPTIONAL),
        ("error.code", _a_name, _OPTIONAL),
        ("error.message", _a_text, _OPTIONAL),
        ("error.event_id", _an_id, _OPTIONAL),
    ),
}
"""The server events the conversation acts on, and the checks of every field it reads
of them (a dotted path into the event, the check, whether the field must be there).
Ids are checked for their characters too: they end up in traces and status lines."""
