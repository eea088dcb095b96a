"""Server events of the OpenAI Realtime interface, built: what the service sends.

`events` builds what a client sends and parses what a server sends; this module builds
what a server sends, so the stand-in server (`pivoicectl.standin`) and the tests that
feed a client or a conversation hand-made server events use one description of each
shape instead of writing dicts by hand in several places. Every builder returns a plain
dict with the GA event name (`to_beta` renames one to its beta name where the beta
interface used another); `parse_server_event` reads each back as the type it names, a
property the unit tests check for every builder here.

A builder of an event is named after it (`response.output_audio.delta` is
`response_output_audio_delta`); the other builders make the objects events carry
(items, the response, usage, errors). No `event_id`: the sender stamps one on each
event it sends (`stamp`), as the service numbers the events of a connection. Audio is
passed as PCM16 bytes and carried as base64.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pivoicectl.realtime.protocol.events import BETA_TO_GA, SAMPLE_RATE_HZ, encode_audio

GA_TO_BETA: dict[str, str] = {ga: beta for beta, ga in BETA_TO_GA.items()}
"""GA server event names and the beta names they had."""

CONVERSATION_ID = "conv_local"
"""The conversation every response belongs to when the caller names none."""


def stamp(event: Mapping[str, Any], event_id: str) -> dict[str, Any]:
    """`event` with its `event_id`, placed second as the service places it."""
    return {"type": event["type"], "event_id": event_id, **event}


def to_beta(event: Mapping[str, Any]) -> dict[str, Any]:
    """`event` under its beta name (unchanged when the name did not change)."""
    return {**event, "type": GA_TO_BETA.get(event["type"], event["type"])}


# --- errors ----------------------------------------------------------------------------------


def error_object(
    code: str | None,
    message: str,
    param: str | None = None,
    error_type: str = "invalid_request_error",
) -> dict[str, Any]:
    """The `error` object: what went wrong (`code`), in words, and which field (`param`)."""
    return {"type": error_type, "code": code, "message": message, "param": param}


def error(
    code: str | None,
    message: str,
    param: str | None = None,
    client_event_id: str | None = None,
    error_type: str = "invalid_request_error",
) -> dict[str, Any]:
    """`error`; `client_event_id` names the client event that caused it, if one did."""
    return {
        "type": "error",
        "error": {**error_object(code, message, param, error_type), "event_id": client_event_id},
    }


def http_error_body(
    code: str | None,
    message: str,
    param: str | None = None,
    error_type: str = "invalid_request_error",
) -> dict[str, Any]:
    """The JSON body of a refused handshake (HTTP 401, 404): not an event, the same error."""
    return {"error": error_object(code, message, param, error_type)}


# --- session ---------------------------------------------------------------------------------


def session_resource(session_id: str, model: str) -> dict[str, Any]:
    """The session object of a new connection, with the service's defaults (GA shape)."""
    pcm = {"type": "audio/pcm", "rate": SAMPLE_RATE_HZ}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
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


def session_created(session: Mapping[str, Any]) -> dict[str, Any]:
    """`session.created`: the first event of every connection."""
    return {"type": "session.created", "session": dict(session)}


def session_updated(session: Mapping[str, Any]) -> dict[str, Any]:
    """`session.updated`: the whole session after a `session.update` was applied."""
    return {"type": "session.updated", "session": dict(session)}


# --- input audio buffer ------------------------------------------------------------------------


def input_audio_buffer_speech_started(item_id: str, audio_start_ms: int) -> dict[str, Any]:
    """`input_audio_buffer.speech_started`; `audio_start_ms` includes the prefix padding."""
    return {
        "type": "input_audio_buffer.speech_started",
        "audio_start_ms": audio_start_ms,
        "item_id": item_id,
    }


