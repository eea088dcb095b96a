"""Redaction: what may appear in a trace or a log line of a session.

The API key and client secrets must never reach output, logs or traces; this module
masks them wherever they appear in an event, a header or a string, and shortens audio
payloads (most of the traffic, useless in a text trace).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pivoicectl.realtime.protocol.events import BETA_TO_GA, decode_audio

REDACTED = "[REDACTED]"
_SECRET_KEY_NAMES = re.compile(
    r"^(authorization|proxy-authorization|api[-_]?key|openai[-_]api[-_]key|x-api-key|"
    r"token|access[-_]token|secret|client[-_]secret|password)$",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_KEY_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),  # API keys, including sk-proj-...
    re.compile(r"\bek_[A-Za-z0-9_-]{8,}"),  # ephemeral client secrets
)
_MAYBE_KEY = re.compile(r"(?i)bearer|sk-|ek_")
"""Matches wherever any of the patterns above could: one search instead of three
substitutions for the many short strings of every trace record (ids, types)."""


def redact(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """A copy of `value` safe for traces and logs: no API key, no Authorization header.

    Walks dicts, lists and tuples; a value under a key named like a credential is replaced
    whole; strings have bearer tokens, `sk-`/`ek_` keys and any of `secrets` (e.g. the key
    actually in use, which may not look like a key) masked. Other values pass unchanged.
    """
    if isinstance(value, str):
        return _redact_str(value, secrets)
    if isinstance(value, bytes):
        return value
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and _SECRET_KEY_NAMES.match(k) and v is not None:
                out[k] = REDACTED
            else:
                out[k] = redact(v, secrets)
        return out
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, tuple):
        # A header pair ("Authorization", "Bearer ...") is a credential by its name.
        if len(value) == 2 and isinstance(value[0], str) and _SECRET_KEY_NAMES.match(value[0]):
            return (value[0], REDACTED)
        return tuple(redact(v, secrets) for v in value)
    return value


def _redact_str(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, REDACTED)
    if len(text) < 8 or not _MAYBE_KEY.search(text):  # no pattern can match here
        return text
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def trace_view(event: Mapping[str, Any], secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """An event shortened for a trace: redacted, base64 audio replaced by its byte count.

    Audio payloads are most of the traffic and useless in a text trace.
    """
    out = dict(event)
    event_type = out.get("type")
    ga_type = BETA_TO_GA.get(event_type, event_type) if isinstance(event_type, str) else None
    # Shorten before redacting: scanning megabytes of base64 for keys is wasted work.
    if isinstance(out.get("audio"), str):
        out["audio"] = f"<{len(decode_audio(out['audio']))} bytes pcm16>"
    if ga_type == "response.output_audio.delta" and isinstance(out.get("delta"), str):
        out["delta"] = f"<{len(decode_audio(out['delta']))} bytes pcm16>"
    return redact(out, secrets)
