"""A local stand-in for the OpenAI Realtime service whose "model" is a parrot.

Everything between the microphone and the WebSocket (echo cancellation, barge-in,
truncation, reconnects, session renewal) can be exercised against this server on
127.0.0.1 without an API key, a network or a bill, and the same tests run in CI. It
speaks the GA protocol and honors the parts of the service contract that a client can
get wrong:

* handshake: a missing `Authorization: Bearer ...` is rejected with HTTP 401 (any token
  is accepted); `OpenAI-Beta: realtime=v1` is closed with code 4000 as the service now
  does;
* its own energy VAD over the input audio timeline (`EnergyVad`), emitting
  `speech_started` / `speech_stopped` / `committed` with the session's prefix padding
  and silence duration; `turn_detection: null` means push-to-talk (client commits and
  calls `response.create`);
* the answer is the user's own utterance, streamed as `response.output_audio.delta` at
  real-time pace against a monotonic clock, so playback and barge-in timing behave as
  with the service; `response.create` with nothing to repeat answers with a short tone;
* interruption: new speech while answering cancels the response (`turn_detected`) when
  `interrupt_response` is set; `response.cancel` cancels it (`client_cancelled`) or
  answers `response_cancel_not_active`;
* `conversation.item.truncate` is rejected, in the service's error shape, for unknown
  items, user items, items without audio and `audio_end_ms` beyond the audio sent;
* the 60-minute session limit (configurable, so renewal can be tested in seconds).

It records what it received and sent (`ServerLog`) and can drop connections on demand
for reconnect tests. Run it inside a test's event loop (`async with
LocalRealtimeServer() as srv`), in a background thread (`LocalServerThread`, for
`run --local`), or blocking (`serve_forever`, for `pivoicectl local-server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http
import json
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from pivoicectl.dsp.vad import StreamingVad, VadSettings
from pivoicectl.errors import UserError
from pivoicectl.realtime.protocol.events import (
    BYTES_PER_SAMPLE,
    DEFAULT_MODEL,
    SAMPLE_RATE_HZ,
    SESSION_MAX_S,
    decode_audio,
    encode_audio,
    ms_to_samples,
    samples_to_ms,
)
from pivoicectl.realtime.protocol.redact import redact

log = logging.getLogger(__name__)

REALTIME_PATH = "/v1/realtime"
BETA_CLOSE_CODE = 4000
BETA_CLOSE_REASON = "invalid_request_error.beta_api_shape_disabled"


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


# --- voice activity detection --------------------------------------------------------------

VadKind = Literal["start", "stop"]


@dataclass(frozen=True)
class VadEvent:
    """A turn boundary on the input timeline (samples since the session's first append).

    `start`: `speech_start_samples` is where the first loud frame began.
    `stop`: `speech_end_samples` is where the last loud frame ended, `stop_samples` where
    the silence that ended the turn reached `silence_duration_ms`.
    """

    kind: VadKind
    speech_start_samples: int = 0
    speech_end_samples: int = 0
    stop_samples: int = 0


def vad_margin_db(threshold: float) -> float:
    """The service's 0..1 `threshold` as dB above the noise floor (0.5 -> 18 dB)."""
    return 6.0 + 24.0 * min(1.0, max(0.0, threshold))


class EnergyVad:
    """Turn boundaries over a PCM16 stream, on the energy VAD of `pivoicectl.dsp.vad`.

    Pure and incremental: `feed` takes any number of bytes and returns the turn
    boundaries found in the complete frames so far. Whether a frame is loud is the
    shared `StreamingVad` decision: `vad_margin_db(threshold)` above an adaptive noise
    floor (down at once, up at most 5 dB/s; the first frame only calibrates it) and above
    `vad_min_level_dbfs`. What is the server's own is the turn around those frames:
    `vad_min_speech_ms` of consecutive loud frames start it; during it the floor is
    frozen, so a long utterance does not raise it and a pause does not drag it down; the
    stop threshold is the start threshold minus a hysteresis, so a voice decaying at the
    end of a word does not end the turn early; `silence_duration_ms` below it ends it.
    """

    FLOOR_RISE_DB_PER_S = 5.0

    def __init__(
        self,
        threshold: float = 0.5,
        silence_duration_ms: int = 500,
        settings: LocalServerSettings = LocalServerSettings(),
        position_samples: int = 0,
    ) -> None:
        self._settings = settings
        self.frames = StreamingVad(SAMPLE_RATE_HZ, self._frame_settings(threshold))
        self.frame_samples = self.frames.frame_len
        self.hysteresis_db = settings.vad_hysteresis_db
        self.min_speech_frames = max(
            1, math.ceil(settings.vad_min_speech_ms / settings.vad_frame_ms)
        )
        self.silence_samples = ms_to_samples(silence_duration_ms)
        self.position_samples = position_samples
        self.speaking = False
        self._pending = b""
        self._loud_run = 0
        self._candidate_start = 0
        self._stop_threshold_dbfs = 0.0
        self._last_loud_end = 0
        self._quiet_samples = 0

    def _frame_settings(self, threshold: float) -> VadSettings:
        return VadSettings(
            frame_ms=float(self._settings.vad_frame_ms),
            threshold_db=vad_margin_db(threshold),
            min_level_dbfs=self._settings.vad_min_level_dbfs,
            hangover_frames=0,
            noise_rise_db_per_s=self.FLOOR_RISE_DB_PER_S,
        )

    def configure(self, threshold: float, silence_duration_ms: int) -> None:
        """Apply a `session.update` without losing the noise floor or the timeline."""
        self.frames.retune(self._frame_settings(threshold))
        self.silence_samples = ms_to_samples(silence_duration_ms)

    def reset_turn(self) -> None:
        """Forget any turn in progress (buffer cleared or committed by hand).

        The timeline position and noise floor stay: the input timeline never restarts.
        """
        self.speaking = False
        self._loud_run = 0
        self._quiet_samples = 0

    @property
    def noise_floor_dbfs(self) -> float | None:
        return self.frames.noise_floor_dbfs

    @property
    def start_threshold_dbfs(self) -> float:
        return self.frames.threshold_dbfs

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Process `pcm`; returns the turn boundaries completed by it."""
        data = self._pending + pcm
        frame_bytes = self.frame_samples * BYTES_PER_SAMPLE
        n_whole = len(data) // frame_bytes * frame_bytes
        self._pending = data[n_whole:]
        view = memoryview(data)
        events: list[VadEvent] = []
        for i in range(0, n_whole, frame_bytes):
            event = self._frame(view[i : i + frame_bytes])
            if event is not None:
                events.append(event)
            self.position_samples += self.frame_samples
        return events

    def _frame(self, frame: memoryview) -> VadEvent | None:
        start = self.position_samples
        end = start + self.frame_samples
        loud = self.frames.process(frame, adapt=not self.speaking)
        if not self.speaking:
            if not loud:
                self._loud_run = 0
                return None
            if self._loud_run == 0:
                self._candidate_start = start
            self._loud_run += 1
            if self._loud_run < self.min_speech_frames:
                return None
            self.speaking = True
            self._stop_threshold_dbfs = self.frames.threshold_dbfs - self.hysteresis_db
            self._last_loud_end = end
            self._quiet_samples = 0
            return VadEvent("start", speech_start_samples=self._candidate_start)
        if self.frames.level_dbfs >= self._stop_threshold_dbfs:
            self._last_loud_end = end
            self._quiet_samples = 0
            return None
        self._quiet_samples += self.frame_samples
        if self._quiet_samples < self.silence_samples:
            return None
        self.speaking = False
        self._loud_run = 0
        return VadEvent(
            "stop",
            speech_start_samples=self._candidate_start,
            speech_end_samples=self._last_loud_end,
            stop_samples=end,
        )


# --- what the server records -------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """One event the server received (`in`) or sent (`out`)."""

    t_s: float
    connection_id: int
    direction: Literal["in", "out"]
    type: str
    event_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TruncationRecord:
    """A `conversation.item.truncate` and whether it was accepted."""

    connection_id: int
    item_id: str
    audio_end_ms: int
    accepted: bool
    error_code: str | None = None
    item_audio_ms: int | None = None


@dataclass(frozen=True)
class ConnectionRecord:
    """One handshake: where it went, whether it was let in, headers with secrets masked."""

    connection_id: int
    path: str
    model: str | None
    outcome: Literal["accepted", "unauthorized", "not_found", "beta_rejected"]
    headers: dict[str, str]


class ServerLog:
    """Thread-safe record of everything the server saw, for tests and `--trace`.

    Written from the server's loop, read from any thread (the background-thread server
    is inspected from the test's thread). Audio payloads are kept as byte counts. Each
    record list keeps the newest `max_entries`, so a `local-server` left running for days
    (about 100 events a second while audio streams) does not grow without bound.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._entries: deque[LogEntry] = deque(maxlen=max_entries)
        self._truncations: deque[TruncationRecord] = deque(maxlen=max_entries)
        self._connections: deque[ConnectionRecord] = deque(maxlen=max_entries)

    def add(
        self,
        connection_id: int,
        direction: Literal["in", "out"],
        event: dict[str, Any],
    ) -> None:
        """Record one event with a detail summary (ids, status, sizes; no audio)."""
        detail: dict[str, Any] = {}
        for key in ("item_id", "response_id", "audio_start_ms", "audio_end_ms"):
            if key in event:
                detail[key] = event[key]
        for key in ("audio", "delta"):
            if isinstance(event.get(key), str) and event.get("type", "").endswith(
                ("append", "audio.delta")
            ):
                detail["audio_bytes"] = len(decode_audio(event[key]))
        response = event.get("response")
        if isinstance(response, dict):
            detail["response_id"] = response.get("id")
            detail["status"] = response.get("status")
            details = response.get("status_details")
            if isinstance(details, dict):
                detail["reason"] = details.get("reason")
        error = event.get("error")
        if isinstance(error, dict):
            detail["code"] = error.get("code")
            detail["message"] = error.get("message")
        entry = LogEntry(
            t_s=time.monotonic() - self._t0,
            connection_id=connection_id,
            direction=direction,
            type=str(event.get("type", "")),
            event_id=event.get("event_id") if isinstance(event.get("event_id"), str) else None,
            detail=detail,
        )
        with self._lock:
            self._entries.append(entry)

    def add_truncation(self, record: TruncationRecord) -> None:
        with self._lock:
            self._truncations.append(record)

    def add_connection(self, record: ConnectionRecord) -> None:
        with self._lock:
            self._connections.append(record)

    def entries(self, direction: Literal["in", "out"] | None = None) -> list[LogEntry]:
        """A copy of the log, optionally one direction only."""
        with self._lock:
            return [e for e in self._entries if direction is None or e.direction == direction]

    def types(
        self, direction: Literal["in", "out"] = "in", connection_id: int | None = None
    ) -> list[str]:
        """Event types in order, e.g. what a client sent."""
        return [
            e.type
            for e in self.entries(direction)
            if connection_id is None or e.connection_id == connection_id
        ]

    @property
    def truncations(self) -> list[TruncationRecord]:
        with self._lock:
            return list(self._truncations)

    @property
    def connections(self) -> list[ConnectionRecord]:
        with self._lock:
            return list(self._connections)


# --- one connection ---------------------------------------------------------------------


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def _error_event(
    code: str | None,
    message: str,
    param: str | None = None,
    client_event_id: str | None = None,
    error_type: str = "invalid_request_error",
) -> dict[str, Any]:
    """An `error` event in the service's shape."""
    return {
        "type": "error",
        "error": {
            "type": error_type,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        },
    }


def _default_session(model: str) -> dict[str, Any]:
    pcm = {"type": "audio/pcm", "rate": SAMPLE_RATE_HZ}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": _new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "audio": {
            "input": {
                "format": dict(pcm),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "create_response": True,
                    "interrupt_response": True,
                    "idle_timeout_ms": None,
                },
            },
            "output": {"format": dict(pcm), "voice": "alloy", "speed": 1.0},
        },
    }


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            # turn_detection is replaced whole: switching server_vad -> semantic_vad must
            # not keep server_vad-only fields.
            out[key] = value if key == "turn_detection" else _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


