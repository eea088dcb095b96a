"""`--trace-url`: a real HTTP collector on 127.0.0.1; a slow one never holds anything up."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pivoicectl.realtime.edges.trace_file import TraceWriter
from pivoicectl.realtime.edges.trace_http import HttpTraceSink, TraceSinkSettings

pytestmark = pytest.mark.timeout(30)


@contextmanager
def collector(hang: bool = False) -> Iterator[tuple[str, list[tuple[str, dict]]]]:
    posts: list[tuple[str, dict]] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if hang:
                release.wait(10)
                return
            posts.append((self.path, json.loads(body)))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/voice/trace", posts
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_records_reach_the_collector_redacted_in_order(tmp_path):
    with collector() as (url, posts):
        sink = HttpTraceSink(url + "/")
        trace = TraceWriter(tmp_path / "t.jsonl", secrets=("sk-SECRET",), sink=sink)
        trace.write({"type": "start", "url": "wss://x"})
        trace.write({"type": "error", "message": "bad key sk-SECRET"})
        trace.write({"type": "end", "reason": "done"})
        trace.close()
    assert [p for p, _ in posts] == [
        "/v1/voice/trace/start",
        "/v1/voice/trace/event",
        "/v1/voice/trace/end",
    ]
    assert {b["session_id"] for _, b in posts} == {sink.session_id}
    assert "sk-SECRET" not in json.dumps(posts)
    assert posts[1][1]["record"]["type"] == "error"
    assert sink.sent == 3 and sink.failed == 0


def test_a_hanging_collector_never_blocks_the_writer_and_close_is_bounded():
    with collector(hang=True) as (url, _):
        settings = TraceSinkSettings(timeout_s=0.3, queue_records=50, close_timeout_s=0.5)
        sink = HttpTraceSink(url, settings)
        trace = TraceWriter(None, sink=sink)
        start = time.monotonic()
        for i in range(2000):  # far more than the queue holds
            trace.write({"type": "event", "i": i})
        assert time.monotonic() - start < 0.5  # ~microseconds per record, never a POST
        start = time.monotonic()
        trace.close()
        assert time.monotonic() - start < 1.0
    assert sink.dropped > 0 and sink.sent == 0


def test_a_dead_collector_is_counted_not_raised():
    sink = HttpTraceSink(
        "http://127.0.0.1:9/trace", TraceSinkSettings(timeout_s=0.3, max_failures=2)
    )
    for i in range(5):
        sink.post({"type": "event", "i": i})
    sink.close()
    assert sink.sent == 0 and sink.failed + sink.dropped == 5
    assert sink.failed == 2  # then it paused instead of timing out on every record


def test_a_session_with_a_hanging_collector_runs_and_ends_on_time():
    import asyncio

    from pivoicectl.realtime.client import ClientOptions
    from pivoicectl.realtime.protocol import events as ev
    from pivoicectl.standin import LocalServerThread
    from tests.unit.test_realtime_token import _run_client, _until

    with collector(hang=True) as (url, _), LocalServerThread() as server:
        sink = HttpTraceSink(url, TraceSinkSettings(timeout_s=0.5, close_timeout_s=0.5))
        trace = TraceWriter(None, sink=sink)
        options = ClientOptions(
            url=ev.realtime_url(base_url=server.base_url), api_key="k", chime=False
        )

        async def script(client, conv) -> None:
            await _until(lambda: conv.ready, 10)
            await asyncio.sleep(1.0)  # mic blocks flow while the collector hangs

        start = time.monotonic()
        client = _run_client(options, trace, script)
        trace.close()
        assert time.monotonic() - start < 5.0
    assert client.stop_reason == "test" and client.mic_blocks_sent >= 30


def test_a_trace_file_that_cannot_be_written_stops_with_one_warning_not_the_run(capsys):
    """/dev/full opens for writing and refuses every write (ENOSPC), like a full disk."""
    from pathlib import Path

    from pivoicectl.realtime.edges.trace_file import TraceWriter

    trace = TraceWriter(Path("/dev/full"))
    trace.write({"type": "start"})  # no exception
    trace.write({"type": "recv"})
    trace.close()
    assert trace.lost == "No space left on device"
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines == ["warning: the trace /dev/full stopped (No space left on device); run goes on"]
