"""`--trace-url`: send the session trace to an HTTP collector, in the background.

Why a thread with a bounded queue: the trace is written from the event loop that also
moves the audio, and a collector across the internet can be slow or gone. `post()`
only appends to a bounded queue (never blocks; when full the record is dropped and
counted); one daemon thread POSTs with a timeout. After `max_failures` failures in a
row it stops trying for `cooldown_s` (dropping records meanwhile), so a dead collector
costs a few timeouts, not one per event. Nothing here raises into the session, and
`close()` waits at most `close_timeout_s` for the queue to drain.

Wire format (every body is JSON, already redacted):

    POST {url}/start   {"session_id": "...", "record": {"type": "start", "t_s": 0.0, ...}}
    POST {url}/event   {"session_id": "...", "record": {"type": "turn", "t_s": 3.2, ...}}
    POST {url}/end     {"session_id": "...", "record": {"type": "end", ...}}
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class TraceSinkSettings:
    timeout_s: float = 2.0
    queue_records: int = 1000
    max_failures: int = 3
    cooldown_s: float = 30.0
    close_timeout_s: float = 2.0


_STOP = object()


class HttpTraceSink:
    """POSTs trace records to `{base_url}/start|event|end` from a background thread."""

    def __init__(
        self,
        base_url: str,
        settings: TraceSinkSettings = TraceSinkSettings(),
        session_id: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        self.session_id = session_id or f"pv_{uuid.uuid4().hex[:16]}"
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[Any] = queue.Queue(settings.queue_records)
        host = urlsplit(base_url).hostname or ""
        loopback = host in ("localhost", "::1") or host.startswith("127.")
        handlers = [urllib.request.ProxyHandler({})] if loopback else []
        self._opener = urllib.request.build_opener(*handlers)
        self._failures_in_row = 0
        self._paused_until = 0.0
        self._thread = threading.Thread(target=self._run, name="trace-sink", daemon=True)
        self._thread.start()

    def post(self, record: dict[str, Any]) -> None:
        """Queue one (redacted) record; never blocks."""
        kind = record.get("type")
        path = "start" if kind == "start" else "end" if kind == "end" else "event"
        try:
            self._queue.put_nowait((path, record))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Let the queue drain for at most `close_timeout_s`, then give up on it."""
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            self._paused_until = float("inf")  # drop the backlog fast
            self._queue_stop_later()
        self._thread.join(self.settings.close_timeout_s)

    def _queue_stop_later(self) -> None:
        def put() -> None:
            self._queue.put(_STOP)

        threading.Thread(target=put, daemon=True).start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            path, record = item
            if time.monotonic() < self._paused_until:
                self.dropped += 1
                continue
            if self._send(path, record):
                self.sent += 1
                self._failures_in_row = 0
            else:
                self.failed += 1
                self._failures_in_row += 1
                if self._failures_in_row >= self.settings.max_failures:
                    self._paused_until = time.monotonic() + self.settings.cooldown_s
                    self._failures_in_row = 0

    def _send(self, path: str, record: dict[str, Any]) -> bool:
        body = json.dumps({"session_id": self.session_id, "record": record}, default=str)
        request = urllib.request.Request(
            f"{self.base_url}/{path}",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with self._opener.open(request, timeout=self.settings.timeout_s) as response:
                response.read(65536)
                return 200 <= response.status < 300
        except Exception:  # any failure of the collector is only counted
            return False
