"""Client event builders, server event parsing (GA and beta names), audio, redaction."""

from __future__ import annotations

import base64
import json

import pytest

from pivoicectl.errors import UserError
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.protocol import redact as rd


def test_default_session_update_has_the_ga_shape():
    event = ev.session_update(ev.SessionConfig(instructions="be brief"), event_id="evt_1")
    assert event["type"] == "session.update"
    assert event["event_id"] == "evt_1"
    session = event["session"]
    assert session["type"] == "realtime"
    assert session["instructions"] == "be brief"
    assert session["output_modalities"] == ["audio"]
    audio_in, audio_out = session["audio"]["input"], session["audio"]["output"]
    assert audio_in["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio_out == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}
    assert audio_in["noise_reduction"] is None
    assert audio_in["transcription"] is None
    assert audio_in["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
    }
    json.dumps(event)  # serializable as is


def test_semantic_vad_transcription_and_noise_reduction():
    config = ev.SessionConfig(
        turn_detection="semantic_vad",
        semantic_eagerness="high",
        transcription_model="gpt-4o-mini-transcribe",
        noise_reduction="far_field",
        voice="cedar",
        interrupt_response=False,
    )
    audio_in = config.session_payload()["audio"]["input"]
    assert audio_in["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": True,
        "interrupt_response": False,
    }
    assert audio_in["transcription"] == {"model": "gpt-4o-mini-transcribe"}
    assert audio_in["noise_reduction"] == {"type": "far_field"}
    assert config.session_payload()["audio"]["output"]["voice"] == "cedar"


def test_push_to_talk_has_no_turn_detection():
    config = ev.SessionConfig(turn_detection="none")
    assert config.session_payload()["audio"]["input"]["turn_detection"] is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"turn_detection": "push"},
        {"noise_reduction": "studio"},
        {"vad_threshold": 1.5},
        {"vad_silence_duration_ms": 0},
        {"semantic_eagerness": "eager"},
        {"voice": ""},
    ],
)
def test_bad_session_settings_are_user_errors(kwargs):
    with pytest.raises(UserError):
        ev.SessionConfig(**kwargs)


def test_client_event_builders():
    pcm = bytes(range(10))
    append = ev.input_audio_append(pcm, event_id="e1")
    assert append == {
        "type": "input_audio_buffer.append",
        "event_id": "e1",
        "audio": "AAECAwQFBgcICQ==",
    }
    assert base64.b64decode(append["audio"]) == pcm
    assert ev.input_audio_commit() == {"type": "input_audio_buffer.commit"}
    assert ev.input_audio_clear("e2") == {"type": "input_audio_buffer.clear", "event_id": "e2"}
    assert ev.response_create() == {"type": "response.create"}
    assert ev.response_create(instructions="hi")["response"] == {"instructions": "hi"}
    assert ev.response_cancel() == {"type": "response.cancel"}
    assert ev.response_cancel(response_id="resp_1")["response_id"] == "resp_1"
    assert ev.conversation_item_truncate("item_1", 1234, event_id="e3") == {
        "type": "conversation.item.truncate",
        "event_id": "e3",
        "item_id": "item_1",
        "content_index": 0,
        "audio_end_ms": 1234,
    }
    with pytest.raises(ValueError):
        ev.conversation_item_truncate("item_1", -1)
    assert json.loads(ev.dumps(append)) == append


