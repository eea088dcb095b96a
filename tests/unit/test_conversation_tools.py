"""Function calls in the pure conversation: collected per answer, run together at
response.done, answered in order on the connection that asked, no new answer asked for
over a person who started talking meanwhile. Client events are checked against the
GA schema in openai-python's `openai.types.realtime`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.realtime import ConversationItemCreateEvent, SessionUpdateEvent

from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.session.conversation import Conversation, Record, Send, Show
from pivoicectl.realtime.session.playback import PlaybackQueue
from pivoicectl.realtime.session.tool_calls import RunTools, ToolResult

TOOL = {
    "type": "function",
    "name": "garden_lights",
    "description": "Switch the garden lights",
    "parameters": {"type": "object", "properties": {"state": {"type": "string"}}},
}


def event(data: dict[str, Any]) -> ev.ServerEvent:
    return ev.parse_server_event(json.dumps(data))


def start(conv: Conversation) -> None:
    conv.connected(0.0)
    conv.handle(event({"type": "session.created", "session": {"id": "sess_1"}}), 0.0)


def call_item(call_id: str, name: str = "garden_lights", args: str = '{"state": "on"}') -> dict:
    return {
        "type": "function_call",
        "id": f"item_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": args,
    }


def answer_with_calls(conv: Conversation, response_id: str, *items: dict) -> list[Any]:
    actions = conv.handle(event({"type": "response.created", "response": {"id": response_id}}), 1.0)
    for i, item in enumerate(items):
        done = {
            "type": "response.output_item.done",
            "response_id": response_id,
            "output_index": i,
            "item": item,
        }
        actions += conv.handle(event(done), 1.1)
    status = {"id": response_id, "status": "completed", "output": list(items)}
    actions += conv.handle(event({"type": "response.done", "response": status}), 1.2)
    return actions


def runs(actions: list[Any]) -> list[RunTools]:
    return [a for a in actions if isinstance(a, RunTools)]


def sent(actions: list[Any]) -> list[dict]:
    return [a.event for a in actions if isinstance(a, Send)]


@pytest.fixture
def conv() -> Conversation:
    c = Conversation(ev.SessionConfig(tools=(TOOL,)), PlaybackQueue())
    start(c)
    return c


def test_the_session_declares_the_tools_in_the_ga_shape():
    update = ev.session_update(ev.SessionConfig(tools=(TOOL,)), "evt_1")
    SessionUpdateEvent.model_validate(update)
    assert update["session"]["tools"] == [TOOL] and update["session"]["tool_choice"] == "auto"
    assert "tools" not in ev.session_update(ev.SessionConfig())["session"]


def test_a_call_is_run_at_response_done_and_answered_then_a_new_answer_asked(conv):
    actions = answer_with_calls(conv, "resp_1", call_item("call_1"))
    (run,) = runs(actions)
    assert [(c.call_id, c.name, c.arguments) for c in run.calls] == [
        ("call_1", "garden_lights", '{"state": "on"}')
    ]
    assert Show("status", "(using garden_lights …)") in actions
    assert not conv.is_idle(1.3)  # a tool runs: no renewal now
    out = conv.tool_results(run, [ToolResult('{"ok": true}', True, 0.05)], 1.4)
    events = sent(out)
    assert [e["type"] for e in events] == ["conversation.item.create", "response.create"]
    ConversationItemCreateEvent.model_validate(events[0])
    assert events[0]["item"] == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": '{"ok": true}',
    }
    (record,) = [a.record for a in out if isinstance(a, Record)]
    assert record["type"] == "tool_call" and record["name"] == "garden_lights"
    assert record["ok"] is True and record["duration_ms"] == 50.0
    assert conv.is_idle(1.5)
    assert conv.tools.log[-1]["name"] == "garden_lights"


def test_several_calls_in_one_answer_are_run_together_and_answered_together(conv):
    actions = answer_with_calls(
        conv, "resp_1", call_item("call_1"), call_item("call_2", "get_local_time", "{}")
    )
    (run,) = runs(actions)
    assert [c.call_id for c in run.calls] == ["call_1", "call_2"]
    assert Show("status", "(using garden_lights, get_local_time …)") in actions
    out = conv.tool_results(
        run, [ToolResult("a", True, 0.01), ToolResult('{"error": "x"}', False, 0.02, "x")], 2.0
    )
    assert [(e["type"], e.get("item", {}).get("call_id")) for e in sent(out)] == [
        ("conversation.item.create", "call_1"),
        ("conversation.item.create", "call_2"),
        ("response.create", None),
    ]


def test_a_barge_in_while_a_tool_runs_sends_the_output_but_asks_no_new_answer(conv):
    (run,) = runs(answer_with_calls(conv, "resp_1", call_item("call_1")))
    conv.handle(event({"type": "input_audio_buffer.speech_started", "item_id": "u2"}), 1.5)
    out = conv.tool_results(run, [ToolResult("done", True, 0.5)], 2.0)
    assert [e["type"] for e in sent(out)] == ["conversation.item.create"]
    # the next call, with nobody talking over it, asks for an answer again
    (run2,) = runs(answer_with_calls(conv, "resp_2", call_item("call_2")))
    assert sent(conv.tool_results(run2, [ToolResult("x", True, 0.1)], 3.0))[-1]["type"] == (
        "response.create"
    )


def test_a_local_barge_in_counts_as_talking_over_the_tool_too(conv):
    (run,) = runs(answer_with_calls(conv, "resp_1", call_item("call_1")))
    conv.local_interrupt(1.5, source="ptt")
    assert [e["type"] for e in sent(conv.tool_results(run, [ToolResult("d", True, 0.1)], 2))] == [
        "conversation.item.create"
    ]


def test_results_for_a_session_that_is_gone_are_dropped_with_a_record(conv):
    (run,) = runs(answer_with_calls(conv, "resp_1", call_item("call_1")))
    conv.disconnected(1.5, "closed 1006")
    conv.connected(2.0)
    conv.handle(event({"type": "session.created", "session": {"id": "sess_2"}}), 2.1)
    out = conv.tool_results(run, [ToolResult("late", True, 1.0)], 2.5)
    assert sent(out) == []
    assert {
        "type": "tool_output_dropped",
        "response_id": "resp_1",
        "why": "the session that asked is gone",
    } in [a.record for a in out if isinstance(a, Record)]


def test_calls_collected_on_a_lost_connection_are_never_run(conv):
    conv.handle(event({"type": "response.created", "response": {"id": "resp_1"}}), 1.0)
    done = {"type": "response.output_item.done", "response_id": "resp_1", "item": call_item("c")}
    conv.handle(event(done), 1.1)
    conv.disconnected(1.2, "lost")
    conv.connected(1.3)
    late = {"type": "response.done", "response": {"id": "resp_1", "status": "completed"}}
    assert runs(conv.handle(event(late), 1.4)) == []


def test_an_answer_without_calls_runs_nothing_and_other_items_are_ignored(conv):
    message = {"type": "message", "id": "item_m", "role": "assistant", "content": []}
    assert runs(answer_with_calls(conv, "resp_1", message)) == []


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({**call_item("c"), "call_id": None}, "call_id"),
        ({**call_item("c"), "name": "no spaces allowed"}, "not a tool name"),
        ({**call_item("c"), "arguments": 7}, "arguments"),
        ("not an object", "is not an object"),
    ],
)
def test_a_malformed_function_call_is_rejected_where_events_are_parsed(conv, item, problem):
    frame = {"type": "response.output_item.done", "response_id": "resp_1", "item": item}
    parsed = event(frame)
    assert parsed.type == ev.INVALID and problem in parsed.problem
    before = conv.invalid_events
    conv.handle(parsed, 1.0)
    assert conv.invalid_events == before + 1
