"""The server event builders: each one's output is read back by the client's parser as the
event it names, with the fields the client reads where it reads them."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest

from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.protocol import server_events as se

PCM = bytes(range(256)) * 3  # 384 samples, every byte value

ASSISTANT = se.assistant_audio_item("item_a", "completed", "hello")
USER = se.user_audio_item("item_u")
USAGE = se.usage(input_audio_tokens=12, output_audio_tokens=30, output_text_tokens=4)

BUILT: dict[str, Callable[[], dict[str, Any]]] = {
    "error": lambda: se.error("invalid_value", "bad", "audio_end_ms", "evt_1"),
    "session_created": lambda: se.session_created(se.session_resource("sess_1", "gpt-realtime")),
    "session_updated": lambda: se.session_updated(se.session_resource("sess_1", "gpt-realtime")),
    "input_audio_buffer_speech_started": lambda: se.input_audio_buffer_speech_started(
        "item_u", 200
    ),
    "input_audio_buffer_speech_stopped": lambda: se.input_audio_buffer_speech_stopped(
        "item_u", 1800
    ),
    "input_audio_buffer_committed": lambda: se.input_audio_buffer_committed("item_u", None),
    "input_audio_buffer_cleared": se.input_audio_buffer_cleared,
    "conversation_item_added": lambda: se.conversation_item_added(USER, "item_0"),
    "conversation_item_done": lambda: se.conversation_item_done(ASSISTANT, "item_u"),
    "conversation_item_input_audio_transcription_completed": lambda: (
        se.conversation_item_input_audio_transcription_completed("item_u", "hi", 1.23456)
    ),
    "conversation_item_truncated": lambda: se.conversation_item_truncated("item_a", 640),
    "response_created": lambda: se.response_created("resp_1", {"voice": "alloy"}),
    "response_done": lambda: se.response_done(
        "resp_1", "cancelled", reason="turn_detected", output=[ASSISTANT], usage=USAGE
    ),
    "response_output_item_added": lambda: se.response_output_item_added("resp_1", ASSISTANT),
    "response_output_item_done": lambda: se.response_output_item_done("resp_1", ASSISTANT),
    "response_content_part_added": lambda: se.response_content_part_added(
        "resp_1", "item_a", se.audio_part("")
    ),
    "response_content_part_done": lambda: se.response_content_part_done(
        "resp_1", "item_a", se.audio_part("hello")
    ),
    "response_output_audio_delta": lambda: se.response_output_audio_delta("resp_1", "item_a", PCM),
    "response_output_audio_done": lambda: se.response_output_audio_done("resp_1", "item_a"),
    "response_output_audio_transcript_delta": lambda: se.response_output_audio_transcript_delta(
        "resp_1", "item_a", "hel"
    ),
    "response_output_audio_transcript_done": lambda: se.response_output_audio_transcript_done(
        "resp_1", "item_a", "hello"
    ),
    "rate_limits_updated": lambda: se.rate_limits_updated(
        [se.rate_limit("tokens", 40_000, 39_000, 1.5)]
    ),
}
"""One call of every event builder, keyed by the builder's name."""

EVENT_NAMES = {t.replace(".", "_"): t for t in ev.KNOWN_SERVER_EVENTS}


def test_every_event_builder_is_exercised():
    builders = {
        name
        for name, fn in inspect.getmembers(se, inspect.isfunction)
        if fn.__module__ == se.__name__ and name in EVENT_NAMES
    }
    assert builders == set(BUILT)


@pytest.mark.parametrize("name", sorted(BUILT))
def test_builder_output_parses_as_the_event_it_is_named_after(name):
    event = BUILT[name]()
    stamped = se.stamp(event, "event_42")
    parsed = ev.parse_server_event(json.dumps(stamped))
    assert parsed.problem == ""
    assert parsed.known
    assert parsed.type == parsed.wire_type == EVENT_NAMES[name]
    assert parsed.event_id == "event_42"
    assert list(stamped)[:2] == ["type", "event_id"]
    assert parsed.data == stamped