@pytest.mark.parametrize("n_bytes", [0, 2, 960, 4801, 9600])
def test_the_append_built_as_text_is_the_json_of_the_event(n_bytes):
    pcm = bytes(range(256)) * (n_bytes // 256) + bytes(range(n_bytes % 256))
    text = ev.input_audio_append_text(pcm)
    assert text == ev.dumps(ev.input_audio_append(pcm))
    assert ev.decode_audio(json.loads(text)["audio"]) == pcm


def test_event_ids_count_up():
    ids = ev.EventIds("x_")
    assert [ids.next(), ids.next()] == ["x_000001", "x_000002"]


def test_url_is_ga():
    assert ev.realtime_url() == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert (
        ev.realtime_url("m", "ws://127.0.0.1:1/v1/realtime")
        == "ws://127.0.0.1:1/v1/realtime?model=m"
    )


@pytest.mark.parametrize(
    ("wire", "ga"),
    [
        ("response.audio.delta", "response.output_audio.delta"),
        ("response.audio.done", "response.output_audio.done"),
        ("response.audio_transcript.delta", "response.output_audio_transcript.delta"),
        ("response.audio_transcript.done", "response.output_audio_transcript.done"),
        ("response.text.delta", "response.output_text.delta"),
        ("conversation.item.created", "conversation.item.added"),
        ("response.output_audio.delta", "response.output_audio.delta"),
        ("conversation.item.added", "conversation.item.added"),
    ],
)
def test_beta_names_normalize_to_ga(wire, ga):
    fields = {"item_id": "i", "response_id": "r", "delta": "AAA=", "transcript": "t"}
    event = ev.parse_server_event(json.dumps({"type": wire, **fields}))
    assert event.type == ga
    assert event.wire_type == wire
    assert event.known


def test_unknown_and_malformed_events_never_raise():
    unknown = ev.parse_server_event('{"type": "something.new", "x": 1}')
    assert unknown.type == "something.new"
    assert not unknown.known
    for raw in ("not json", "[1, 2]", '{"no": "type"}', '{"type": 5}', b"\xff\xfe", "", "null"):
        event = ev.parse_server_event(raw)
        assert event.type == ev.INVALID
        assert not event.known
        assert event.problem
    assert ev.parse_server_event(b'{"type": "session.created"}').type == "session.created"
    assert ev.parse_server_event({"type": "session.updated"}).type == "session.updated"


def test_frames_nested_too_deep_are_rejected_without_recursion():
    """A hostile frame thousands of levels deep once ended the session (RecursionError)."""
    for depth in (ev.MAX_DEPTH + 1, 900, 100_000):
        raw = '{"type": "error", "error": ' + "[" * depth + "]" * depth + "}"
        event = ev.parse_server_event(raw)
        assert event.type == ev.INVALID and "nested" in (event.problem or "")
        assert event.data == {}
    deep_dict: dict = {}
    node = deep_dict
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    assert ev.parse_server_event({"type": "error", "error": deep_dict}).type == ev.INVALID
    deep = "[" * (ev.MAX_DEPTH - 2) + "]" * (ev.MAX_DEPTH - 2)
    ok = '{"type": "error", "error": {"message": "m", "param": ' + deep + "}}"
    assert ev.parse_server_event(ok).type == "error"


def test_server_event_accessors():
    done = ev.parse_server_event(
        {
            "type": "response.done",
            "event_id": "event_1",
            "response": {
                "id": "resp_1",
                "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": "turn_detected"},
            },
        }
    )
    assert done.response_id == "resp_1"
    assert done.response_status == "cancelled"
    assert done.response_status_reason == "turn_detected"
    assert done.event_id == "event_1"
    added = ev.parse_server_event({"type": "response.output_item.added", "item": {"id": "item_9"}})
    assert added.item_id == "item_9"
    error = ev.parse_server_event(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "code": "response_cancel_not_active",
                "message": "m",
            },
        }
    )
    assert error.error_code == "response_cancel_not_active"
    assert error.error_message == "m"
    assert ev.parse_server_event({"type": "session.created"}).error == {}


def test_audio_delta_decoding():
    pcm = b"\x01\x00\x02\x00\x03\x00"
    delta = ev.parse_server_event(
        {
            "type": "response.audio.delta",
            "response_id": "r",
            "item_id": "i",
            "delta": ev.encode_audio(pcm),
        }
    )
    assert ev.audio_delta_bytes(delta) == pcm
    assert ev.decode_audio(ev.encode_audio(b"\x01\x00\x02")) == b"\x01\x00\x02"  # all bytes
    assert ev.decode_audio("!!not base64!!") == b""
    assert ev.decode_audio(None) == b""
    other = ev.parse_server_event(
        {"type": "response.done", "response": {"id": "r"}, "delta": ev.encode_audio(pcm)}
    )
    assert other.type == "response.done"
    assert ev.audio_delta_bytes(other) == b""


DELTA = {
    "type": "response.output_audio.delta",
    "response_id": "resp_1",
    "item_id": "item_1",
    "output_index": 0,
    "content_index": 0,
    "delta": "AQACAA==",
}
DONE = {
    "type": "response.done",
    "response": {
        "id": "resp_1",
        "status": "cancelled",
        "status_details": {"type": "cancelled", "reason": "turn_detected", "error": None},
        "usage": {"total_tokens": 7, "input_token_details": {"audio_tokens": 3, "x": None}},
    },
}
ERROR = {"type": "error", "error": {"type": "t", "code": None, "message": "m", "event_id": None}}