def input_audio_buffer_speech_stopped(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    """`input_audio_buffer.speech_stopped`; `audio_end_ms` includes the silence duration."""
    return {
        "type": "input_audio_buffer.speech_stopped",
        "audio_end_ms": audio_end_ms,
        "item_id": item_id,
    }


def input_audio_buffer_committed(item_id: str, previous_item_id: str | None) -> dict[str, Any]:
    """`input_audio_buffer.committed`: the buffer became the user item `item_id`."""
    return {
        "type": "input_audio_buffer.committed",
        "previous_item_id": previous_item_id,
        "item_id": item_id,
    }


def input_audio_buffer_cleared() -> dict[str, Any]:
    """`input_audio_buffer.cleared`."""
    return {"type": "input_audio_buffer.cleared"}


# --- conversation items ------------------------------------------------------------------------


def user_audio_item(item_id: str, transcript: str | None = None) -> dict[str, Any]:
    """A completed user message holding input audio."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": transcript}],
    }


def assistant_audio_item(item_id: str, status: str, transcript: str | None) -> dict[str, Any]:
    """An assistant message; no content while `transcript` is None (still in progress)."""
    content = [] if transcript is None else [{"type": "output_audio", "transcript": transcript}]
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    """A function call the model makes: the client runs tool `name` with `arguments` (JSON
    text; empty while the call is being announced) and answers with `call_id`."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def function_call_output_item(item_id: str, call_id: str, output: str) -> dict[str, Any]:
    """The result of call `call_id` as the conversation holds it once the client sent it."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call_output",
        "status": "completed",
        "call_id": call_id,
        "output": output,
    }


def conversation_item_added(
    item: Mapping[str, Any], previous_item_id: str | None
) -> dict[str, Any]:
    """`conversation.item.added` (beta: `conversation.item.created`)."""
    return {
        "type": "conversation.item.added",
        "previous_item_id": previous_item_id,
        "item": dict(item),
    }


def conversation_item_done(item: Mapping[str, Any], previous_item_id: str | None) -> dict[str, Any]:
    """`conversation.item.done`: the item will not change any more."""
    return {
        "type": "conversation.item.done",
        "previous_item_id": previous_item_id,
        "item": dict(item),
    }


def conversation_item_input_audio_transcription_completed(
    item_id: str, transcript: str, audio_seconds: float, content_index: int = 0
) -> dict[str, Any]:
    """`conversation.item.input_audio_transcription.completed`, billed by duration."""
    return {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": item_id,
        "content_index": content_index,
        "transcript": transcript,
        "usage": {"type": "duration", "seconds": round(audio_seconds, 3)},
    }


def conversation_item_truncated(
    item_id: str, audio_end_ms: int, content_index: int = 0
) -> dict[str, Any]:
    """`conversation.item.truncated`: the item's audio now ends at `audio_end_ms`."""
    return {
        "type": "conversation.item.truncated",
        "item_id": item_id,
        "content_index": content_index,
        "audio_end_ms": audio_end_ms,
    }


# --- responses ---------------------------------------------------------------------------------


def usage(
    input_audio_tokens: int,
    output_audio_tokens: int,
    output_text_tokens: int,
    input_text_tokens: int = 0,
    cached_tokens: int = 0,
) -> dict[str, Any]:
    """A response's `usage`, totals derived from the parts as the service reports them."""
    input_tokens = input_text_tokens + input_audio_tokens
    output_tokens = output_text_tokens + output_audio_tokens
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_text_tokens,
            "audio_tokens": input_audio_tokens,
            "cached_tokens": cached_tokens,
        },
        "output_token_details": {
            "text_tokens": output_text_tokens,
            "audio_tokens": output_audio_tokens,
        },
    }


def response_resource(
    response_id: str,
    status: str,
    *,
    reason: str | None = None,
    output: Iterable[Mapping[str, Any]] = (),
    output_audio: Mapping[str, Any] | None = None,
    usage: Mapping[str, Any] | None = None,
    conversation_id: str = CONVERSATION_ID,
) -> dict[str, Any]:
    """The response object of `response.created` / `response.done`.

    `reason` fills `status_details` (`{"type": status, "reason": reason}`, e.g. a
    cancelled response's `turn_detected`); `output_audio` is the session's audio output
    configuration, which `response.created` repeats.
    """
    response: dict[str, Any] = {
        "object": "realtime.response",
        "id": response_id,
        "status": status,
        "status_details": None if reason is None else {"type": status, "reason": reason},
        "output": [dict(item) for item in output],
        "conversation_id": conversation_id,
        "output_modalities": ["audio"],
    }
    if output_audio is not None:
        response["audio"] = {"output": dict(output_audio)}
    response["usage"] = None if usage is None else dict(usage)
    return response