_SEMANTIC_SILENCE_MS = {"low": 1200, "medium": 600, "auto": 600, "high": 300}
"""semantic_vad has no silence setting; its eagerness is approximated by one."""


@dataclass
class _Item:
    id: str
    role: Literal["user", "assistant"]
    reply_pcm: bytes = b""
    user_audio_samples: int = 0
    sent_samples: int = 0
    truncated_at_samples: int | None = None

    @property
    def audio_samples(self) -> int:
        """The assistant audio the item holds: what was sent, cut by any truncation."""
        if self.truncated_at_samples is None:
            return self.sent_samples
        return min(self.sent_samples, self.truncated_at_samples)


@dataclass
class _Run:
    id: str
    item: _Item
    pcm: bytes
    transcript: str
    input_audio_samples: int
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str | None = None
    status: str = "in_progress"
    task: asyncio.Task[None] | None = None


class _Session:
    """Protocol state of one WebSocket connection."""

    def __init__(
        self,
        server: LocalRealtimeServer,
        ws: ServerConnection,
        connection_id: int,
        model: str,
    ) -> None:
        self.server = server
        self.settings = server.settings
        self.ws = ws
        self.connection_id = connection_id
        self.session = _default_session(model)
        self.timeline_samples = 0
        self.buffer = bytearray()
        self.buffer_start_samples = 0
        self.vad: EnergyVad | None = None
        self.speech_item_id: str | None = None
        self.speech_audio_start_samples = 0
        self.items: dict[str, _Item] = {}
        self.last_item_id: str | None = None
        self.pending: _Item | None = None
        self.active: _Run | None = None
        self._configure_vad()

    # --- configuration --------------------------------------------------------------

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        td = self.session["audio"]["input"].get("turn_detection")
        return td if isinstance(td, dict) else None

    def _td_flag(self, name: str) -> bool:
        td = self.turn_detection
        return bool(td.get(name, True)) if td is not None else False

    @property
    def prefix_samples(self) -> int:
        td = self.turn_detection or {}
        return ms_to_samples(int(td.get("prefix_padding_ms", 300) or 0))

    def _configure_vad(self) -> None:
        td = self.turn_detection
        if td is None:
            self.vad = None
            return
        if td.get("type") == "semantic_vad":
            threshold = 0.5
            silence_ms = _SEMANTIC_SILENCE_MS.get(str(td.get("eagerness", "auto")), 600)
        else:
            threshold = float(td.get("threshold", 0.5))
            silence_ms = int(td.get("silence_duration_ms", 500))
        if self.vad is None:
            self.vad = EnergyVad(threshold, silence_ms, self.settings, self.timeline_samples)
        else:
            self.vad.configure(threshold, silence_ms)

    # --- sending ------------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        event = {"type": event["type"], "event_id": _new_id("event"), **event}
        self.server.log.add(self.connection_id, "out", event)
        await self.ws.send(json.dumps(event, separators=(",", ":")))

    async def send_error(
        self,
        code: str | None,
        message: str,
        param: str | None = None,
        client_event_id: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        await self.send(_error_event(code, message, param, client_event_id, error_type))

    # --- receiving ----------------------------------------------------------------------

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": self.session})
        limit_task = asyncio.create_task(self._session_limit())
        try:
            async for message in self.ws:
                try:
                    await self.handle(message)
                except ConnectionClosed:
                    raise
                except Exception:  # a bug here must not kill the session
                    log.exception("local server: failed to handle a client event")
                    await self.send_error(
                        None,
                        "The server had an error while processing your request.",
                        error_type="server_error",
                    )
        except ConnectionClosed:
            pass
        finally:
            limit_task.cancel()
            if self.active is not None and self.active.task is not None:
                self.active.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await self.active.task
            with contextlib.suppress(asyncio.CancelledError):
                await limit_task

    async def _session_limit(self) -> None:
        await asyncio.sleep(self.settings.session_limit_s)
        minutes = self.settings.session_limit_s / 60
        with contextlib.suppress(ConnectionClosed):
            await self.send_error(
                "session_expired",
                f"Your session hit the maximum duration of {minutes:g} minutes.",
            )
            await self.ws.close(1000, "session_expired")

    async def handle(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except (ValueError, TypeError):
            await self.send_error("invalid_json", "The event is not valid JSON.")
            return
        if not isinstance(event, dict):
            await self.send_error("invalid_json", "The event must be a JSON object.")
            return
        self.server.log.add(self.connection_id, "in", event)
        event_type = event.get("type")
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = self._handlers().get(event_type) if isinstance(event_type, str) else None
        if handler is None:
            await self.send_error(
                "invalid_value",
                f"Invalid value: '{event_type}'. Supported values are: "
                + ", ".join(f"'{t}'" for t in self._handlers()),
                param="type",
                client_event_id=event_id,
            )
            return
        await handler(event, event_id)

    def _handlers(self) -> dict[str, Callable[[dict[str, Any], str | None], Any]]:
        return {
            "session.update": self.on_session_update,
            "input_audio_buffer.append": self.on_append,
            "input_audio_buffer.commit": self.on_commit,
            "input_audio_buffer.clear": self.on_clear,
            "response.create": self.on_response_create,
            "response.cancel": self.on_response_cancel,
            "conversation.item.truncate": self.on_truncate,
        }

    async def on_session_update(self, event: dict[str, Any], event_id: str | None) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            await self.send_error(
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                "session",
                event_id,
            )
            return
        if update.get("type") != "realtime":
            await self.send_error(
                "missing_required_parameter",
                "Missing required parameter: 'session.type'.",
                "session.type",
                event_id,
            )
            return
        audio = update.get("audio") if isinstance(update.get("audio"), dict) else {}
        for direction in ("input", "output"):
            fmt = (audio.get(direction) or {}).get("format")
            if isinstance(fmt, dict) and (
                fmt.get("type", "audio/pcm") != "audio/pcm"
                or fmt.get("rate", SAMPLE_RATE_HZ) != SAMPLE_RATE_HZ
            ):
                await self.send_error(
                    "invalid_value",
                    f"The local server only speaks audio/pcm at {SAMPLE_RATE_HZ} Hz.",
                    f"session.audio.{direction}.format",
                    event_id,
                )
                return
        td = (audio.get("input") or {}).get("turn_detection", "absent")
        if td not in ("absent", None) and (
            not isinstance(td, dict) or td.get("type") not in ("server_vad", "semantic_vad")
        ):
            await self.send_error(
                "invalid_value",
                "Invalid value for turn_detection.type; expected server_vad or semantic_vad.",
                "session.audio.input.turn_detection.type",
                event_id,
            )
            return
        self.session = _deep_merge(self.session, update)
        self._configure_vad()
        await self.send({"type": "session.updated", "session": self.session})

    async def on_append(self, event: dict[str, Any], event_id: str | None) -> None:
        audio = event.get("audio")
        pcm = decode_audio(audio)
        pcm = pcm[: len(pcm) - len(pcm) % BYTES_PER_SAMPLE]  # whole samples only
        if not pcm and audio:
            await self.send_error(
                "invalid_value",
                "Invalid 'audio'. Expected base64-encoded audio bytes (mono PCM16 at 24kHz).",
                "audio",
                event_id,
            )
            return
        self.buffer += pcm
        self.timeline_samples += len(pcm) // BYTES_PER_SAMPLE
        if self.vad is None:
            return
        for vad_event in self.vad.feed(pcm):
            if vad_event.kind == "start":
                await self._speech_started(vad_event)
            else:
                await self._speech_stopped(vad_event)
        if not self.vad.speaking:
            self._trim_idle_buffer()

    def _trim_idle_buffer(self) -> None:
        # Between turns only the last prefix padding (plus slack for the frames a start
        # needs) can become part of the next item; keep memory flat on a silent line.
        keep = self.prefix_samples + ms_to_samples(1000)
        excess = len(self.buffer) // BYTES_PER_SAMPLE - keep
        if excess > 0:
            del self.buffer[: excess * BYTES_PER_SAMPLE]
            self.buffer_start_samples += excess

    def _slice(self, start_samples: int, end_samples: int) -> bytes:
        a = max(0, start_samples - self.buffer_start_samples) * BYTES_PER_SAMPLE
        b = max(0, end_samples - self.buffer_start_samples) * BYTES_PER_SAMPLE
        return bytes(self.buffer[a:b])

    async def _speech_started(self, vad_event: VadEvent) -> None:
        start = max(self.buffer_start_samples, vad_event.speech_start_samples - self.prefix_samples)
        self.speech_item_id = _new_id("item")
        self.speech_audio_start_samples = start
        await self.send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": samples_to_ms(start),
                "item_id": self.speech_item_id,
            }
        )
        if self.active is not None and self._td_flag("interrupt_response"):
            await self.cancel_active("turn_detected")

    async def _speech_stopped(self, vad_event: VadEvent) -> None:
        item_id = self.speech_item_id or _new_id("item")
        self.speech_item_id = None
        start = self.speech_audio_start_samples
        await self.send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": samples_to_ms(vad_event.stop_samples),
                "item_id": item_id,
            }
        )
        committed = self._slice(start, vad_event.stop_samples)
        reply = self._slice(start, vad_event.speech_end_samples)
        consumed = max(0, vad_event.stop_samples - self.buffer_start_samples)
        del self.buffer[: consumed * BYTES_PER_SAMPLE]
        self.buffer_start_samples += consumed
        await self._commit_item(item_id, committed, reply)
        if self._td_flag("create_response") and self.active is None:
            await self._start_response()

    async def _commit_item(self, item_id: str, committed: bytes, reply: bytes) -> None:
        previous = self.last_item_id
        item = _Item(
            id=item_id,
            role="user",
            reply_pcm=reply,
            user_audio_samples=len(committed) // BYTES_PER_SAMPLE,
        )
        self.items[item_id] = item
        self.last_item_id = item_id
        if self.pending is not None:
            self.pending.reply_pcm = b""  # superseded unanswered turn: nothing will use it
        self.pending = item
        await self.send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        wire_item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self.send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": wire_item}
        )
        await self.send(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": wire_item}
        )
        transcription = self.session["audio"]["input"].get("transcription")
        if isinstance(transcription, dict) and transcription.get("model"):
            seconds = item.user_audio_samples / SAMPLE_RATE_HZ
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": f"(parrot heard {seconds:.1f} s of audio)",
                    "usage": {"type": "duration", "seconds": round(seconds, 3)},
                }
            )

    async def on_commit(self, event: dict[str, Any], event_id: str | None) -> None:
        buffered = len(self.buffer) // BYTES_PER_SAMPLE
        speaking = self.vad is not None and self.vad.speaking
        start = self.speech_audio_start_samples if speaking else self.buffer_start_samples
        audio = self._slice(start, self.timeline_samples)
        have_ms = len(audio) / BYTES_PER_SAMPLE * 1000 / SAMPLE_RATE_HZ
        if have_ms < self.settings.commit_min_ms:
            await self.send_error(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{self.settings.commit_min_ms}ms of audio, but buffer only has "
                f"{have_ms:.2f}ms of audio.",
                None,
                event_id,
            )
            return
        item_id = self.speech_item_id or _new_id("item")
        self.speech_item_id = None
        del self.buffer[: buffered * BYTES_PER_SAMPLE]
        self.buffer_start_samples = self.timeline_samples
        if self.vad is not None:
            self.vad.reset_turn()
        await self._commit_item(item_id, audio, audio)

    async def on_clear(self, event: dict[str, Any], event_id: str | None) -> None:
        self.buffer.clear()
        self.buffer_start_samples = self.timeline_samples
        self.speech_item_id = None
        if self.vad is not None:
            self.vad.reset_turn()
        await self.send({"type": "input_audio_buffer.cleared"})

    # --- responses ----------------------------------------------------------------------

    async def on_response_create(self, event: dict[str, Any], event_id: str | None) -> None:
        if self.active is not None:
            await self.send_error(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
                None,
                event_id,
            )
            return
        await self._start_response()

    async def _start_response(self) -> None:
        pending = self.pending
        if pending is not None and pending.reply_pcm:
            pcm = pending.reply_pcm
            seconds = len(pcm) / BYTES_PER_SAMPLE / SAMPLE_RATE_HZ
            transcript = f"(parrot) {seconds:.1f} s of audio"
            input_samples = pending.user_audio_samples
            pending.reply_pcm = b""  # answered audio is not needed again
        else:
            pcm = _tone_pcm(self.settings.reply_tone_ms, self.settings.reply_tone_hz)
            transcript = "(parrot) nothing to repeat: a tone"
            input_samples = 0
        self.pending = None
        item = _Item(id=_new_id("item"), role="assistant")
        run = _Run(_new_id("resp"), item, pcm, transcript, input_samples)
        self.active = run
        await self._send_response_start(run)
        run.task = asyncio.create_task(self._stream(run))

    async def _send_response_start(self, run: _Run) -> None:
        previous = self.last_item_id
        self.items[run.item.id] = run.item
        self.last_item_id = run.item.id
        await self.send(
            {
                "type": "response.created",
                "response": {
                    "object": "realtime.response",
                    "id": run.id,
                    "status": "in_progress",
                    "status_details": None,
                    "output": [],
                    "conversation_id": "conv_local",
                    "output_modalities": ["audio"],
                    "audio": {"output": self.session["audio"]["output"]},
                    "usage": None,
                },
            }
        )
        item = self._wire_item(run, "in_progress")
        await self.send(
            {
                "type": "response.output_item.added",
                "response_id": run.id,
                "output_index": 0,
                "item": item,
            }
        )
        await self.send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        await self.send(
            {
                "type": "response.content_part.added",
                "response_id": run.id,
                "item_id": run.item.id,
                "output_index": 0,
                "content_index": 0,
                "part": {"type": "audio", "transcript": ""},
            }
        )

    def _wire_item(self, run: _Run, status: str) -> dict[str, Any]:
        content = (
            []
            if status == "in_progress"
            else [{"type": "output_audio", "transcript": run.transcript}]
        )
        return {
            "id": run.item.id,
            "object": "realtime.item",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    async def _stream(self, run: _Run) -> None:
        """Send the answer in `output_chunk_ms` chunks, never ahead of real time.

        Chunk i leaves at t0 + i * chunk duration (divided by `output_speed`): the client
        holds at most one chunk more than it has played, as with a paced service. The
        wait doubles as the cancellation point, so a cancel is acted on within
        microseconds, never mid-chunk.
        """
        loop = asyncio.get_running_loop()
        chunk_samples = ms_to_samples(self.settings.output_chunk_ms)
        chunk_s = self.settings.output_chunk_ms / 1000 / self.settings.output_speed
        n_samples = len(run.pcm) // BYTES_PER_SAMPLE
        t0 = loop.time()
        try:
            for index, offset in enumerate(range(0, n_samples, chunk_samples)):
                if index:
                    delay = t0 + index * chunk_s - loop.time()
                    if delay > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(run.cancel_event.wait(), delay)
                if run.cancel_reason is not None:
                    break
                piece = run.pcm[
                    offset * BYTES_PER_SAMPLE : (offset + chunk_samples) * BYTES_PER_SAMPLE
                ]
                run.item.sent_samples += len(piece) // BYTES_PER_SAMPLE
                await self.send(
                    {
                        "type": "response.output_audio.delta",
                        "response_id": run.id,
                        "item_id": run.item.id,
                        "output_index": 0,
                        "content_index": 0,
                        "delta": encode_audio(piece),
                    }
                )
                if index == 0:
                    await self.send(
                        {
                            "type": "response.output_audio_transcript.delta",
                            "response_id": run.id,
                            "item_id": run.item.id,
                            "output_index": 0,
                            "content_index": 0,
                            "delta": run.transcript,
                        }
                    )
            # No await between this check and the decision: a cancel either lands before
            # it (cancelled) or finds the response completing (too late to cancel).
            if run.cancel_reason is not None:
                await self._finish_cancelled(run)
            else:
                await self._finish_completed(run)
        except ConnectionClosed:
            pass  # the client is gone; the session's receive loop is ending too
        finally:
            if self.active is run:
                self.active = None

    def _ids(self, run: _Run) -> dict[str, Any]:
        return {
            "response_id": run.id,
            "item_id": run.item.id,
            "output_index": 0,
            "content_index": 0,
        }

    async def _finish_completed(self, run: _Run) -> None:
        run.status = "completed"
        await self.send(
            {
                "type": "response.output_audio_transcript.done",
                **self._ids(run),
                "transcript": run.transcript,
            }
        )
        await self.send({"type": "response.output_audio.done", **self._ids(run)})
        await self.send(
            {
                "type": "response.content_part.done",
                **self._ids(run),
                "part": {"type": "audio", "transcript": run.transcript},
            }
        )
        item = self._wire_item(run, "completed")
        await self.send(
            {
                "type": "response.output_item.done",
                "response_id": run.id,
                "output_index": 0,
                "item": item,
            }
        )
        await self.send({"type": "conversation.item.done", "item": item})
        await self._send_response_done(run, "completed", None)

    async def _finish_cancelled(self, run: _Run) -> None:
        run.status = "cancelled"
        item = self._wire_item(run, "incomplete")
        await self.send(
            {
                "type": "response.output_item.done",
                "response_id": run.id,
                "output_index": 0,
                "item": item,
            }
        )
        await self._send_response_done(
            run, "cancelled", {"type": "cancelled", "reason": run.cancel_reason}
        )

    async def _send_response_done(
        self, run: _Run, status: str, status_details: dict[str, Any] | None
    ) -> None:
        # Made-up but plausible token counts: 10 audio tokens per second each way.
        in_audio = math.ceil(run.input_audio_samples / SAMPLE_RATE_HZ * 10)
        out_audio = math.ceil(run.item.sent_samples / SAMPLE_RATE_HZ * 10)
        out_text = max(1, len(run.transcript) // 4)
        await self.send(
            {
                "type": "response.done",
                "response": {
                    "object": "realtime.response",
                    "id": run.id,
                    "status": status,
                    "status_details": status_details,
                    "output": [
                        self._wire_item(run, "completed" if status == "completed" else "incomplete")
                    ],
                    "conversation_id": "conv_local",
                    "output_modalities": ["audio"],
                    "usage": {
                        "total_tokens": in_audio + out_audio + out_text,
                        "input_tokens": in_audio,
                        "output_tokens": out_audio + out_text,
                        "input_token_details": {
                            "text_tokens": 0,
                            "audio_tokens": in_audio,
                            "cached_tokens": 0,
                        },
                        "output_token_details": {
                            "text_tokens": out_text,
                            "audio_tokens": out_audio,
                        },
                    },
                },
            }
        )

    async def cancel_active(self, reason: str) -> bool:
        """Cancel the running response; True if it ended as cancelled."""
        run = self.active
        if run is None or run.task is None:
            return False
        run.cancel_reason = reason
        run.cancel_event.set()
        with contextlib.suppress(ConnectionClosed):
            await run.task
        return run.status == "cancelled"

    async def on_response_cancel(self, event: dict[str, Any], event_id: str | None) -> None:
        if not await self.cancel_active("client_cancelled"):
            await self.send_error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                None,
                event_id,
            )

    async def on_truncate(self, event: dict[str, Any], event_id: str | None) -> None:
        """Check and record a truncation as the service does.

        The item's audio is what was sent for it (cut by earlier truncations); a point
        beyond that is rejected with the service's "already shorter" error. Truncating
        an item whose answer is still streaming does not stop the stream (the client is
        expected to cancel first); later chunks do not lengthen the truncated item.
        """
        item_id = event.get("item_id")
        audio_end_ms = event.get("audio_end_ms")
        content_index = event.get("content_index", 0)
        item = self.items.get(item_id) if isinstance(item_id, str) else None

        async def reject(code: str, message: str, param: str, item_ms: int | None = None) -> None:
            self.server.log.add_truncation(
                TruncationRecord(
                    self.connection_id,
                    str(item_id),
                    int(audio_end_ms) if isinstance(audio_end_ms, int) else -1,
                    accepted=False,
                    error_code=code,
                    item_audio_ms=item_ms,
                )
            )
            await self.send_error(code, message, param, event_id)

        if not isinstance(audio_end_ms, int) or isinstance(audio_end_ms, bool) or audio_end_ms < 0:
            await reject(
                "invalid_value", "Invalid 'audio_end_ms': expected an integer >= 0.", "audio_end_ms"
            )
            return
        if item is None:
            await reject(
                "invalid_value",
                f"Conversation item with item_id '{item_id}' does not exist.",
                "item_id",
            )
            return
        if content_index != 0:
            await reject(
                "invalid_value", "Invalid 'content_index': only 0 exists.", "content_index"
            )
            return
        if item.role != "assistant" or item.sent_samples == 0:
            await reject(
                "unsupported_content_type",
                "Only model output audio messages can be truncated",
                "item_id",
            )
            return
        # Exact comparison in samples, so a point derived from received audio always fits.
        item_ms = samples_to_ms(item.audio_samples)
        if ms_to_samples(audio_end_ms) > item.audio_samples:
            await reject(
                "invalid_value",
                f"Audio content of {item_ms}ms is already shorter than {audio_end_ms}ms",
                "audio_end_ms",
                item_ms,
            )
            return
        item.truncated_at_samples = ms_to_samples(audio_end_ms)
        self.server.log.add_truncation(
            TruncationRecord(
                self.connection_id, item.id, audio_end_ms, accepted=True, item_audio_ms=item_ms
            )
        )
        await self.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item.id,
                "content_index": 0,
                "audio_end_ms": audio_end_ms,
            }
        )