def test_parsed_fields_are_those_the_builders_were_given():
    delta = ev.parse_server_event(se.response_output_audio_delta("resp_1", "item_a", PCM))
    assert (delta.response_id, delta.item_id) == ("resp_1", "item_a")
    assert ev.audio_delta_bytes(delta) == PCM

    done = ev.parse_server_event(BUILT["response_done"]())
    assert done.response_id == "resp_1"
    assert done.response_status == "cancelled"
    assert done.response_status_reason == "turn_detected"
    assert done.data["response"]["output"] == [ASSISTANT]
    assert done.data["response"]["usage"]["total_tokens"] == 12 + 30 + 4
    assert done.data["response"]["usage"]["output_tokens"] == 34
    completed = ev.parse_server_event(se.response_done("resp_2"))
    assert completed.response_status == "completed"
    assert completed.response_status_reason is None
    assert completed.data["response"]["status_details"] is None
    assert "audio" not in completed.data["response"]

    created = ev.parse_server_event(BUILT["response_created"]())
    assert created.response_status == "in_progress"
    assert created.data["response"]["audio"] == {"output": {"voice": "alloy"}}
    assert created.data["response"]["usage"] is None

    error = ev.parse_server_event(BUILT["error"]())
    assert error.error_code == "invalid_value"
    assert error.error_message == "bad"
    assert error.error == {
        "type": "invalid_request_error",
        "code": "invalid_value",
        "message": "bad",
        "param": "audio_end_ms",
        "event_id": "evt_1",
    }
    assert se.http_error_body(None, "no key") == {
        "error": {"type": "invalid_request_error", "code": None, "message": "no key", "param": None}
    }

    added = ev.parse_server_event(se.response_output_item_added("resp_1", ASSISTANT))
    assert added.item_id == "item_a"
    started = ev.parse_server_event(BUILT["input_audio_buffer_speech_started"]())
    assert (started.item_id, started.data["audio_start_ms"]) == ("item_u", 200)
    transcription = BUILT["conversation_item_input_audio_transcription_completed"]()
    assert transcription["usage"] == {"type": "duration", "seconds": 1.235}


def test_items_say_whether_their_content_is_known_yet():
    assert se.assistant_audio_item("item_a", "in_progress", None)["content"] == []
    assert ASSISTANT["content"] == [{"type": "output_audio", "transcript": "hello"}]
    assert USER["role"] == "user"
    assert USER["content"] == [{"type": "input_audio", "transcript": None}]


def test_the_default_session_speaks_pcm_at_the_protocol_rate():
    session = se.session_resource("sess_1", "gpt-realtime")
    pcm = {"type": "audio/pcm", "rate": ev.SAMPLE_RATE_HZ}
    assert session["audio"]["input"]["format"] == pcm
    assert session["audio"]["output"]["format"] == pcm
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    # Two sessions do not share nested objects: updating one must not change the other.
    other = se.session_resource("sess_2", "gpt-realtime")
    other["audio"]["input"]["format"]["rate"] = 1
    assert session["audio"]["input"]["format"]["rate"] == ev.SAMPLE_RATE_HZ


@pytest.mark.parametrize("beta, ga", sorted(ev.BETA_TO_GA.items()))
def test_to_beta_gives_the_name_the_parser_maps_back(beta, ga):
    builder = next((b for name, b in BUILT.items() if EVENT_NAMES[name] == ga), None)
    event = builder() if builder is not None else {"type": ga}
    old = se.to_beta(event)
    assert old["type"] == beta
    assert {k: v for k, v in old.items() if k != "type"} == {
        k: v for k, v in event.items() if k != "type"
    }
    parsed = ev.parse_server_event(old)
    assert (parsed.type, parsed.wire_type) == (ga, beta)
    assert se.to_beta(se.input_audio_buffer_cleared()) == se.input_audio_buffer_cleared()
