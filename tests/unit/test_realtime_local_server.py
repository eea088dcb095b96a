"""The local Realtime server (its model a repeater), driven by a real websockets client over loopback.

Every await is bounded: each test body runs under `asyncio.wait_for`, each receive has
its own timeout, and pytest-timeout backs both up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pydantic
import pytest
from openai.types import realtime
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pivoicectl.errors import UserError
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.session.playback import PlaybackQueue, TruncationMargins
from pivoicectl.standin import LocalRealtimeServer, LocalServerSettings, LocalServerThread
from pivoicectl.standin.calls import MAX_CALLS, ToolCalls
from pivoicectl.standin.server import BETA_CLOSE_CODE
from pivoicectl.standin.vad import EnergyVad

pytestmark = pytest.mark.timeout(30)

RATE = ev.SAMPLE_RATE_HZ
AUTH = {"Authorization": "Bearer test-key-123"}


def run(coro: Coroutine[Any, Any, Any], timeout_s: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def tone(ms: int, hz: float = 300.0, dbfs: float = -20.0) -> bytes:
    n = ev.ms_to_samples(ms)
    amplitude = 10 ** (dbfs / 20)
    wave = amplitude * np.sin(2 * np.pi * hz * np.arange(n) / RATE)
    return (wave * 32767).astype("<i2").tobytes()


def noise(ms: int, dbfs: float = -65.0, seed: int = 1) -> bytes:
    n = ev.ms_to_samples(ms)
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * 10 ** (dbfs / 20) * 32767).astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    return bytes(2 * ev.ms_to_samples(ms))


async def open_client(
    srv: LocalRealtimeServer, headers: dict[str, str] | None = None
) -> ClientConnection:
    return await asyncio.wait_for(
        connect(
            srv.url,
            additional_headers=AUTH if headers is None else headers,
            proxy=None,
            max_size=None,
            open_timeout=5,
            close_timeout=2,
        ),
        5,
    )


async def recv(ws: ClientConnection, timeout_s: float = 5.0) -> ev.ServerEvent:
    return ev.parse_server_event(await asyncio.wait_for(ws.recv(), timeout_s))


async def recv_until(
    ws: ClientConnection, stop: Callable[[ev.ServerEvent], bool], timeout_s: float = 8.0
) -> list[ev.ServerEvent]:
    """Events up to and including the first one for which `stop` is true."""
    deadline = time.monotonic() + timeout_s
    out: list[ev.ServerEvent] = []
    while True:
        event = await recv(ws, max(0.01, deadline - time.monotonic()))
        out.append(event)
        if stop(event):
            return out


def of_type(event_type: str) -> Callable[[ev.ServerEvent], bool]:
    return lambda e: e.type == event_type


async def send(ws: ClientConnection, event: dict[str, Any]) -> None:
    await asyncio.wait_for(ws.send(ev.dumps(event)), 5)


async def send_audio(ws: ClientConnection, pcm: bytes, chunk_ms: int = 100) -> None:
    """Faster than real time: the server's VAD runs on the sample timeline."""
    step = ev.ms_to_samples(chunk_ms) * 2
    for i in range(0, len(pcm), step):
        await send(ws, ev.input_audio_append(pcm[i : i + step]))


async def start_session(ws: ClientConnection, config: ev.SessionConfig) -> None:
    assert (await recv(ws)).type == "session.created"
    await send(ws, ev.session_update(config))
    assert (await recv(ws)).type == "session.updated"


def audio_of(events: list[ev.ServerEvent], response_id: str) -> bytes:
    return b"".join(
        ev.audio_delta_bytes(e) for e in events if e.is_audio_delta and e.response_id == response_id
    )


# --- the VAD on its own --------------------------------------------------------------------


def test_energy_vad_finds_a_tone_between_silences():
    vad = EnergyVad(threshold=0.5, silence_duration_ms=500)
    stream = silence(400) + tone(800) + silence(700)
    found = []
    for i in range(0, len(stream), 1234):  # odd chunk sizes: frames span appends
        found += vad.feed(stream[i : i + 1234])
    assert [e.kind for e in found] == ["start", "stop"]
    start, stop = found
    assert start.speech_start_samples == ev.ms_to_samples(400)
    assert stop.speech_end_samples == ev.ms_to_samples(1200)
    assert stop.stop_samples == ev.ms_to_samples(1700)


