"""MCP servers the service reaches, in the pure conversation: tool listings and calls
shown by name in one line each, approval requests answered from the tables' allow-lists
(client events checked against openai-python's GA models), and another answer asked for
only when an answer ended on an MCP call or an approval and nothing else goes on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.realtime import ConversationItemCreateEvent, ResponseCreateEvent

from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.session.conversation import Conversation, Record, Send, Show
from pivoicectl.realtime.session.mcp_events import MAX_CONTINUATIONS
from pivoicectl.realtime.session.playback import PlaybackQueue
from pivoicectl.realtime.session.tool_calls import RunTools

MCP_TOOL = {"type": "mcp", "server_label": "docs", "server_url": "https://docs.example/mcp"}


def event(data: dict[str, Any]) -> ev.ServerEvent:
    return ev.parse_server_event(json.dumps(data))


@pytest.fixture
def conv() -> Conversation:
    c = Conversation(ev.SessionConfig(tools=(MCP_TOOL,)), PlaybackQueue())
    c.mcp.approvals = {"docs": frozenset({"search"}), "open": None}
    c.connected(0.0)
    c.handle(event({"type": "session.created", "session": {"id": "sess_1"}}), 0.0)
    return c


def shows(actions: list[Any]) -> list[tuple[str, str]]:
    return [(a.kind, a.text) for a in actions if isinstance(a, Show)]


def sent(actions: list[Any]) -> list[dict[str, Any]]:
    return [a.event for a in actions if isinstance(a, Send)]


def records(actions: list[Any]) -> list[dict[str, Any]]:
    return [a.record for a in actions if isinstance(a, Record)]


def call_item(item_id: str = "mcp_1", name: str = "search", server: str = "docs") -> dict:
    return {
        "type": "mcp_call",
        "id": item_id,
        "server_label": server,
        "name": name,
        "arguments": '{"q": "secret question"}',
    }


def approval_item(item_id: str, name: str = "search", server: str = "docs") -> dict:
    return {
        "type": "mcp_approval_request",
        "id": item_id,
        "server_label": server,
        "name": name,
        "arguments": '{"q": "x"}',
    }


def message_item(item_id: str = "msg_1") -> dict:
    return {"type": "message", "id": item_id, "role": "assistant", "content": []}


def answer(conv: Conversation, response_id: str, *items: dict, status: str = "completed"):
    """An answer whose output items are `items`: added, done, then response.done."""
    actions = conv.handle(event({"type": "response.created", "response": {"id": response_id}}), 1)
    for index, item in enumerate(items):
        base = {"response_id": response_id, "output_index": index, "item": item}
        actions += conv.handle(event({"type": "response.output_item.added", **base}), 1.1)
        actions += conv.handle(event({"type": "response.output_item.done", **base}), 1.2)
    done = {"id": response_id, "status": status, "output": list(items)}
    actions += conv.handle(event({"type": "response.done", "response": done}), 1.3)
    return actions


def test_a_tool_listing_is_shown_by_server_name_and_a_failure_as_an_error(conv):
    listing = {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "docs", "tools": []}
    assert conv.handle(event({"type": "conversation.item.added", "item": listing}), 0.1) == []
    progress = conv.handle(event({"type": "mcp_list_tools.in_progress", "item_id": "mcpl_1"}), 0.2)
    assert shows(progress) == [] and records(progress) == [
        {"type": "mcp_list_tools", "server": "docs", "state": "in_progress"}
    ]
    done = conv.handle(event({"type": "mcp_list_tools.completed", "item_id": "mcpl_1"}), 0.3)
    assert shows(done) == [("status", "(MCP docs: tools listed)")]
    failed = conv.handle(event({"type": "mcp_list_tools.failed", "item_id": "mcpl_9"}), 0.4)
    assert shows(failed) == [("error", "MCP an MCP server: the service could not list its tools")]
    assert conv.mcp.lists_failed == 1


def test_a_call_is_shown_by_server_and_tool_name_never_with_its_arguments(conv):
    actions = conv.handle(event({"type": "response.created", "response": {"id": "resp_1"}}), 1)
    added = {"response_id": "resp_1", "output_index": 0, "item": call_item()}
    actions += conv.handle(event({"type": "response.output_item.added", **added}), 1.1)
    for state in ("in_progress", "completed"):
        progress = {"item_id": "mcp_1", "output_index": 0}
        actions += conv.handle(event({"type": f"response.mcp_call.{state}", **progress}), 1.2)
    assert shows(actions) == [("status", "(MCP docs: search done)")]
    assert {"type": "mcp_call", "server": "docs", "tool": "search", "state": "in_progress"} in (
        records(actions)
    )
    assert not any("secret question" in text for _, text in shows(actions))
    failed = {"type": "response.mcp_call.failed", "item_id": "mcp_1", "output_index": 0}
    assert shows(conv.handle(event(failed), 1.3)) == [("error", "MCP docs: search failed")]
    assert conv.mcp.calls_failed == 1


def test_approval_requests_are_answered_from_the_allow_list(conv):
    actions = []
    for item in (
        approval_item("mcpr_1"),
        approval_item("mcpr_2", name="delete_all"),
        approval_item("mcpr_3", server="stranger"),
        approval_item("mcpr_4", name="anything", server="open"),
    ):
        actions += conv.handle(event({"type": "conversation.item.done", "item": item}), 1)
    events = sent(actions)
    for e in events:
        ConversationItemCreateEvent.model_validate(e)
    assert [(e["item"]["approval_request_id"], e["item"]["approve"]) for e in events] == [
        ("mcpr_1", True),
        ("mcpr_2", False),
        ("mcpr_3", False),
        ("mcpr_4", True),
    ]
    assert events[1]["item"]["reason"] == "not approved on this device"
    assert "reason" not in events[0]["item"]
    assert len({e["item"]["id"] for e in events}) == 4
    assert all(len(e["item"]["id"]) <= 32 for e in events)
    assert shows(actions)[:2] == [
        ("status", "(MCP docs: search approved)"),
        ("status", "(MCP docs: delete_all refused (not in its approve list))"),
    ]
    # the same request seen again (in the answer's output) is not answered twice
    again = {
        "type": "response.output_item.done",
        "response_id": "r",
        "item": approval_item("mcpr_1"),
    }
    assert sent(conv.handle(event(again), 2)) == []


def test_without_allow_lists_every_request_is_refused():
    conv = Conversation(ev.SessionConfig(), PlaybackQueue())
    conv.connected(0.0)
    conv.handle(event({"type": "session.created"}), 0.0)
    (answer_event,) = sent(
        conv.handle(event({"type": "conversation.item.done", "item": approval_item("r1")}), 1)
    )
    assert answer_event["item"]["approve"] is False


def test_an_answer_that_ended_on_an_approval_or_a_call_is_followed_by_another(conv):
    after_approval = sent(answer(conv, "resp_1", approval_item("mcpr_1")))
    assert [e["type"] for e in after_approval] == ["conversation.item.create", "response.create"]
    ResponseCreateEvent.model_validate(after_approval[1])
    after_call = sent(answer(conv, "resp_2", message_item("m1"), call_item("mcp_2")))
    assert [e["type"] for e in after_call] == ["response.create"]


def test_no_other_answer_when_the_model_spoke_after_the_call_or_something_else_goes_on(conv):
    # the model went on in the same answer: approval, call, then its words
    spoke = answer(conv, "resp_1", approval_item("mcpr_1"), call_item("mcp_1"), message_item())
    assert [e["type"] for e in sent(spoke)] == ["conversation.item.create"]
    assert sent(answer(conv, "resp_2", call_item("mcp_2"), status="cancelled")) == []
    # the person spoke before the answer was done
    conv.handle(event({"type": "response.created", "response": {"id": "resp_3"}}), 2)
    done = {"type": "response.output_item.done", "response_id": "resp_3", "item": call_item("c3")}
    conv.handle(event(done), 2.1)
    conv.handle(event({"type": "input_audio_buffer.speech_started", "item_id": "u1"}), 2.2)
    finished = {"type": "response.done", "response": {"id": "resp_3", "status": "completed"}}
    assert sent(conv.handle(event(finished), 2.3)) == []
    conv.handle(event({"type": "input_audio_buffer.speech_stopped", "item_id": "u1"}), 2.4)
    # another answer has already started (the service went on by itself)
    conv.handle(event({"type": "response.created", "response": {"id": "resp_4"}}), 3)
    conv.handle(event({"type": "response.created", "response": {"id": "resp_5"}}), 3)
    done = {"type": "response.output_item.done", "response_id": "resp_4", "item": call_item("c4")}
    conv.handle(event(done), 3.1)
    finished = {"type": "response.done", "response": {"id": "resp_4", "status": "completed"}}
    assert sent(conv.handle(event(finished), 3.2)) == []


def test_a_model_that_keeps_calling_is_nudged_a_bounded_number_of_times(conv):
    nudges = 0
    for n in range(MAX_CONTINUATIONS + 3):
        nudges += len(sent(answer(conv, f"resp_{n}", call_item(f"mcp_{n}"))))
    assert nudges == MAX_CONTINUATIONS
    conv.handle(event({"type": "input_audio_buffer.speech_started", "item_id": "u1"}), 5)
    conv.handle(event({"type": "input_audio_buffer.speech_stopped", "item_id": "u1"}), 5.1)
    assert len(sent(answer(conv, "resp_again", call_item("mcp_again")))) == 1


def test_function_calls_in_the_same_answer_ask_for_the_next_answer_themselves():
    function_tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    conv = Conversation(ev.SessionConfig(tools=(MCP_TOOL, function_tool)), PlaybackQueue())
    conv.connected(0.0)
    conv.handle(event({"type": "session.created"}), 0.0)
    function_call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f"}
    actions = answer(conv, "resp_1", call_item(), {**function_call, "arguments": "{}"})
    assert [type(a) for a in actions if isinstance(a, RunTools)] == [RunTools]
    assert sent(actions) == []  # the tool results bring the response.create


def test_an_answer_of_a_lost_connection_is_not_followed_up(conv):
    conv.handle(event({"type": "response.created", "response": {"id": "resp_1"}}), 1)
    done = {"type": "response.output_item.done", "response_id": "resp_1", "item": call_item()}
    conv.handle(event(done), 1.1)
    conv.disconnected(1.2, "closed")
    conv.connected(2.0)
    conv.handle(event({"type": "session.created"}), 2.0)
    finished = {"type": "response.done", "response": {"id": "resp_1", "status": "completed"}}
    assert sent(conv.handle(event(finished), 2.1)) == []


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"type": "mcp_approval_request", "server_label": "docs", "name": "x"}, "without id"),
        ({**approval_item("r1"), "server_label": "two words"}, "server_label is not a name"),
        ({**call_item(), "name": "x" * 200}, "name is not a name"),
        ({"type": "mcp_call", "id": "c1", "name": "x"}, "without server_label"),
        ({"type": "mcp_list_tools", "id": 5, "server_label": "docs"}, "id is not an id"),
    ],
)
def test_malformed_mcp_items_are_rejected_by_the_parser(conv, item, problem):
    for kind in ("conversation.item.done", "response.output_item.done"):
        parsed = event({"type": kind, "response_id": "resp_1", "item": item})
        assert parsed.type == ev.INVALID and problem in parsed.problem, parsed.problem
        assert sent(conv.handle(parsed, 1)) == []
