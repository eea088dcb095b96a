"""How the stand-in Realtime server listens, paces its answers and detects speech.

One frozen value shared by every module of the server, so a test that wants faster
answers or a shorter session limit builds one `LocalServerSettings` and hands it to the
server; nothing else is configurable at run time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pivoicectl.errors import UserError
from pivoicectl.realtime.protocol.events import SESSION_MAX_S

TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
"""What the service accepts as a function tool's name."""


@dataclass(frozen=True)
class LocalServerSettings:
    """How the local server listens, paces its answers and detects speech.

    `output_speed` 1.0 streams answers in real time; larger values are for tests that
    do not care about pacing. The VAD start threshold is `vad_margin_db(threshold)`
    above an adaptive noise floor but never below `vad_min_level_dbfs`, so a silent
    line (digital zeros) does not make every click speech; `vad_min_speech_ms` of
    consecutive loud frames are needed to start a turn.

    `call_tool` makes the repeater call that function tool (when the session declares
    it) with `call_tool_args`, a JSON object's text sent as is, after each question,
    so a client's tool handling can be exercised with no model.
    """

    host: str = "127.0.0.1"
    port: int = 0
    output_chunk_ms: int = 100
    output_speed: float = 1.0
    vad_frame_ms: int = 20
    vad_min_level_dbfs: float = -50.0
    vad_hysteresis_db: float = 6.0
    vad_min_speech_ms: int = 60
    commit_min_ms: int = 100
    session_limit_s: float = SESSION_MAX_S
    reply_tone_ms: int = 400
    reply_tone_hz: float = 440.0
    max_message_bytes: int = 16 * 1024 * 1024
    log_max_entries: int = 100_000
    call_tool: str | None = None
    call_tool_args: str = "{}"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UserError(f"port {self.port} is out of range", hint="use 0..65535")
        if self.output_chunk_ms <= 0 or self.output_speed <= 0:
            raise UserError("output chunk and speed must be positive", hint="100 ms, 1.0")
        if self.vad_frame_ms <= 0 or self.session_limit_s <= 0:
            raise UserError("VAD frame and session limit must be positive", hint="20 ms")
        if self.call_tool is not None and not TOOL_NAME.fullmatch(self.call_tool):
            raise UserError(
                f"tool name {self.call_tool!r} is not a valid function name",
                hint="1 to 64 letters, digits, '_' or '-'",
            )
        try:
            args = json.loads(self.call_tool_args, parse_constant=_not_json)
        except ValueError as exc:
            raise UserError(
                f"tool arguments are not JSON: {exc}",
                hint='give a JSON object, e.g. {"percent": 30}',
            ) from None
        if not isinstance(args, dict):
            raise UserError(
                f"tool arguments must be a JSON object, not {type(args).__name__}",
                hint='give a JSON object, e.g. {"percent": 30}',
            )


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


DEFAULT_SETTINGS = LocalServerSettings()
"""The defaults, shared as the default argument of everything that takes settings."""
