"""The server event builders: each one's output is read back by the client's parser as the
event it names, with the fields the client reads where it reads them."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import pydantic
import pytest
from openai.types import realtime

from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.protocol import server_events as se

PCM = bytes(range(256)) * 3  # 384 samples, every byte value

ASSISTANT = se.assistant_audio_item("item_a", "completed", "hello")
USER = se.user_audio_item("item_u")
USAGE = se.usage(input_audio_tokens=12, output_audio_tokens=30, output_text_tokens=4)
ARGS = '{"percent": 30}'
CALL = se.function_call_item("item_f", "call_7", "set_volume", ARGS)
CALL_STARTED = se.function_call_item("item_f", "call_7", "set_volume", "", "in_progress")
CALL_OUTPUT = se.function_call_output_item("item_o", "call_7", '{"ok": true}')

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
    "response_function_call_arguments_delta": lambda: se.response_function_call_arguments_delta(
        "resp_1", "item_f", "call_7", '{"perc'
    ),
    "response_function_call_arguments_done": lambda: se.response_function_call_arguments_done(
        "resp_1", "item_f", "call_7", "set_volume", ARGS
    ),
    "rate_limits_updated": lambda: se.rate_limits_updated(
        [se.rate_limit("tokens", 40_000, 39_000, 1.5)]
    ),
}
"""One call of every event builder, keyed by the builder's name."""

FUNCTION_CALL_EVENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "output_item_added": lambda: se.response_output_item_added("resp_1", CALL_STARTED),
    "item_added": lambda: se.conversation_item_added(CALL_STARTED, "item_u"),
    "output_item_done": lambda: se.response_output_item_done("resp_1", CALL),
    "item_done": lambda: se.conversation_item_done(CALL, "item_u"),
    "response_done": lambda: se.response_done("resp_1", output=[CALL], usage=USAGE),
    "output_added": lambda: se.conversation_item_added(CALL_OUTPUT, "item_f"),
    "output_done": lambda: se.conversation_item_done(CALL_OUTPUT, "item_f"),
}
"""The item-carrying events of a tool call, with its function_call or output item."""

OPENAI_SERVER_EVENT = pydantic.TypeAdapter(realtime.RealtimeServerEvent)
"""openai-python's description of every GA server event, to check ours against."""

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


@pytest.mark.parametrize(
    "name, build",
    sorted({**BUILT, **{f"call:{k}": v for k, v in FUNCTION_CALL_EVENTS.items()}}.items()),
)
def test_builder_output_is_valid_for_openai_python(name, build):
    event = se.stamp(build(), "event_42")
    model = OPENAI_SERVER_EVENT.validate_python(event)
    assert model.type == event["type"]
    dumped = model.model_dump(exclude_unset=True)
    for key, value in event.items():
        if not isinstance(value, dict | list):
            assert dumped[key] == value, key


def test_function_call_items_are_read_as_function_calls():
    for build in FUNCTION_CALL_EVENTS.values():
        event = se.stamp(build(), "event_1")
        assert ev.parse_server_event(event).problem == ""
        model = OPENAI_SERVER_EVENT.validate_python(event)
        items = model.response.output if model.type == "response.done" else [model.item]
        assert len(items) == 1
        expected = (
            realtime.RealtimeConversationItemFunctionCall
            if items[0].type == "function_call"
            else realtime.RealtimeConversationItemFunctionCallOutput
        )
        assert isinstance(items[0], expected)
        assert items[0].call_id == "call_7"
    done = OPENAI_SERVER_EVENT.validate_python(
        se.stamp(FUNCTION_CALL_EVENTS["response_done"](), "e")
    )
    assert done.response.output[0].arguments == ARGS
    assert done.response.output[0].name == "set_volume"


def test_function_call_argument_events_carry_the_call():
    delta = ev.parse_server_event(BUILT["response_function_call_arguments_delta"]())
    assert (delta.response_id, delta.item_id) == ("resp_1", "item_f")
    assert (delta.data["call_id"], delta.data["delta"], delta.data["output_index"]) == (
        "call_7",
        '{"perc',
        0,
    )
    done = ev.parse_server_event(BUILT["response_function_call_arguments_done"]())
    assert (done.data["name"], done.data["arguments"], done.data["call_id"]) == (
        "set_volume",
        ARGS,
        "call_7",
    )
    assert CALL_STARTED["arguments"] == "" and CALL_STARTED["status"] == "in_progress"
    assert CALL_OUTPUT["output"] == '{"ok": true}'