def test_energy_vad_adapts_to_a_noise_floor():
    vad = EnergyVad(threshold=0.5, silence_duration_ms=300)
    assert vad.feed(noise(2000, dbfs=-40)) == []  # steady noise above the absolute minimum
    assert vad.noise_floor_dbfs is not None
    assert vad.noise_floor_dbfs > -50
    events = vad.feed(tone(500, dbfs=-10) + noise(500, dbfs=-40, seed=2))
    assert [e.kind for e in events] == ["start", "stop"]


def test_energy_vad_ignores_a_click():
    vad = EnergyVad()
    assert vad.feed(silence(200) + tone(20, dbfs=-6) + silence(600)) == []


def test_energy_vad_freezes_the_floor_during_a_turn_and_keeps_it_on_configure():
    vad = EnergyVad(threshold=0.5, silence_duration_ms=500)
    assert vad.feed(noise(1000, dbfs=-40)) == []
    floor = vad.noise_floor_dbfs
    assert floor is not None
    assert [e.kind for e in vad.feed(tone(300, dbfs=-10))] == ["start"]
    during = vad.noise_floor_dbfs
    assert during == pytest.approx(floor, abs=0.5)  # only the frames before the start
    assert vad.feed(silence(300) + tone(300, dbfs=-10)) == []  # a pause inside the turn
    assert vad.noise_floor_dbfs == during
    vad.configure(threshold=0.9, silence_duration_ms=300)
    assert vad.noise_floor_dbfs == during
    assert [e.kind for e in vad.feed(noise(400, dbfs=-40, seed=2))] == ["stop"]


# --- a whole turn over the socket ----------------------------------------------------------


def test_utterance_yields_turn_events_and_a_real_time_repeated_answer():
    async def body() -> None:
        async with LocalRealtimeServer() as srv:
            ws = await open_client(srv)
            async with ws:
                await start_session(ws, ev.SessionConfig(transcription_model="whisper-1"))
                sent = noise(500) + tone(800) + noise(900, seed=3)
                await send_audio(ws, sent)
                head = await recv_until(ws, of_type("response.output_audio.delta"))
                types = [e.type for e in head]
                order = [
                    "input_audio_buffer.speech_started",
                    "input_audio_buffer.speech_stopped",
                    "input_audio_buffer.committed",
                    "conversation.item.added",
                    "response.created",
                    "response.output_item.added",
                    "response.output_audio.delta",
                ]
                first_seen = [types.index(t) for t in order]  # each present, in this order
                assert first_seen == sorted(first_seen)
                started = head[types.index("input_audio_buffer.speech_started")]
                stopped = head[types.index("input_audio_buffer.speech_stopped")]
                committed = head[types.index("input_audio_buffer.committed")]
                assert started.data["audio_start_ms"] == 500 - 300  # prefix padding
                assert stopped.data["audio_end_ms"] == 1300 + 500  # plus silence duration
                assert started.item_id == stopped.item_id == committed.item_id
                assert "input_audio_transcription.completed" in " ".join(types)
                response_id = head[types.index("response.created")].response_id
                t_first = time.monotonic()
                rest = await recv_until(ws, of_type("response.done"))
                elapsed_s = time.monotonic() - t_first
                done = rest[-1]
                assert done.response_id == response_id
                assert done.response_status == "completed"
                assert done.data["response"]["usage"]["total_tokens"] > 0
                rest_types = [e.type for e in rest]
                assert "response.output_audio_transcript.done" in rest_types
                assert "response.output_audio.done" in rest_types
                transcript = next(
                    e for e in rest if e.type == "response.output_audio_transcript.done"
                ).data["transcript"]
                assert transcript.startswith("(repeater) 1.1 s")

                answer = audio_of(head + rest, response_id)
                start = ev.ms_to_samples(started.data["audio_start_ms"]) * 2
                assert answer == sent[start : start + len(answer)]  # the user's own audio
                answer_ms = len(answer) / 2 / RATE * 1000
                assert abs(answer_ms - (800 + 300)) <= 40  # utterance + prefix, +/- 2 frames
                # Paced in real time: all but the first 100 ms chunk take their time.
                assert elapsed_s >= answer_ms / 1000 - 0.1 - 0.05
                received = srv.log.types("in")
                assert received[0] == "session.update"
                assert set(srv.log.types("out")) <= ev.KNOWN_SERVER_EVENTS
                assert set(received[1:]) == {"input_audio_buffer.append"}

    run(body())