def response_created(
    response_id: str, output_audio: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`response.created`: a response in progress, nothing in it yet."""
    response = response_resource(response_id, "in_progress", output_audio=output_audio)
    return {"type": "response.created", "response": response}


def response_done(
    response_id: str,
    status: str = "completed",
    *,
    reason: str | None = None,
    output: Iterable[Mapping[str, Any]] = (),
    usage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`response.done`: how the response ended (`completed`, `cancelled` with a reason...)."""
    response = response_resource(response_id, status, reason=reason, output=output, usage=usage)
    return {"type": "response.done", "response": response}


def response_output_item_added(
    response_id: str, item: Mapping[str, Any], output_index: int = 0
) -> dict[str, Any]:
    """`response.output_item.added`."""
    return {
        "type": "response.output_item.added",
        "response_id": response_id,
        "output_index": output_index,
        "item": dict(item),
    }


def response_output_item_done(
    response_id: str, item: Mapping[str, Any], output_index: int = 0
) -> dict[str, Any]:
    """`response.output_item.done`."""
    return {
        "type": "response.output_item.done",
        "response_id": response_id,
        "output_index": output_index,
        "item": dict(item),
    }


def _content_ids(
    response_id: str, item_id: str, output_index: int, content_index: int
) -> dict[str, Any]:
    return {
        "response_id": response_id,
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
    }


def audio_part(transcript: str) -> dict[str, Any]:
    """An audio content part with its transcript so far."""
    return {"type": "audio", "transcript": transcript}


def response_content_part_added(
    response_id: str,
    item_id: str,
    part: Mapping[str, Any],
    output_index: int = 0,
    content_index: int = 0,
) -> dict[str, Any]:
    """`response.content_part.added`."""
    return {
        "type": "response.content_part.added",
        **_content_ids(response_id, item_id, output_index, content_index),
        "part": dict(part),
    }


def response_content_part_done(
    response_id: str,
    item_id: str,
    part: Mapping[str, Any],
    output_index: int = 0,
    content_index: int = 0,
) -> dict[str, Any]:
    """`response.content_part.done`."""
    return {
        "type": "response.content_part.done",
        **_content_ids(response_id, item_id, output_index, content_index),
        "part": dict(part),
    }


def response_output_audio_delta(
    response_id: str, item_id: str, pcm: bytes, output_index: int = 0, content_index: int = 0
) -> dict[str, Any]:
    """`response.output_audio.delta` carrying PCM16 bytes (beta: `response.audio.delta`)."""
    return {
        "type": "response.output_audio.delta",
        **_content_ids(response_id, item_id, output_index, content_index),
        "delta": encode_audio(pcm),
    }


def response_output_audio_done(
    response_id: str, item_id: str, output_index: int = 0, content_index: int = 0
) -> dict[str, Any]:
    """`response.output_audio.done`: no more audio for this item."""
    return {
        "type": "response.output_audio.done",
        **_content_ids(response_id, item_id, output_index, content_index),
    }


def response_output_audio_transcript_delta(
    response_id: str, item_id: str, delta: str, output_index: int = 0, content_index: int = 0
) -> dict[str, Any]:
    """`response.output_audio_transcript.delta`."""
    return {
        "type": "response.output_audio_transcript.delta",
        **_content_ids(response_id, item_id, output_index, content_index),
        "delta": delta,
    }


def response_output_audio_transcript_done(
    response_id: str, item_id: str, transcript: str, output_index: int = 0, content_index: int = 0
) -> dict[str, Any]:
    """`response.output_audio_transcript.done`: the whole transcript of the item's audio."""
    return {
        "type": "response.output_audio_transcript.done",
        **_content_ids(response_id, item_id, output_index, content_index),
        "transcript": transcript,
    }


def _call_ids(response_id: str, item_id: str, output_index: int, call_id: str) -> dict[str, Any]:
    return {
        "response_id": response_id,
        "item_id": item_id,
        "output_index": output_index,
        "call_id": call_id,
    }


def response_function_call_arguments_delta(
    response_id: str, item_id: str, call_id: str, delta: str, output_index: int = 0
) -> dict[str, Any]:
    """`response.function_call_arguments.delta`: the next piece of a call's JSON arguments."""
    return {
        "type": "response.function_call_arguments.delta",
        **_call_ids(response_id, item_id, output_index, call_id),
        "delta": delta,
    }


def response_function_call_arguments_done(
    response_id: str,
    item_id: str,
    call_id: str,
    name: str,
    arguments: str,
    output_index: int = 0,
) -> dict[str, Any]:
    """`response.function_call_arguments.done`: the whole arguments and the tool's name.

    The service sends it also when the response is cancelled mid-call, with what it had.
    """
    return {
        "type": "response.function_call_arguments.done",
        **_call_ids(response_id, item_id, output_index, call_id),
        "name": name,
        "arguments": arguments,
    }


# --- rate limits -------------------------------------------------------------------------------


def rate_limit(name: str, limit: int, remaining: int, reset_seconds: float) -> dict[str, Any]:
    """One entry of `rate_limits.updated`, e.g. `tokens` or `requests`."""
    return {"name": name, "limit": limit, "remaining": remaining, "reset_seconds": reset_seconds}


def rate_limits_updated(limits: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """`rate_limits.updated`, sent by the service after each `response.done`.

    The stand-in does not send it (it has no limits); it is here for tests of clients
    that must ignore it.
    """
    return {"type": "rate_limits.updated", "rate_limits": [dict(limit) for limit in limits]}
