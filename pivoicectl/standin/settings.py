"""How the stand-in Realtime server listens, paces its answers and detects speech.

One frozen value shared by every module of the server, so a test that wants faster
answers or a shorter session limit builds one `LocalServerSettings` and hands it to the
server; nothing else is configurable at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

from pivoicectl.errors import UserError
from pivoicectl.realtime.protocol.events import SESSION_MAX_S


@dataclass(frozen=True)
class LocalServerSettings:
    """How the local server listens, paces its answers and detects speech.

    `output_speed` 1.0 streams answers in real time; larger values are for tests that
    do not care about pacing. The VAD start threshold is `vad_margin_db(threshold)`
    above an adaptive noise floor but never below `vad_min_level_dbfs`, so a silent
    line (digital zeros) does not make every click speech; `vad_min_speech_ms` of
    consecutive loud frames are needed to start a turn.
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

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UserError(f"port {self.port} is out of range", hint="use 0..65535")
        if self.output_chunk_ms <= 0 or self.output_speed <= 0:
            raise UserError("output chunk and speed must be positive", hint="100 ms, 1.0")
        if self.vad_frame_ms <= 0 or self.session_limit_s <= 0:
            raise UserError("VAD frame and session limit must be positive", hint="20 ms")


DEFAULT_SETTINGS = LocalServerSettings()
"""The defaults, shared as the default argument of everything that takes settings."""