def _tone_pcm(duration_ms: int, freq_hz: float) -> bytes:
    """A -20 dBFS sine with 10 ms fades: the answer when there is nothing to repeat."""
    n = ms_to_samples(duration_ms)
    t = np.arange(n) / SAMPLE_RATE_HZ
    tone = 0.1 * np.sin(2 * np.pi * freq_hz * t)
    fade = min(n // 2, ms_to_samples(10))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        tone[:fade] *= ramp
        tone[n - fade :] *= ramp[::-1]
    return (tone * 32767).astype("<i2").tobytes()


# --- the server ------------------------------------------------------------------------------


class LocalRealtimeServer:
    """The parrot Realtime server on an asyncio loop.

    `async with LocalRealtimeServer() as srv:` listens on 127.0.0.1 (port 0 picks a
    free one) and exposes `srv.port`, `srv.base_url` and `srv.url`. `log` records what
    happened; `drop_connections()` simulates a network drop for reconnect tests.
    """

    def __init__(self, settings: LocalServerSettings = LocalServerSettings()) -> None:
        self.settings = settings
        self.log = ServerLog(settings.log_max_entries)
        self._server: Server | None = None
        self._sessions: dict[int, _Session] = {}
        self._next_connection_id = 1
        self._stopped: asyncio.Event | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving; a taken port is a UserError."""
        if self._server is not None:
            return
        self._stopped = asyncio.Event()
        try:
            self._server = await serve(
                self._handle,
                self.settings.host,
                self.settings.port,
                process_request=self._process_request,
                compression=None,
                max_size=self.settings.max_message_bytes,
                logger=logging.getLogger(f"{__name__}.ws"),
            )
        except OSError as exc:
            where = f"{self.settings.host}:{self.settings.port}"
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"failed: {exc}"
            raise UserError(
                f"cannot listen on {where}: the address {reason}",
                hint="pick another port with --port, or 0 for a free one",
            ) from exc
        log.info("local realtime server listening on %s", self.base_url)

    async def stop(self) -> None:
        """Close all connections (1001) and stop listening."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        if self._stopped is not None:
            self._stopped.set()

    async def __aenter__(self) -> LocalRealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Serve until `stop()` is called or the task is cancelled."""
        await self.start()
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    # --- addresses ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when configured with port 0)."""
        if self._server is None:
            raise RuntimeError("the local server is not running")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        """`ws://host:port/v1/realtime`, for `events.realtime_url(model, base_url)`."""
        return f"ws://{self.settings.host}:{self.port}{REALTIME_PATH}"

    @property
    def url(self) -> str:
        """The URL with the default model, as a client would be configured."""
        return f"{self.base_url}?model={DEFAULT_MODEL}"

    @property
    def connection_count(self) -> int:
        """Open WebSocket sessions."""
        return len(self._sessions)

    # --- test hooks ------------------------------------------------------------------------

    async def drop_connections(self, abrupt: bool = True) -> int:
        """Cut every client off; returns how many.

        `abrupt` aborts the TCP connection without a close frame, as a network drop
        does (the client sees 1006); otherwise closes with 1011, as a service restart.
        """
        sessions = list(self._sessions.values())
        for session in sessions:
            if abrupt:
                session.ws.transport.abort()
            else:
                await session.ws.close(1011, "dropped by the local server")
        return len(sessions)

    # --- handshake and connections ------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        split = urlsplit(request.path)
        model = (parse_qs(split.query).get("model") or [None])[0]
        connection_id = self._next_connection_id
        self._next_connection_id += 1
        connection.pv_connection_id = connection_id  # type: ignore[attr-defined]
        headers = redact({k: v for k, v in request.headers.raw_items()})

        def record(
            outcome: Literal["accepted", "unauthorized", "not_found", "beta_rejected"],
        ) -> None:
            self.log.add_connection(
                ConnectionRecord(connection_id, split.path, model, outcome, headers)
            )

        if split.path.rstrip("/") != REALTIME_PATH:
            record("not_found")
            return _json_response(
                connection,
                http.HTTPStatus.NOT_FOUND,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "unknown_url",
                        "message": f"Unknown request URL: GET {split.path}.",
                        "param": None,
                    }
                },
            )
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            record("unauthorized")
            return _json_response(
                connection,
                http.HTTPStatus.UNAUTHORIZED,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": None,
                        "message": "You didn't provide an API key. You need to provide your API "
                        "key in an Authorization header using Bearer auth (i.e. Authorization: "
                        "Bearer YOUR_KEY).",
                        "param": None,
                    }
                },
            )
        beta = request.headers.get("OpenAI-Beta", "")
        record("beta_rejected" if "realtime=v1" in beta.replace(" ", "") else "accepted")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        connection_id: int = getattr(ws, "pv_connection_id", 0)
        request = ws.request
        assert request is not None
        beta = request.headers.get("OpenAI-Beta", "").replace(" ", "")
        if "realtime=v1" in beta:
            with contextlib.suppress(ConnectionClosed):
                event = _error_event(
                    "beta_api_shape_disabled",
                    "The Realtime Beta API is no longer supported. Please use /v1/realtime "
                    "for the GA API.",
                )
                event["event_id"] = _new_id("event")
                self.log.add(connection_id, "out", event)
                await ws.send(json.dumps(event))
                await ws.close(BETA_CLOSE_CODE, BETA_CLOSE_REASON)
            return
        model = (parse_qs(urlsplit(request.path).query).get("model") or [DEFAULT_MODEL])[0]
        session = _Session(self, ws, connection_id, model)
        self._sessions[connection_id] = session
        try:
            await session.run()
        finally:
            self._sessions.pop(connection_id, None)