def _with(event: dict, path: str, value: object) -> dict:
    """`event` with the field at dotted `path` set to `value` (removed for `...`)."""
    out = json.loads(json.dumps(event))
    *parents, name = path.split(".")
    node = out
    for parent in parents:
        node = node[parent]
    if value is ...:
        del node[name]
    else:
        node[name] = value
    return out


def test_well_formed_events_of_every_kind_the_conversation_reads_are_accepted():
    for event in (DELTA, DONE, ERROR):
        parsed = ev.parse_server_event(ev.dumps(event))
        assert parsed.type == event["type"], parsed.problem
    assert ev.audio_delta_bytes(ev.parse_server_event(DELTA)) == b"\x01\x00\x02\x00"
    # Optional fields may be absent or null; ids may carry the characters the service uses.
    for fields in ({}, {"session": None}, {"session": {"id": "sess_AB-c.9:1"}}):
        assert ev.parse_server_event({"type": "session.created", **fields}).type != ev.INVALID
    assert ev.parse_server_event(_with(DONE, "response.usage", None)).type == "response.done"
    assert ev.parse_server_event(_with(DELTA, "delta", "")).audio == b""


@pytest.mark.parametrize(
    ("event", "path", "value", "problem"),
    [
        (DELTA, "delta", "!!!not base64", "delta is not base64 audio"),
        (DELTA, "delta", "AQA", "delta is not base64 audio"),  # padding cut off
        (DELTA, "delta", 5, "delta is not a string"),
        (DELTA, "delta", ..., "delta is missing"),
        (DELTA, "response_id", ..., "response_id is missing"),
        (DELTA, "item_id", 7, "item_id is not an id"),
        (DELTA, "item_id", "", "item_id is not an id"),
        (DELTA, "item_id", "item\n1", "item_id is not an id"),
        (DELTA, "item_id", "i" * (ev.MAX_ID_CHARS + 1), "item_id is not an id"),
        (DELTA, "content_index", -1, "content_index is not an index"),
        (DELTA, "output_index", True, "output_index is not an index"),
        (DELTA, "output_index", 2**40, "output_index is not an index"),
        (DELTA, "event_id", ["e"], "event_id is not an id"),
        (DONE, "response", "nonsense", "response is not an object"),
        (DONE, "response.id", ..., "response.id is missing"),
        (DONE, "response.id", {"a": 1}, "response.id is not an id"),
        (DONE, "response.status", 3, "response.status is not a string"),
        (DONE, "response.status_details", [], "response.status_details is not an object"),
        (DONE, "response.status_details.reason", "r" * 200, "reason is not a string"),
        (DONE, "response.status_details.error", {"message": 1}, "message is not a string"),
        (DONE, "response.usage", [1], "response.usage is not an object"),
        (DONE, "response.usage.total_tokens", -1, "holds -1"),
        (DONE, "response.usage.input_token_details.audio_tokens", 10**16, "not a count"),
        (ERROR, "error", ["x"], "error is not an object"),
        (ERROR, "error", None, "error is missing"),
        (ERROR, "error.code", 404, "error.code is not a string"),
        (ERROR, "error.message", "m" * (ev.MAX_TEXT_CHARS + 1), "error.message is not a"),
    ],
)
def test_a_malformed_field_the_conversation_reads_rejects_the_event(event, path, value, problem):
    parsed = ev.parse_server_event(ev.dumps(_with(event, path, value)))
    assert parsed.type == ev.INVALID
    assert parsed.wire_type == event["type"]  # for the trace: what was rejected
    assert problem in parsed.problem and parsed.problem.startswith(event["type"] + ": ")


