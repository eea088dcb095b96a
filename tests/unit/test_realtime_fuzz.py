"""Nothing the service sends can crash the conversation or spoil the answer that plays.

Random server events that are valid for the GA schema (generated from openai-python's
`openai.types.realtime` models and checked against them), the same with one field
spoiled, and random malformed frames are fed between the deltas of a real answer,
through the same parsing, conversation and trace redaction `run` uses. Every frame is
either rejected by the parser (counted and traced as one `invalid_event`) or acted on by
the conversation, which catches nothing: an exception here is a bug. The answer must
still be queued whole, in order.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pydantic
import pytest
from openai.types import realtime

from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.protocol.redact import trace_view
from pivoicectl.realtime.session.conversation import Conversation, Record
from pivoicectl.realtime.session.playback import PlaybackQueue, TruncationMargins

ADAPTER = pydantic.TypeAdapter(realtime.RealtimeServerEvent)
SCHEMA = ADAPTER.json_schema()
LEAVES_ANSWER = {
    # Events after which stopping the answer is the right thing to do, not a bug.
    "input_audio_buffer.speech_started",
    "session.created",
    "output_audio_buffer.cleared",
}
STRINGS = ["", "x", "resp_other", "item_other", "[/]", "[bold]x", "sk-" + "a" * 20, "é" * 3, "\x00"]


def sample(schema: dict[str, Any], rng: random.Random, depth: int = 0) -> Any:
    """A random instance of a JSON schema (the subset pydantic emits)."""
    if "$ref" in schema:
        return sample(SCHEMA["$defs"][schema["$ref"].rsplit("/", 1)[-1]], rng, depth)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return sample(rng.choice(schema[key]), rng, depth)
    if "allOf" in schema:
        return sample(schema["allOf"][0], rng, depth)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = rng.choice(kind)
    if kind == "object" or "properties" in schema:
        out = {}
        for name, sub in schema.get("properties", {}).items():
            if name in schema.get("required", []) or (depth < 4 and rng.random() < 0.5):
                out[name] = sample(sub, rng, depth + 1)
        return out
    if kind == "array":
        if depth >= 4:
            return []
        return [sample(schema.get("items", {}), rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "string":
        return rng.choice(STRINGS)
    if kind == "integer":
        return rng.choice([0, 1, -1, 2**40, 7])
    if kind == "number":
        return rng.choice([0.0, 1.5, -3.25, 1e12])
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return rng.choice([None, 1, "x", [], {}])


def valid_events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < n:
        event = sample(SCHEMA, rng)
        if event.get("type") in LEAVES_ANSWER:
            continue
        try:
            ADAPTER.validate_python(event)
        except pydantic.ValidationError:
            continue  # the sampler's guess missed a constraint: not schema-valid
        out.append(event)
    return out


JUNK: list[Any] = [None, -1, 2**63, 1e308, True, "", "[/]", "\x00", [], {}, {"id": [1]}, "!!"]


def spoiled(event: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """`event` with one field, at any depth, replaced by a value of the wrong kind."""
    out = json.loads(json.dumps(event))
    node = out
    while True:
        keys = [k for k in node if k != "type"]
        if not keys:
            return out
        key = rng.choice(keys)
        if isinstance(node[key], dict) and node[key] and rng.random() < 0.6:
            node = node[key]
            continue
        node[key] = rng.choice(JUNK)
        return out


def with_ids(value: Any, rng: random.Random) -> Any:
    """`value` with every id a well-formed one of another answer, so that events get past
    the id checks and reach the conversation (the sampler's strings mostly would not)."""
    if isinstance(value, dict):
        return {
            k: rng.choice(["resp_other", "item_other", "x"])
            if (k == "id" or k.endswith("_id")) and isinstance(v, str)
            else with_ids(v, rng)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [with_ids(v, rng) for v in value]
    return value


def acted_on(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Schema-valid events of the types the conversation acts on, half of them spoiled."""
    types = sorted(ev.VALIDATED_EVENTS)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        event = sample(SCHEMA, rng)
        if event.get("type") not in types or event.get("type") in LEAVES_ANSWER:
            continue
        event = with_ids(event, rng)
        out.append(spoiled(event, rng) if rng.random() < 0.5 else event)
    return out


def malformed(rng: random.Random) -> str | bytes:
    choices: list[str | bytes] = [
        "",
        "null",
        "[1, 2]",
        '{"type": 5}',
        "{" * 2000,
        "[" * 100_000 + "]" * 100_000,
        b"\xff\xfe\x00",
        '{"type": "response.output_audio.delta", "response_id": "resp_real", '
        '"item_id": "item_real", "delta": "!!!not base64"}',
        '{"type": "response.done", "response": "nonsense"}',
        '{"type": "error", "error": ["x"]}',
        '{"type": "response.output_audio.delta", "delta": 5}',
        json.dumps({"type": "conversation.item.truncated", "item_id": {"a": [1]}}),
        '{"type": "response.output_audio.delta", "response_id": "resp_real", '
        '"item_id": "item_real", "delta": "AAA=", "content_index": -1}',
        '{"type": "response.done", "response": {"id": "resp_real", "usage": {"t": NaN}}}',
        '{"type": "response.done", "response": {"id": 5}}',
        '{"type": "response.output_audio_transcript.done", "response_id": "resp_real"}',
    ]
    return rng.choice(choices)


@pytest.mark.parametrize("seed", range(6))
def test_random_valid_and_malformed_frames_never_crash_and_the_answer_plays_whole(seed):
    rng = random.Random(seed)
    conv = Conversation(ev.SessionConfig(), PlaybackQueue(TruncationMargins(received_margin_ms=0)))
    feed = [
        ev.dumps({"type": "session.created", "session": {"id": "sess_1"}}),
        ev.dumps({"type": "response.created", "response": {"id": "resp_real"}}),
    ]
    answer = bytes(rng.randrange(256) for _ in range(4800 * 2))
    chunks = [answer[i : i + 961] for i in range(0, len(answer), 961)]  # odd sizes
    noise = valid_events(rng, 30) + acted_on(rng, 30)
    rng.shuffle(noise)
    for i, chunk in enumerate(chunks):
        feed.append(
            ev.dumps(
                {
                    "type": "response.output_audio.delta",
                    "response_id": "resp_real",
                    "item_id": "item_real",
                    "delta": ev.encode_audio(chunk),
                }
            )
        )
        feed += [ev.dumps(e) for e in noise[i * 6 : i * 6 + 6]]
        feed.append(malformed(rng))
    t = 0.0
    rejected = 0
    for frame in feed:
        event = ev.parse_server_event(frame)
        json.dumps(trace_view(event.data, ("sk-" + "a" * 20,)))  # what the trace writes
        actions = conv.handle(event, t)  # raises on a bug: nothing is caught
        if event.type == ev.INVALID:
            rejected += 1
            (record,) = actions
            assert isinstance(record, Record) and record.record["type"] == "invalid_event"
            assert record.record["problem"]
        t += 0.01
    played, _ = conv.playback.pull(len(answer) // 2)
    assert played == answer[: len(answer) // 2 * 2]
    assert conv.invalid_events == rejected > len(chunks)  # the spoiled ones too
