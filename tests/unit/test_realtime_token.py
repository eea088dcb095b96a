"""`--token-url`: a real HTTP backend on 127.0.0.1 hands out client secrets; one hangs."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pivoicectl.errors import UserError
from pivoicectl.realtime.client import ClientOptions, RealtimeClient
from pivoicectl.realtime.edges.token_source import (
    TokenFailed,
    TokenRejected,
    fetch_client_secret,
    parse_secret,
)
from pivoicectl.realtime.edges.trace_file import TraceWriter, read_trace
from pivoicectl.realtime.edges.websocket import connect_websocket
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.session.conversation import Conversation
from pivoicectl.realtime.session.playback import PlaybackQueue, TruncationMargins
from pivoicectl.realtime.session.reconnect import BackoffPolicy
from pivoicectl.standin import LocalServerThread
from tests.unit.test_realtime_ptt import FakeMic, QuietUi

pytestmark = pytest.mark.timeout(40)


@contextmanager
def backend(behaviour: str) -> Iterator[tuple[str, list[dict]]]:
    """A token backend: `ok` (a fresh secret per request), `hang`, `500`, `404`, `html`."""
    requests: list[dict] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            requests.append(json.loads(self.rfile.read(length) or b"{}"))
            if behaviour == "hang":
                release.wait(10)
                return
            if behaviour in ("500", "404"):
                self.send_response(int(behaviour))
                self.end_headers()
                return
            body = (
                b"<html>"
                if behaviour == "html"
                else json.dumps(
                    {"client_secret": {"value": f"ek_SECRET_{len(requests)}", "expires_at": 1e10}}
                ).encode()
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/realtime/session", requests
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_parse_secret_shapes():
    assert parse_secret({"value": "ek_1", "expires_at": 5}).value == "ek_1"
    assert parse_secret({"client_secret": {"value": "ek_2"}}).value == "ek_2"
    assert parse_secret({"client_secret": "ek_3"}).value == "ek_3"
    assert parse_secret({"token": "ek_4"}).value == "ek_4"
    assert "ek_1" not in repr(parse_secret({"value": "ek_1"}))
    for bad in ({}, {"value": ""}, [], {"client_secret": {"v": 1}}):
        with pytest.raises(TokenRejected):
            parse_secret(bad)


def test_fetch_ok_and_errors_are_bounded_one_liners():
    with backend("ok") as (url, requests):
        assert fetch_client_secret(url, {"model": "m"}).value == "ek_SECRET_1"
        assert requests == [{"model": "m"}]
    for behaviour, kind in (("500", TokenFailed), ("404", TokenRejected), ("html", TokenRejected)):
        with backend(behaviour) as (url, _), pytest.raises(kind) as err:
            fetch_client_secret(url)
        assert "\n" not in str(err.value)
    with backend("hang") as (url, _):
        start = time.monotonic()
        with pytest.raises(TokenFailed, match=r"did not answer within 0\.5 s"):
            fetch_client_secret(url, timeout_s=0.5)
        assert time.monotonic() - start < 2.0


def _run_client(options: ClientOptions, trace: TraceWriter, script) -> RealtimeClient:
    seen: list[dict[str, str]] = []

    async def recording_connector(url: str, headers: dict[str, str]):
        seen.append(dict(headers))
        return await connect_websocket(url, headers)

    async def main() -> RealtimeClient:
        conversation = Conversation(
            ev.SessionConfig(), PlaybackQueue(TruncationMargins(received_margin_ms=0))
        )
        client = RealtimeClient(
            options, conversation, FakeMic(), QuietUi(), trace, connector=recording_connector
        )
        task = asyncio.create_task(client.run())
        scripted = asyncio.create_task(script(client, conversation))
        try:
            done, _ = await asyncio.wait({task, scripted}, return_when=asyncio.FIRST_COMPLETED)
            if scripted in done:
                scripted.result()
            else:
                scripted.cancel()
        finally:
            client.stop("test")
            await asyncio.wait_for(task, 10)
        client.seen_headers = seen  # type: ignore[attr-defined]
        return client

    return asyncio.run(asyncio.wait_for(main(), 30))


async def _until(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_each_connection_gets_a_fresh_secret_as_bearer_and_it_never_reaches_the_trace(tmp_path):
    trace_path = tmp_path / "t.jsonl"
    with backend("ok") as (token_url, requests), LocalServerThread() as server:
        options = ClientOptions(
            url=ev.realtime_url(base_url=server.base_url),
            api_key="",
            chime=False,
            token_url=token_url,
            token_body={"model": "gpt-realtime"},
            backoff=BackoffPolicy(initial_delay_s=0.05),
        )
        trace = TraceWriter(trace_path)

        async def script(client, conv) -> None:
            await _until(lambda: conv.ready, 10)
            await asyncio.to_thread(server.drop_connections, True)
            await _until(lambda: conv.connections == 2 and conv.ready, 10)

        client = _run_client(options, trace, script)
        trace.close()
    assert [h["Authorization"] for h in client.seen_headers] == [
        "Bearer ek_SECRET_1",
        "Bearer ek_SECRET_2",
    ]
    assert requests == [{"model": "gpt-realtime"}] * 2
    text = trace_path.read_text()
    assert "ek_SECRET" not in text
    assert [r["type"] for r in read_trace(trace_path)].count("token") == 2


def test_a_hanging_backend_is_a_one_line_error_before_the_first_connection():
    with backend("hang") as (token_url, _):
        options = ClientOptions(
            url="ws://127.0.0.1:9/v1/realtime",
            api_key="",
            chime=False,
            token_url=token_url,
            token_timeout_s=0.5,
        )

        async def script(client, conv) -> None:
            await asyncio.sleep(5)

        start = time.monotonic()
        with pytest.raises(UserError) as err:
            _run_client(options, TraceWriter(None), script)
        assert time.monotonic() - start < 3.0
        assert "did not answer within 0.5 s" in err.value.message