def _json_response(
    connection: ServerConnection, status: http.HTTPStatus, body: dict[str, Any]
) -> Response:
    response = connection.respond(status, json.dumps(body) + "\n")
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


# --- running outside a test's event loop -------------------------------------------------------


class LocalServerThread:
    """The local server on its own event loop in a daemon thread.

    For `run --local`, where the voice loop owns the main thread's loop, and for tests
    that drive a client synchronously. `start()` returns once the port is bound.
    """

    def __init__(self, settings: LocalServerSettings = LocalServerSettings()) -> None:
        self.server = LocalRealtimeServer(settings)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 10.0) -> str:
        """Start serving; returns the URL. Raises what binding raised (e.g. UserError)."""
        if self._thread is not None:
            return self.server.url
        self._thread = threading.Thread(target=self._run, name="pv-local-realtime", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("the local realtime server did not start in time")
        if self._error is not None:
            self._thread.join(timeout_s)
            self._thread = None
            raise self._error
        return self.server.url

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            try:
                await self.server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            await self.server.serve_forever()

        asyncio.run(main())

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self.server.stop(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout_s)
        thread.join(timeout_s)
        self._thread = None

    def drop_connections(self, abrupt: bool = True, timeout_s: float = 5.0) -> int:
        """`LocalRealtimeServer.drop_connections` from another thread."""
        if self._loop is None:
            return 0
        future = asyncio.run_coroutine_threadsafe(self.server.drop_connections(abrupt), self._loop)
        return future.result(timeout_s)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def port(self) -> int:
        return self.server.port

    def __enter__(self) -> LocalServerThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_forever(
    settings: LocalServerSettings = LocalServerSettings(),
    on_ready: Callable[[LocalRealtimeServer], None] | None = None,
) -> None:
    """Run the local server in the foreground until interrupted (Ctrl-C).

    `on_ready` is called once the port is bound, e.g. to print the URL.
    """

    async def main() -> None:
        server = LocalRealtimeServer(settings)
        await server.start()
        if on_ready is not None:
            on_ready(server)
        await server.serve_forever()

    asyncio.run(main())