def test_the_other_events_the_conversation_reads_are_checked_too():
    bad = [
        {"type": "response.created", "response": {"status": "in_progress"}},
        {"type": "response.created", "response": {"id": "r", "status": ["x"]}},
        {"type": "input_audio_buffer.speech_started", "item_id": 1},
        {"type": "input_audio_buffer.speech_stopped", "item_id": "a b"},
        {"type": "conversation.item.input_audio_transcription.completed", "item_id": "i"},
        {"type": "response.output_audio.done", "response_id": "r"},
        {"type": "response.output_audio_transcript.delta", "response_id": "r", "delta": None},
        {"type": "response.audio_transcript.done", "response_id": "r", "transcript": 5},
        {"type": "session.created", "session": {"id": 5}},
        {"type": "session.created", "session": "s"},
    ]
    for event in bad:
        assert ev.parse_server_event(event).type == ev.INVALID, event
    # Events the conversation does not act on are passed on unchecked.
    assert ev.parse_server_event({"type": "rate_limits.updated", "x": [-1]}).known


def test_nan_and_infinity_are_not_json():
    for constant in ("NaN", "Infinity", "-Infinity"):
        usage = '{"t": ' + constant + "}"
        raw = '{"type": "response.done", "response": {"id": "r", "usage": ' + usage + "}}"
        event = ev.parse_server_event(raw)
        assert event.type == ev.INVALID and "not JSON" in event.problem


def test_units_round_down():
    assert ev.samples_to_ms(24) == 1
    assert ev.samples_to_ms(47) == 1
    assert ev.samples_to_ms(24000) == 1000
    assert ev.ms_to_samples(20) == 480
    assert ev.bytes_to_samples(5) == 2


def test_redact_removes_keys_and_bearer_tokens():
    key = "sk-proj-abcdefghijklmnop1234"
    original = {
        "url": "wss://api.openai.com/v1/realtime?model=gpt-realtime",
        "headers": {"Authorization": f"Bearer {key}", "User-Agent": "pivoicectl"},
        "api_key": key,
        "list": [f"token {key} here", ("Authorization", "Bearer abc.def"), 3],
        "message": "Incorrect API key provided: Bearer xyz123",
        "usage": {"total_tokens": 5},
        "custom": "my-secret-local-token",
    }
    clean = rd.redact(original, secrets=("my-secret-local-token",))
    text = json.dumps(clean)
    assert key not in text
    assert "abc.def" not in text
    assert "xyz123" not in text
    assert "my-secret-local-token" not in text
    assert clean["headers"]["Authorization"] == rd.REDACTED
    assert clean["headers"]["User-Agent"] == "pivoicectl"
    assert clean["usage"] == {"total_tokens": 5}
    assert clean["url"] == original["url"]
    assert clean["list"][1] == ("Authorization", rd.REDACTED)
    assert original["headers"]["Authorization"] == f"Bearer {key}"  # input untouched
    assert rd.redact("plain text") == "plain text"
    assert rd.redact(42) == 42


def test_trace_view_shortens_audio():
    append = ev.input_audio_append(bytes(480))
    assert rd.trace_view(append)["audio"] == "<480 bytes pcm16>"
    delta = {"type": "response.audio.delta", "delta": ev.encode_audio(bytes(10))}
    assert rd.trace_view(delta)["delta"] == "<10 bytes pcm16>"
    text = {"type": "response.output_audio_transcript.delta", "delta": "hello"}
    assert rd.trace_view(text)["delta"] == "hello"


@pytest.mark.parametrize(
    "text",
    [
        "Bearer abc.def-123",
        "BEARER\tsecret-token-value",
        "x=sk-proj-abcdefgh12345",
        "key ek_abcdefgh12345 in a message",
        "resp_0123456789abcdef",
        "short",
        "sk-short",
        "",
    ],
)
def test_the_quick_check_before_redacting_a_string_never_skips_a_key(text):
    """The shortcut for strings that cannot hold a key gives what the patterns give."""
    from pivoicectl.realtime.protocol import redact as events

    full = events._BEARER.sub(lambda m: f"{m.group(1)} {events.REDACTED}", text)
    for pattern in events._KEY_PATTERNS:
        full = pattern.sub(events.REDACTED, full)
    assert events.redact(text) == full


def test_ids_are_opaque_so_a_new_id_format_is_still_accepted():
    for item_id in ("item_AbC123", "msg/2026-12-03+x", "[bold]x", "ü" * 256):
        delta = {
            "type": "response.output_audio.delta",
            "event_id": "e",
            "response_id": "r",
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "delta": "AAAA",
        }
        assert ev.parse_server_event(json.dumps(delta)).type == "response.output_audio.delta"
    too_long = {**delta, "item_id": "x" * 257}
    assert ev.parse_server_event(json.dumps(too_long)).type == "invalid"
