"""The OpenAI Realtime wire format: client events out, server events in, audio units.

Everything here is a pure function over dicts so the protocol can be tested without a
socket, and so the real client, the local stand-in server and the tests all build and read
events through one place (what a server sends is built in `server_events`). The shapes
are those of the GA interface (`gpt-realtime`, no `OpenAI-Beta` header). The beta
interface used other names for a few server events; `parse_server_event` maps them to
the GA names so the rest of the code handles one vocabulary, and keeps the name that
came over the wire for traces.

Audio on the wire is 24 kHz mono PCM16 little-endian, base64 in JSON. Durations are
carried as sample counts (at `SAMPLE_RATE_HZ`) wherever arithmetic happens, because the
server measures `audio_end_ms` against the samples it produced; milliseconds only appear
at the protocol boundary.

A little over 500 lines because the session configuration, the client events and the
parser share the protocol's constants and are read together when the protocol changes;
the field checks of server events live apart in `event_checks`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from pivoicectl.errors import UserError
from pivoicectl.realtime.protocol.event_checks import (  # noqa: F401 (MAX_*: the limits)
    COMMON_CHECKS,
    MAX_COUNT,
    MAX_ID_CHARS,
    MAX_INDEX,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    VALIDATED_EVENTS,
    check_field,
)

SAMPLE_RATE_HZ = 24_000
"""The only PCM rate the GA interface accepts for `audio/pcm`, in and out."""
BYTES_PER_SAMPLE = 2
"""PCM16 mono: one sample is two bytes."""

DEFAULT_MODEL = "gpt-realtime"
DEFAULT_BASE_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_VOICE = "marin"
SESSION_MAX_S = 60 * 60
"""The service ends every session after 60 minutes."""

TurnDetection = Literal["server_vad", "semantic_vad", "none"]
NoiseReduction = Literal["far_field", "near_field"]
SemanticEagerness = Literal["low", "medium", "high", "auto"]

_TURN_DETECTIONS = ("server_vad", "semantic_vad", "none")
_NOISE_REDUCTIONS = ("far_field", "near_field")
_EAGERNESS = ("low", "medium", "high", "auto")


# --- units -------------------------------------------------------------------------------


def bytes_to_samples(n_bytes: int) -> int:
    """Whole PCM16 samples in `n_bytes` (a trailing odd byte is not a sample)."""
    return n_bytes // BYTES_PER_SAMPLE


def samples_to_ms(n_samples: int) -> int:
    """Milliseconds of audio in `n_samples`, rounded DOWN.

    Rounding down matters: `conversation.item.truncate` is rejected when `audio_end_ms`
    exceeds the item's audio, so a duration derived from samples must never round up.
    """
    return (n_samples * 1000) // SAMPLE_RATE_HZ


def ms_to_samples(ms: float) -> int:
    """Samples in `ms` milliseconds at 24 kHz, rounded down."""
    return int(ms * SAMPLE_RATE_HZ // 1000)


# --- connection ----------------------------------------------------------------------------


def realtime_url(model: str = DEFAULT_MODEL, base_url: str = DEFAULT_BASE_URL) -> str:
    """The WebSocket URL for `model`; `base_url` points at the local server in tests."""
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}{urlencode({'model': model})}"


# --- session configuration -----------------------------------------------------------------


@dataclass(frozen=True)
class SessionConfig:
    """What `session.update` asks of the service, with units in the field names.

    Frozen because one value describes one session; a changed setting means a new
    `session.update` built from a new value (`dataclasses.replace`).
    `turn_detection="none"` is push-to-talk: the client commits the input buffer and
    asks for a response itself.
    """

    instructions: str = "You are a helpful voice assistant. Answer briefly."
    voice: str = DEFAULT_VOICE
    turn_detection: TurnDetection = "server_vad"
    vad_threshold: float = 0.5
    vad_prefix_padding_ms: int = 300
    vad_silence_duration_ms: int = 500
    semantic_eagerness: SemanticEagerness = "auto"
    create_response: bool = True
    interrupt_response: bool = True
    transcription_model: str | None = None
    noise_reduction: NoiseReduction | None = None
    tools: tuple[dict[str, Any], ...] = ()
    """`session.tools` entries: function tools the client runs, MCP tools the service
    reaches. Empty: the key is left out, as before tools existed."""
    tool_choice: str = "auto"

    def __post_init__(self) -> None:
        # Settings come from CLI flags and config files, so a bad one is the user's to fix.
        if self.turn_detection not in _TURN_DETECTIONS:
            raise UserError(
                f"unknown turn detection {self.turn_detection!r}",
                hint="use one of: " + ", ".join(_TURN_DETECTIONS),
            )
        if self.noise_reduction is not None and self.noise_reduction not in _NOISE_REDUCTIONS:
            raise UserError(
                f"unknown noise reduction {self.noise_reduction!r}",
                hint="use far_field, near_field or none",
            )
        if self.semantic_eagerness not in _EAGERNESS:
            raise UserError(
                f"unknown semantic VAD eagerness {self.semantic_eagerness!r}",
                hint="use one of: " + ", ".join(_EAGERNESS),
            )
        if not 0.0 <= self.vad_threshold <= 1.0:
            raise UserError(
                f"VAD threshold {self.vad_threshold} is outside 0..1",
                hint="0.5 is the service default; raise it in noisy rooms",
            )
        if self.vad_prefix_padding_ms < 0 or self.vad_silence_duration_ms <= 0:
            raise UserError(
                "VAD prefix padding must be >= 0 ms and silence duration > 0 ms",
                hint="the service defaults are 300 ms and 500 ms",
            )
        if not self.voice:
            raise UserError("empty voice name", hint=f"for example {DEFAULT_VOICE!r}")

    def turn_detection_payload(self) -> dict[str, Any] | None:
        """The `audio.input.turn_detection` object, or None for push-to-talk."""
        if self.turn_detection == "none":
            return None
        if self.turn_detection == "semantic_vad":
            return {
                "type": "semantic_vad",
                "eagerness": self.semantic_eagerness,
                "create_response": self.create_response,
                "interrupt_response": self.interrupt_response,
            }
        return {
            "type": "server_vad",
            "threshold": self.vad_threshold,
            "prefix_padding_ms": self.vad_prefix_padding_ms,
            "silence_duration_ms": self.vad_silence_duration_ms,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }

    def session_payload(self) -> dict[str, Any]:
        """The `session` object of `session.update` (GA shape)."""
        pcm = {"type": "audio/pcm", "rate": SAMPLE_RATE_HZ}
        return {
            "type": "realtime",
            "instructions": self.instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": dict(pcm),
                    "noise_reduction": (
                        {"type": self.noise_reduction} if self.noise_reduction else None
                    ),
                    "transcription": (
                        {"model": self.transcription_model} if self.transcription_model else None
                    ),
                    "turn_detection": self.turn_detection_payload(),
                },
                "output": {"format": dict(pcm), "voice": self.voice},
            },
            **({"tools": list(self.tools), "tool_choice": self.tool_choice} if self.tools else {}),
        }


# --- client events -------------------------------------------------------------------------


class EventIds:
    """Numbered client `event_id`s, so an `error` event names the request that caused it.

    Counting rather than random ids keeps traces readable and tests deterministic.
    """

    def __init__(self, prefix: str = "evt_pv_") -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)

    def next(self) -> str:
        """The next id, e.g. `evt_pv_000042`."""
        return f"{self._prefix}{next(self._counter):06d}"


def _event(event_type: str, event_id: str | None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": event_type}
    if event_id is not None:
        event["event_id"] = event_id
    event.update(fields)
    return event


def session_update(config: SessionConfig, event_id: str | None = None) -> dict[str, Any]:
    """`session.update` carrying the whole session configuration."""
    return _event("session.update", event_id, session=config.session_payload())


def input_audio_append(pcm: bytes, event_id: str | None = None) -> dict[str, Any]:
    """`input_audio_buffer.append` with 24 kHz PCM16 mono bytes."""
    return _event("input_audio_buffer.append", event_id, audio=encode_audio(pcm))


def input_audio_append_text(pcm: bytes) -> str:
    """`dumps(input_audio_append(pcm))`, built as text: the mic's one event sent several
    times a second. Base64 needs no JSON escaping, so this skips json's scan of the
    whole payload (about 40 µs of a send's 400 on the development VM)."""
    return '{"type":"input_audio_buffer.append","audio":"' + encode_audio(pcm) + '"}'


def input_audio_commit(event_id: str | None = None) -> dict[str, Any]:
    """`input_audio_buffer.commit`: end the user turn by hand (push-to-talk)."""
    return _event("input_audio_buffer.commit", event_id)


def input_audio_clear(event_id: str | None = None) -> dict[str, Any]:
    """`input_audio_buffer.clear`: forget uncommitted input audio."""
    return _event("input_audio_buffer.clear", event_id)


def response_create(event_id: str | None = None, instructions: str | None = None) -> dict[str, Any]:
    """`response.create`, optionally with per-response instructions."""
    if instructions is None:
        return _event("response.create", event_id)
    return _event("response.create", event_id, response={"instructions": instructions})


def response_cancel(event_id: str | None = None, response_id: str | None = None) -> dict[str, Any]:
    """`response.cancel`. With nothing running the service answers with the harmless error
    `response_cancel_not_active`, so callers may send it without tracking state exactly.
    """
    if response_id is None:
        return _event("response.cancel", event_id)
    return _event("response.cancel", event_id, response_id=response_id)


def conversation_item_truncate(
    item_id: str, audio_end_ms: int, event_id: str | None = None, content_index: int = 0
) -> dict[str, Any]:
    """`conversation.item.truncate` for an assistant audio item.

    `audio_end_ms` must not exceed the item's audio (the service rejects it); compute it
    with `pivoicectl.realtime.session.playback`, which clamps to the audio actually received.
    """
    if audio_end_ms < 0:
        raise ValueError(f"audio_end_ms must be >= 0, got {audio_end_ms}")
    return _event(
        "conversation.item.truncate",
        event_id,
        item_id=item_id,
        content_index=content_index,
        audio_end_ms=int(audio_end_ms),
    )


def function_call_output(call_id: str, output: str, event_id: str | None = None) -> dict[str, Any]:
    """`conversation.item.create` carrying a tool's result; the model continues only
    after a `response.create`."""
    item = {"type": "function_call_output", "call_id": call_id, "output": output}
    return _event("conversation.item.create", event_id, item=item)


def mcp_approval_response(
    approval_request_id: str,
    approve: bool,
    item_id: str,
    event_id: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """`conversation.item.create` answering an MCP server's approval request (a server
    the service reaches). `item_id` names the new item: the service wants one the
    client chose (at most 32 characters)."""
    item: dict[str, Any] = {
        "type": "mcp_approval_response",
        "id": item_id,
        "approval_request_id": approval_request_id,
        "approve": approve,
    }
    if reason is not None:
        item["reason"] = reason
    return _event("conversation.item.create", event_id, item=item)


def dumps(event: Mapping[str, Any]) -> str:
    """One client event as the compact JSON text frame the service expects."""
    return json.dumps(event, separators=(",", ":"))


# --- server events -------------------------------------------------------------------------

BETA_TO_GA: dict[str, str] = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "conversation.item.created": "conversation.item.added",
}
"""Beta server event names and the GA names they became."""

KNOWN_SERVER_EVENTS = frozenset(
    {
        "error",
        "session.created",
        "session.updated",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "input_audio_buffer.timeout_triggered",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.retrieved",
        "conversation.item.deleted",
        "conversation.item.truncated",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.input_audio_transcription.segment",
        "response.created",
        "response.done",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "mcp_list_tools.failed",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
        "rate_limits.updated",
    }
)
"""GA server event types this package knows by name; others are parsed but flagged."""

INVALID = "invalid"
"""`ServerEvent.type` of a rejected frame: not a JSON object with a string `type`, or an
event the conversation acts on with a field it reads missing or malformed."""
MAX_DEPTH = 32
"""Deepest nesting of objects and arrays accepted in a server event; the deepest the
service sends is about 6. Deeper frames are rejected before anything walks them."""


@dataclass(frozen=True)
class ServerEvent:
    """One server event, with its type normalized to the GA name.

    `type` is what callers dispatch on; `wire_type` is the name as received (differs for
    beta names). Unknown types keep their name with `known=False`. A rejected frame gets
    `type == "invalid"` and says why in `problem`: `parse_server_event` has checked every
    field the conversation reads of the types in `VALIDATED_EVENTS`, so an event of such
    a type that is not rejected can be acted on without further checks, and an
    exception while acting on it is a bug of ours.
    """

    type: str
    wire_type: str
    data: dict[str, Any] = field(default_factory=dict)
    known: bool = True
    problem: str = ""
    audio: bytes | None = field(default=None, repr=False, compare=False)
    """The decoded PCM16 bytes of an audio delta (decoded once, while checking it)."""

    @property
    def event_id(self) -> str | None:
        return _str_or_none(self.data.get("event_id"))

    @property
    def response_id(self) -> str | None:
        """`response_id`, or `response.id` for response.created/done."""
        rid = self.data.get("response_id")
        if rid is None and isinstance(self.data.get("response"), dict):
            rid = self.data["response"].get("id")
        return _str_or_none(rid)

    @property
    def item_id(self) -> str | None:
        """`item_id`, or `item.id` for the item events."""
        iid = self.data.get("item_id")
        if iid is None and isinstance(self.data.get("item"), dict):
            iid = self.data["item"].get("id")
        return _str_or_none(iid)

    @property
    def response_status(self) -> str | None:
        """`response.status` of response.created/done."""
        resp = self.data.get("response")
        return _str_or_none(resp.get("status")) if isinstance(resp, dict) else None

    @property
    def response_status_reason(self) -> str | None:
        """`response.status_details.reason`, e.g. `turn_detected` or `client_cancelled`."""
        resp = self.data.get("response")
        details = resp.get("status_details") if isinstance(resp, dict) else None
        return _str_or_none(details.get("reason")) if isinstance(details, dict) else None

    @property
    def error(self) -> dict[str, Any]:
        """The `error` object of an error event (empty for other events)."""
        err = self.data.get("error")
        return err if isinstance(err, dict) else {}

    @property
    def error_code(self) -> str | None:
        return _str_or_none(self.error.get("code"))

    @property
    def error_message(self) -> str:
        return str(self.error.get("message") or "")

    @property
    def is_audio_delta(self) -> bool:
        return self.type == "response.output_audio.delta"


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _deeper_than(value: Any, limit: int) -> bool:
    """True if `value` nests objects or arrays more than `limit` deep (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_server_event(raw: str | bytes | Mapping[str, Any]) -> ServerEvent:
    """A server frame as a `ServerEvent`; never raises.

    Accepts the text frame, bytes, or an already decoded dict. A frame that is not a
    usable event comes back with `type == INVALID` and the reason in `problem`, for the
    caller to count and trace (see `VALIDATED_EVENTS` for what is checked).
    """
    data: Any
    if isinstance(raw, Mapping):
        data = dict(raw)
    else:
        try:
            # NaN and Infinity are not JSON; Python's parser takes them unless told not to.
            data = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, TypeError) as exc:
            return ServerEvent(INVALID, INVALID, {}, known=False, problem=f"not JSON: {exc}")
        except RecursionError:
            return ServerEvent(INVALID, INVALID, {}, known=False, problem="nested too deeply")
    if not isinstance(data, dict):
        return ServerEvent(INVALID, INVALID, {}, known=False, problem="not a JSON object")
    if _deeper_than(data, MAX_DEPTH):
        return ServerEvent(
            INVALID, INVALID, {}, known=False, problem=f"nested deeper than {MAX_DEPTH}"
        )
    wire_type = data.get("type")
    if not isinstance(wire_type, str) or not wire_type:
        return ServerEvent(INVALID, INVALID, data, known=False, problem="no event type")
    ga_type = BETA_TO_GA.get(wire_type, wire_type)
    checks = VALIDATED_EVENTS.get(ga_type)
    if checks is None:
        return ServerEvent(ga_type, wire_type, data, known=ga_type in KNOWN_SERVER_EVENTS)
    for path, check, required in (*COMMON_CHECKS, *checks):
        problem = check_field(data, path, check, required)
        if problem:
            problem = f"{ga_type}: {problem}"
            return ServerEvent(INVALID, wire_type, data, known=False, problem=problem)
    audio = None
    if ga_type == "response.output_audio.delta":
        try:
            audio = base64.b64decode(data["delta"], validate=True)
        except (binascii.Error, ValueError):
            problem = f"{ga_type}: delta is not base64 audio"
            return ServerEvent(INVALID, wire_type, data, known=False, problem=problem)
    return ServerEvent(ga_type, wire_type, data, audio=audio)


# --- audio ---------------------------------------------------------------------------------


def encode_audio(pcm: bytes) -> str:
    """PCM16 bytes as the base64 text the protocol carries."""
    return base64.b64encode(pcm).decode("ascii")


def decode_audio(b64: Any) -> bytes:
    """Base64 audio as bytes; b"" for anything undecodable.

    All the bytes, an odd count included: the service may split a stream of samples
    between two deltas anywhere, so whoever plays them carries a trailing half sample
    over to the next delta of the same item (dropping it would shift every later sample
    by one byte and turn the rest of the answer into noise).
    """
    if not isinstance(b64, str) or not b64:
        return b""
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return b""


def audio_delta_bytes(event: ServerEvent) -> bytes:
    """The PCM16 bytes of a `response.output_audio.delta` (b"" for any other event)."""
    if not event.is_audio_delta:
        return b""
    if event.audio is not None:
        return event.audio
    return decode_audio(event.data.get("delta"))