def test_second_utterance_interrupts_the_answer():
    async def body() -> None:
        async with LocalRealtimeServer() as srv:
            ws = await open_client(srv)
            async with ws:
                await start_session(ws, ev.SessionConfig())
                await send_audio(ws, silence(400) + tone(1500) + silence(700))
                head = await recv_until(ws, of_type("response.output_audio.delta"))
                first = next(e for e in head if e.type == "response.created").response_id
                await send_audio(ws, tone(500, hz=500) + silence(700))
                events = await recv_until(
                    ws, lambda e: e.type == "response.done" and e.response_id == first
                )
                done = events[-1]
                assert done.response_status == "cancelled"
                assert done.response_status_reason == "turn_detected"
                assert done.data["response"]["status_details"]["type"] == "cancelled"
                speech = [e for e in events if e.type == "input_audio_buffer.speech_started"]
                assert speech  # the interruption came from the second utterance
                after = await recv_until(
                    ws, lambda e: e.type == "response.done" and e.response_id != first
                )
                assert not [e for e in after if e.response_id == first]
                assert after[-1].response_status == "completed"
                second_audio = audio_of(after, after[-1].response_id)
                # The prefix padding cannot reach back into the first, committed turn: only
                # the 200 ms of silence after its end (stop at 500 ms of silence) remain.
                assert abs(len(second_audio) / 2 / RATE * 1000 - (500 + 200)) <= 40

                # What reached the client of the interrupted answer bounds its truncation.
                sent_first = audio_of(head + events, first)
                item_id = next(e for e in head if e.type == "response.output_item.added").item_id
                sent_ms = ev.samples_to_ms(len(sent_first) // 2)
                await send(ws, ev.conversation_item_truncate(item_id, sent_ms + 100, "evt_t1"))
                error = await recv(ws)
                assert error.type == "error"
                assert error.error["type"] == "invalid_request_error"
                assert error.error_code == "invalid_value"
                assert error.error["param"] == "audio_end_ms"
                assert error.error["event_id"] == "evt_t1"
                assert "is already shorter than" in error.error_message
                await send(ws, ev.conversation_item_truncate(item_id, sent_ms))
                truncated = await recv(ws)
                assert truncated.type == "conversation.item.truncated"
                assert truncated.data["audio_end_ms"] == sent_ms
                await send(ws, ev.conversation_item_truncate(item_id, sent_ms))  # again: fits
                assert (await recv(ws)).type == "conversation.item.truncated"
                await send(ws, ev.conversation_item_truncate(item_id, sent_ms // 2))
                assert (await recv(ws)).type == "conversation.item.truncated"
                await send(ws, ev.conversation_item_truncate(item_id, sent_ms // 2 + 1))
                assert (await recv(ws)).error["param"] == "audio_end_ms"  # now shorter
                await send(ws, ev.conversation_item_truncate("item_nope", 10))
                assert (await recv(ws)).error["param"] == "item_id"
                user_item = next(
                    e for e in head if e.type == "input_audio_buffer.committed"
                ).item_id
                await send(ws, ev.conversation_item_truncate(user_item, 10))
                assert (await recv(ws)).error_code == "unsupported_content_type"
                records = srv.log.truncations
                assert [r.accepted for r in records] == [
                    False,
                    True,
                    True,
                    True,
                    False,
                    False,
                    False,
                ]
                assert records[1].audio_end_ms == sent_ms

    run(body())


def test_barge_in_with_playback_accounting_sends_an_accepted_truncation():
    """The client-side core against the server contract: play the answer through a
    PlaybackQueue drained at device pace, talk over it, truncate at what was played."""

    async def body() -> None:
        queue = PlaybackQueue(TruncationMargins(device_latency_ms=0, received_margin_ms=0))
        played = bytearray()
        block_samples = ev.ms_to_samples(20)

        async def device() -> None:  # stands in for the sounddevice callback
            t0 = time.monotonic()
            for n in range(1000):
                await asyncio.sleep(max(0.0, t0 + n * 0.02 - time.monotonic()))
                pcm, accounting = queue.pull(block_samples)
                if accounting.spans:
                    played.extend(pcm[: accounting.audio_samples * 2])

        async with LocalRealtimeServer() as srv:
            ws = await open_client(srv)
            device_task = asyncio.create_task(device())
            try:
                async with ws:
                    await start_session(ws, ev.SessionConfig())
                    await send_audio(ws, silence(400) + tone(1500) + silence(700))
                    active: set[str] = set()
                    talked_over = False
                    plan = None
                    deadline = time.monotonic() + 10
                    while True:
                        event = await recv(ws, max(0.01, deadline - time.monotonic()))
                        if event.type == "response.created":
                            active.add(event.response_id)
                        elif event.is_audio_delta:
                            queue.push(
                                event.item_id, event.response_id, ev.audio_delta_bytes(event)
                            )
                        elif event.type == "response.output_audio.done":
                            queue.mark_audio_done(event.item_id)
                        elif event.type == "response.done":
                            queue.mark_response_done(event.response_id)
                            active.discard(event.response_id)
                        elif event.type == "input_audio_buffer.speech_started":
                            plan = queue.interrupt(active) if talked_over else queue.interrupt()
                            if plan is not None:
                                await send(ws, plan.event("evt_trunc"))
                        elif event.type in ("conversation.item.truncated", "error"):
                            break
                        if not talked_over and len(played) >= 2 * ev.ms_to_samples(500):
                            talked_over = True
                            await send_audio(ws, tone(400, hz=600) + silence(700))
                    assert event.type == "conversation.item.truncated", event.data
                    assert plan is not None
                    assert event.data["audio_end_ms"] == plan.audio_end_ms
                    # What the "device" played up to the barge-in is what was truncated to.
                    assert abs(plan.audio_end_ms - ev.samples_to_ms(plan.played_samples)) <= 1
                    assert plan.audio_end_ms >= 500
                    assert plan.played_samples <= plan.received_samples
                    # Nothing of the interrupted answer plays or counts after the barge-in
                    # (the next answer may already be queued: its turn ended at once).
                    assert queue.is_dropped(plan.response_id)
                    status = queue.item_status(plan.item_id)
                    assert status.played_samples == plan.played_samples
                    assert status.received_samples == plan.received_samples
                    assert srv.log.truncations[-1].accepted
            finally:
                device_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(device_task, 2)

    run(body())


def test_response_cancel_and_tone_answer():
    async def body() -> None:
        async with LocalRealtimeServer() as srv:
            ws = await open_client(srv)
            async with ws:
                await start_session(ws, ev.SessionConfig())
                await send(ws, ev.response_cancel("evt_c1"))
                error = await recv(ws)
                assert error.error_code == "response_cancel_not_active"
                assert error.error["event_id"] == "evt_c1"
                await send(ws, ev.response_create())  # nothing said yet: a tone
                head = await recv_until(ws, of_type("response.output_audio.delta"))
                response_id = head[0].response_id
                await send(ws, ev.response_create("evt_c2"))
                busy = await recv_until(ws, of_type("error"))
                assert busy[-1].error_code == "conversation_already_has_active_response"
                await send(ws, ev.response_cancel())
                events = await recv_until(ws, of_type("response.done"))
                assert events[-1].response_id == response_id
                assert events[-1].response_status == "cancelled"
                assert events[-1].response_status_reason == "client_cancelled"

    run(body())


def test_push_to_talk_commit_clear_and_create():
    async def body() -> None:
        settings = LocalServerSettings(output_speed=8.0)
        async with LocalRealtimeServer(settings) as srv:
            ws = await open_client(srv)
            async with ws:
                await start_session(ws, ev.SessionConfig(turn_detection="none"))
                await send_audio(ws, tone(60))
                await send(ws, ev.input_audio_commit("evt_p1"))
                error = await recv(ws)
                assert error.error_code == "input_audio_buffer_commit_empty"
                assert error.error["type"] == "invalid_request_error"
                await send(ws, ev.input_audio_clear())
                assert (await recv(ws)).type == "input_audio_buffer.cleared"
                said = tone(600) + silence(300)  # no VAD: nothing happens on its own
                await send_audio(ws, said)
                await send(ws, ev.input_audio_commit())
                committed = await recv_until(ws, of_type("input_audio_buffer.committed"))
                assert not [e for e in committed if e.type.startswith("input_audio_buffer.speech")]
                await send(ws, ev.response_create())
                events = await recv_until(ws, of_type("response.done"))
                assert events[-1].response_status == "completed"
                assert audio_of(events, events[-1].response_id) == said

    run(body())


def test_session_update_needs_the_ga_session_type():
    async def body() -> None:
        async with LocalRealtimeServer() as srv:
            ws = await open_client(srv)
            async with ws:
                assert (await recv(ws)).type == "session.created"
                await send(ws, {"type": "session.update", "session": {"instructions": "x"}})
                error = await recv(ws)
                assert error.error_code == "missing_required_parameter"
                assert error.error["param"] == "session.type"
                await send(ws, {"type": "output_audio_buffer.clear"})  # WebRTC-only event
                assert (await recv(ws)).error["param"] == "type"
                await asyncio.wait_for(ws.send("{not json"), 5)
                assert (await recv(ws)).type == "error"

    run(body())


# --- handshake and connection handling ---------------------------------------------------


def test_missing_authorization_is_rejected_with_401():
    async def body() -> None:
        async with LocalRealtimeServer() as srv:
            with pytest.raises(InvalidStatus) as info:
                await open_client(srv, headers={})
            assert info.value.response.status_code == 401
            assert b"API key" in info.value.response.body
            with pytest.raises(InvalidStatus) as info:
                await open_client(srv, headers={"Authorization": "Basic abc"})
            assert info.value.response.status_code == 401
            assert [c.outcome for c in srv.log.connections] == ["unauthorized", "unauthorized"]

    run(body())


def test_beta_header_is_closed_with_4000():
    async def body() -> None:
        async with LocalRealtimeServer() as srv:
            ws = await open_client(srv, headers={**AUTH, "OpenAI-Beta": "realtime=v1"})
            error = await recv(ws)
            assert error.error_code == "beta_api_shape_disabled"
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == BETA_CLOSE_CODE
            assert "beta_api_shape_disabled" in info.value.rcvd.reason

    run(body())


def test_dropped_connection_can_reconnect_and_log_hides_the_key():
    async def body() -> None:
        async with LocalRealtimeServer() as srv:
            ws = await open_client(srv)
            assert (await recv(ws)).type == "session.created"
            assert srv.connection_count == 1
            assert await asyncio.wait_for(srv.drop_connections(), 5) == 1
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            ws2 = await open_client(srv)
            async with ws2:
                assert (await recv(ws2)).type == "session.created"
            records = srv.log.connections
            assert [r.outcome for r in records] == ["accepted", "accepted"]
            assert records[0].model == "gpt-realtime"
            assert "test-key-123" not in json.dumps([r.headers for r in records])

    run(body())


def test_session_limit_ends_the_session():
    async def body() -> None:
        async with LocalRealtimeServer(LocalServerSettings(session_limit_s=0.3)) as srv:
            ws = await open_client(srv)
            assert (await recv(ws)).type == "session.created"
            error = await recv(ws, timeout_s=3)
            assert error.error_code == "session_expired"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)

    run(body())


def test_background_thread_server():
    with LocalServerThread() as thread:
        assert thread.url.startswith("ws://127.0.0.1:")

        async def body() -> None:
            ws = await asyncio.wait_for(
                connect(thread.url, additional_headers=AUTH, proxy=None, open_timeout=5), 5
            )
            assert (await recv(ws)).type == "session.created"
            assert await asyncio.wait_for(asyncio.to_thread(thread.drop_connections), 5) == 1
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)

        run(body())
        assert thread.server.log.connections[0].outcome == "accepted"


def test_busy_port_is_a_user_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]

        async def body() -> None:
            with pytest.raises(UserError):
                async with LocalRealtimeServer(LocalServerSettings(port=port)):
                    pass

        run(body())


# --- function tools: the repeater calls one and answers with its output ---------------------

OPENAI_SERVER_EVENT = pydantic.TypeAdapter(realtime.RealtimeServerEvent)
CLOCK_TOOL = {
    "type": "function",
    "name": "get_local_time",
    "description": "The local date, time and time zone.",
    "parameters": {"type": "object", "properties": {}},
}
VOLUME_TOOL = {
    "type": "function",
    "name": "set_volume",
    "description": "Set the speaker volume.",
    "parameters": {"type": "object", "properties": {"percent": {"type": "integer"}}},
}
CALL_ARGS = '{"zone": "local", "format": "24h", "note": "more than one piece of JSON"}'


async def start_session_with_tools(ws: ClientConnection, tools: list[dict[str, Any]]) -> None:
    assert (await recv(ws)).type == "session.created"
    update = ev.session_update(ev.SessionConfig())
    update["session"]["tools"] = tools
    await send(ws, update)
    updated = await recv(ws)
    assert updated.type == "session.updated"
    assert updated.data["session"]["tools"] == tools


def tool_output(call_id: str, output: str, event_id: str | None = None) -> dict[str, Any]:
    item = {"type": "function_call_output", "call_id": call_id, "output": output}
    return {"type": "conversation.item.create", "event_id": event_id, "item": item}


def from_type(events: list[ev.ServerEvent], event_type: str) -> list[ev.ServerEvent]:
    """`events` from the first one of `event_type` on."""
    first = next(i for i, e in enumerate(events) if e.type == event_type)
    return events[first:]


def transcript_of(events: list[ev.ServerEvent]) -> str:
    done = [e for e in events if e.type == "response.output_audio_transcript.done"]
    assert len(done) == 1
    return str(done[0].data["transcript"])


def test_a_question_becomes_a_tool_call_and_its_output_the_answer():
    async def body() -> None:
        settings = LocalServerSettings(
            output_speed=8.0, call_tool="get_local_time", call_tool_args=CALL_ARGS
        )
        async with LocalRealtimeServer(settings) as srv:
            ws = await open_client(srv)
            async with ws:
                await start_session_with_tools(ws, [VOLUME_TOOL, CLOCK_TOOL])
                said = silence(400) + tone(800) + silence(700)
                await send_audio(ws, said)
                events = from_type(
                    await recv_until(ws, of_type("response.done")), "response.created"
                )
                n_deltas = sum(e.type == "response.function_call_arguments.delta" for e in events)
                assert n_deltas > 1  # the arguments come in pieces
                assert [e.type for e in events] == [
                    "response.created",
                    "response.output_item.added",
                    "conversation.item.added",
                    *["response.function_call_arguments.delta"] * n_deltas,
                    "response.function_call_arguments.done",
                    "response.output_item.done",
                    "conversation.item.done",
                    "response.done",
                ]
                for event in events:  # each as openai-python reads the GA event
                    assert OPENAI_SERVER_EVENT.validate_python(event.data).type == event.type
                response_id = events[0].response_id
                added = events[1].data["item"]
                assert added["type"] == "function_call"
                assert added["status"] == "in_progress"
                assert (added["name"], added["arguments"]) == ("get_local_time", "")
                call_id = added["call_id"]
                assert re.fullmatch(r"call_\d+", call_id)
                deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
                assert "".join(e.data["delta"] for e in deltas) == CALL_ARGS
                args_done = events[-4]
                assert args_done.data["arguments"] == CALL_ARGS
                assert args_done.data["name"] == "get_local_time"
                for event in [*deltas, args_done]:
                    assert (event.response_id, event.item_id) == (response_id, added["id"])
                    assert event.data["call_id"] == call_id
                item_done = events[-3].data["item"]
                assert item_done == {**added, "status": "completed", "arguments": CALL_ARGS}
                done = events[-1]
                assert done.response_id == response_id
                assert done.response_status == "completed"
                assert done.data["response"]["output"] == [item_done]
                assert done.data["response"]["usage"]["output_token_details"]["audio_tokens"] == 0

                output = '{"time": "10:42", "zone": "Europe/Paris"}'
                await send(ws, tool_output(call_id, output, "evt_out"))
                stored = [await recv(ws), await recv(ws)]
                assert [e.type for e in stored] == [
                    "conversation.item.added",
                    "conversation.item.done",
                ]
                assert stored[0].data["previous_item_id"] == added["id"]
                assert stored[1].data["item"]["call_id"] == call_id
                assert stored[1].data["item"]["output"] == output
                await send(ws, ev.response_create())
                answer = await recv_until(ws, of_type("response.done"))
                assert answer[-1].response_status == "completed"
                transcript = transcript_of(answer)
                assert transcript.startswith(f"(repeater) tool get_local_time said: {output}")
                assert transcript.endswith("then 1.1 s of audio")  # and the usual repeat
                spoken = audio_of(answer, answer[-1].response_id)
                start = ev.ms_to_samples(400 - 300) * 2  # the question from its prefix padding
                assert spoken == said[start : start + len(spoken)]
                assert abs(len(spoken) / 2 / RATE - 1.1) < 0.05
                assert "conversation.item.create" in srv.log.types("in")
                assert set(srv.log.types("out")) <= ev.KNOWN_SERVER_EVENTS

                # The output was answered: another response.create has nothing but a tone.
                await send(ws, ev.response_create())
                again = await recv_until(ws, of_type("response.done"))
                assert transcript_of(again) == "(repeater) nothing to repeat: a tone"

    run(body())


def test_a_tool_the_session_does_not_declare_is_not_called():
    async def body() -> None:
        settings = LocalServerSettings(output_speed=8.0, call_tool="get_local_time")
        async with LocalRealtimeServer(settings) as srv:
            ws = await open_client(srv)
            async with ws:
                await start_session_with_tools(ws, [VOLUME_TOOL])
                await send_audio(ws, silence(400) + tone(800) + silence(700))
                events = await recv_until(ws, of_type("response.done"))
                assert not [e for e in events if "function_call" in e.type]
                assert events[-1].data["response"]["output"][0]["type"] == "message"
                assert transcript_of(events) == "(repeater) 1.1 s of audio"
                assert len(audio_of(events, events[-1].response_id)) > 0

    run(body())


def test_outputs_for_unknown_calls_and_other_items_are_refused_and_the_session_goes_on():
    async def body() -> None:
        settings = LocalServerSettings(output_speed=8.0, call_tool="get_local_time")
        async with LocalRealtimeServer(settings) as srv:
            first = await open_client(srv)
            async with first:
                await start_session_with_tools(first, [CLOCK_TOOL])
                await send_audio(first, silence(400) + tone(500) + silence(700))
                events = await recv_until(first, of_type("response.done"))
                call_id = next(
                    e for e in events if e.type == "response.function_call_arguments.done"
                ).data["call_id"]
            ws = await open_client(srv)  # a later session does not know that call
            async with ws:
                await start_session_with_tools(ws, [CLOCK_TOOL])
                for wrong in (call_id, "call_999"):
                    await send(ws, tool_output(wrong, "{}", "evt_x"))
                    error = await recv(ws)
                    assert error.type == "error"
                    assert error.error["type"] == "invalid_request_error"
                    assert error.error["param"] == "item.call_id"
                    assert error.error["event_id"] == "evt_x"
                    assert wrong in error.error_message
                message = {"type": "message", "role": "user", "content": []}
                await send(ws, {"type": "conversation.item.create", "item": message})
                assert (await recv(ws)).error["param"] == "item.type"
                await send(
                    ws,
                    {
                        "type": "conversation.item.create",
                        "item": {"type": "function_call_output", "call_id": "call_1"},
                    },
                )
                assert (await recv(ws)).error["param"] == "item.output"
                # Nothing was taken: the next question is a call again, and its output answers.
                await send_audio(ws, silence(400) + tone(500) + silence(700))
                events = await recv_until(ws, of_type("response.done"))
                call = events[-1].data["response"]["output"][0]
                assert call["type"] == "function_call"
                assert call["call_id"] != call_id
                assert call["arguments"] == "{}"
                await send(ws, tool_output(call["call_id"], "line one\nline two " + "x" * 300))
                await recv_until(ws, of_type("conversation.item.done"))
                await send(ws, ev.response_create())
                answer = await recv_until(ws, of_type("response.done"))
                said = transcript_of(answer).removeprefix("(repeater) tool get_local_time said: ")
                shown = said.split("; then ")[0]
                assert shown.startswith("line one line two xxx")  # one line
                assert len(shown) == 200
                assert shown.endswith("\u2026")
            assert [c.outcome for c in srv.log.connections] == ["accepted", "accepted"]

    run(body())


def test_cancel_during_the_answer_after_a_tool():
    async def body() -> None:
        settings = LocalServerSettings(call_tool="get_local_time")  # real-time pace
        async with LocalRealtimeServer(settings) as srv:
            ws = await open_client(srv)
            async with ws:
                await start_session_with_tools(ws, [CLOCK_TOOL])
                await send_audio(ws, silence(400) + tone(1500) + silence(700))
                events = await recv_until(ws, of_type("response.done"))
                call_id = events[-1].data["response"]["output"][0]["call_id"]
                await send(ws, tool_output(call_id, '"ok"'))
                await send(ws, ev.response_create())
                head = await recv_until(ws, of_type("response.output_audio.delta"))
                response_id = head[-1].response_id
                transcript_delta = await recv(ws)
                assert transcript_delta.type == "response.output_audio_transcript.delta"
                assert transcript_delta.data["delta"].startswith(
                    '(repeater) tool get_local_time said: "ok"'
                )
                await send(ws, ev.response_cancel("evt_cancel"))
                rest = await recv_until(ws, of_type("response.done"))
                assert rest[-1].response_id == response_id
                assert rest[-1].response_status == "cancelled"
                assert rest[-1].response_status_reason == "client_cancelled"
                played_ms = len(audio_of(head + rest, response_id)) / 2 / RATE * 1000
                assert played_ms < 1800 / 2  # well short of the whole answer
                await send(ws, ev.response_cancel("evt_late"))
                assert (await recv(ws)).error_code == "response_cancel_not_active"

    run(body())


def test_tool_settings_and_declarations_are_checked():
    with pytest.raises(UserError, match="not JSON"):
        LocalServerSettings(call_tool="x", call_tool_args="{")
    with pytest.raises(UserError, match="not JSON"):
        LocalServerSettings(call_tool_args='{"a": NaN}')
    with pytest.raises(UserError, match="JSON object, not list"):
        LocalServerSettings(call_tool_args="[1]")
    with pytest.raises(UserError, match="not a valid function name"):
        LocalServerSettings(call_tool="set volume")
    assert LocalServerSettings(call_tool="set_volume", call_tool_args=' {"percent": 3} ')

    async def body() -> None:
        async with LocalRealtimeServer() as srv:
            ws = await open_client(srv)
            async with ws:
                assert (await recv(ws)).type == "session.created"
                for tools, param in (
                    ({"type": "function"}, "session.tools"),
                    ([CLOCK_TOOL, "x"], "session.tools[1]"),
                    ([{**CLOCK_TOOL, "name": "no spaces"}], "session.tools[0].name"),
                    ([{**CLOCK_TOOL, "name": "n" * 65}], "session.tools[0].name"),
                ):
                    update = ev.session_update(ev.SessionConfig())
                    update["session"]["tools"] = tools
                    await send(ws, update)
                    error = await recv(ws)
                    assert error.error["param"] == param, tools
                mcp = {"type": "mcp", "server_label": "home", "server_url": "https://x"}
                update = ev.session_update(ev.SessionConfig())
                update["session"]["tools"] = [mcp, CLOCK_TOOL]
                await send(ws, update)
                assert (await recv(ws)).type == "session.updated"

    run(body())


def test_local_server_command_refuses_bad_tool_arguments_in_one_line():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pivoicectl",
            "local-server",
            "--call-tool",
            "set_volume",
            "--call-tool-args",
            "percent=30",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "tool arguments are not JSON" in lines[0]
    assert "Traceback" not in result.stderr


def test_tool_calls_keep_only_the_newest_question_and_answer_the_latest_output():
    numbers = iter(range(1, 10_000))
    calls = ToolCalls("get_local_time", "{}", lambda: f"call_{next(numbers)}")
    assert calls.tool_to_call({"tools": [VOLUME_TOOL]}) is None
    assert calls.tool_to_call({"tools": [{"type": "mcp", "name": "get_local_time"}]}) is None
    assert calls.tool_to_call({"tools": [VOLUME_TOOL, CLOCK_TOOL]}) == "get_local_time"
    first = calls.make("get_local_time", b"\x01\x00" * 10, 10)
    second = calls.make("get_local_time", b"\x02\x00" * 20, 20)
    assert (first.call_id, second.call_id) == ("call_1", "call_2")
    assert calls.take_result() is None  # no output yet
    calls.record_output("call_1", "one")
    calls.record_output("call_2", "two")
    result = calls.take_result()
    assert result is not None
    assert (result.output, result.question_pcm, result.input_audio_samples) == (
        "two",
        b"\x02\x00" * 20,
        20,
    )
    assert calls.take_result() is None  # one answer spoke for both outputs
    calls.record_output("call_1", "again")  # still a known call
    late = calls.take_result()
    assert late is not None
    assert (late.output, late.question_pcm) == ("again", b"")  # its question was let go
    for _ in range(MAX_CALLS):
        calls.make("get_local_time", b"", 0)
    assert not calls.knows("call_1")
    assert calls.knows(f"call_{MAX_CALLS + 2}")
