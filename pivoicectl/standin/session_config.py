"""The session object the stand-in keeps per connection, and what `session.update` may change.

Pure functions over the session dict, apart from the protocol plumbing, so the rules
the service applies to `session.update` (GA `type: realtime` required, PCM at 24 kHz
only, turn detection replaced whole, function tools named as the service requires) can
be read and tested in one place.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from pivoicectl.realtime.protocol import server_events as se
from pivoicectl.realtime.protocol.events import SAMPLE_RATE_HZ
from pivoicectl.standin.settings import TOOL_NAME

SEMANTIC_SILENCE_MS = {"low": 1200, "medium": 600, "auto": 600, "high": 300}
"""semantic_vad has no silence setting; its eagerness is approximated by one."""


def new_id(prefix: str) -> str:
    """A random id in the service's style, e.g. `item_3f2a...`."""
    return f"{prefix}_{secrets.token_hex(10)}"


def default_session(model: str) -> dict[str, Any]:
    """The session a new connection starts with, as the service reports it."""
    return se.session_resource(new_id("sess"), model)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`base` with `update` applied as the service applies a `session.update`."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            # turn_detection is replaced whole: switching server_vad -> semantic_vad must
            # not keep server_vad-only fields.
            out[key] = value if key == "turn_detection" else deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class Rejection:
    """Why a client event (a `session.update`, an item) is refused, as the fields of the
    service's error event."""

    code: str
    message: str
    param: str


def check_session_update(update: Any) -> Rejection | None:
    """None if `update` (the event's `session`) may be applied, else why not."""
    if not isinstance(update, dict):
        return Rejection(
            "missing_required_parameter", "Missing required parameter: 'session'.", "session"
        )
    if update.get("type") != "realtime":
        return Rejection(
            "missing_required_parameter",
            "Missing required parameter: 'session.type'.",
            "session.type",
        )
    audio: dict[str, Any] = update["audio"] if isinstance(update.get("audio"), dict) else {}
    for direction in ("input", "output"):
        fmt = (audio.get(direction) or {}).get("format")
        if isinstance(fmt, dict) and (
            fmt.get("type", "audio/pcm") != "audio/pcm"
            or fmt.get("rate", SAMPLE_RATE_HZ) != SAMPLE_RATE_HZ
        ):
            return Rejection(
                "invalid_value",
                f"The local server only speaks audio/pcm at {SAMPLE_RATE_HZ} Hz.",
                f"session.audio.{direction}.format",
            )
    td = (audio.get("input") or {}).get("turn_detection", "absent")
    if td not in ("absent", None) and (
        not isinstance(td, dict) or td.get("type") not in ("server_vad", "semantic_vad")
    ):
        return Rejection(
            "invalid_value",
            "Invalid value for turn_detection.type; expected server_vad or semantic_vad.",
            "session.audio.input.turn_detection.type",
        )
    return check_tools(update.get("tools", []))


def check_tools(tools: Any) -> Rejection | None:
    """None if `tools` is a list of tools the service would take; function tools need a
    name of 1 to 64 letters, digits, `_` or `-` (other tool types are not looked into)."""
    if not isinstance(tools, list):
        return Rejection(
            "invalid_type", "Invalid type for 'session.tools': expected an array.", "session.tools"
        )
    for index, tool in enumerate(tools):
        param = f"session.tools[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            return Rejection(
                "invalid_type", f"Invalid type for '{param}': expected an object.", param
            )
        name = tool.get("name")
        if tool["type"] == "function" and not (isinstance(name, str) and TOOL_NAME.fullmatch(name)):
            return Rejection(
                "invalid_value",
                f"Invalid '{param}.name': expected a string matching ^[a-zA-Z0-9_-]{{1,64}}$.",
                f"{param}.name",
            )
    return None


def vad_parameters(turn_detection: dict[str, Any]) -> tuple[float, int]:
    """The energy VAD's (threshold 0..1, silence ms) for a turn_detection object."""
    if turn_detection.get("type") == "semantic_vad":
        eagerness = str(turn_detection.get("eagerness", "auto"))
        return 0.5, SEMANTIC_SILENCE_MS.get(eagerness, 600)
    return (
        float(turn_detection.get("threshold", 0.5)),
        int(turn_detection.get("silence_duration_ms", 500)),
    )
