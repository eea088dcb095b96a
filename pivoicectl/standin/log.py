"""What the stand-in server received and sent, for tests and `--trace`.

Tests assert on the server's side of a conversation (which events a client sent, which
truncations were accepted, which handshakes were refused) rather than only on what the
client believes happened; this record is that side.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from pivoicectl.realtime.protocol.events import decode_audio


@dataclass(frozen=True)
class LogEntry:
    """One event the server received (`in`) or sent (`out`)."""

    t_s: float
    connection_id: int
    direction: Literal["in", "out"]
    type: str
    event_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TruncationRecord:
    """A `conversation.item.truncate` and whether it was accepted."""

    connection_id: int
    item_id: str
    audio_end_ms: int
    accepted: bool
    error_code: str | None = None
    item_audio_ms: int | None = None


@dataclass(frozen=True)
class ConnectionRecord:
    """One handshake: where it went, whether it was let in, headers with secrets masked."""

    connection_id: int
    path: str
    model: str | None
    outcome: Literal["accepted", "unauthorized", "not_found", "beta_rejected"]
    headers: dict[str, str]


class ServerLog:
    """Thread-safe record of everything the server saw, for tests and `--trace`.

    Written from the server's loop, read from any thread (the background-thread server
    is inspected from the test's thread). Audio payloads are kept as byte counts. Each
    record list keeps the newest `max_entries`, so a `local-server` left running for days
    (about 100 events a second while audio streams) does not grow without bound.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._entries: deque[LogEntry] = deque(maxlen=max_entries)
        self._truncations: deque[TruncationRecord] = deque(maxlen=max_entries)
        self._connections: deque[ConnectionRecord] = deque(maxlen=max_entries)

    def add(
        self,
        connection_id: int,
        direction: Literal["in", "out"],
        event: dict[str, Any],
    ) -> None:
        """Record one event with a detail summary (ids, status, sizes; no audio)."""
        detail: dict[str, Any] = {}
        for key in ("item_id", "response_id", "call_id", "audio_start_ms", "audio_end_ms"):
            if key in event:
                detail[key] = event[key]
        for key in ("audio", "delta"):
            if isinstance(event.get(key), str) and event.get("type", "").endswith(
                ("append", "audio.delta")
            ):
                detail["audio_bytes"] = len(decode_audio(event[key]))
        response = event.get("response")
        if isinstance(response, dict):
            detail["response_id"] = response.get("id")
            detail["status"] = response.get("status")
            details = response.get("status_details")
            if isinstance(details, dict):
                detail["reason"] = details.get("reason")
        error = event.get("error")
        if isinstance(error, dict):
            detail["code"] = error.get("code")
            detail["message"] = error.get("message")
        entry = LogEntry(
            t_s=time.monotonic() - self._t0,
            connection_id=connection_id,
            direction=direction,
            type=str(event.get("type", "")),
            event_id=event.get("event_id") if isinstance(event.get("event_id"), str) else None,
            detail=detail,
        )
        with self._lock:
            self._entries.append(entry)

    def add_truncation(self, record: TruncationRecord) -> None:
        with self._lock:
            self._truncations.append(record)

    def add_connection(self, record: ConnectionRecord) -> None:
        with self._lock:
            self._connections.append(record)

    def entries(self, direction: Literal["in", "out"] | None = None) -> list[LogEntry]:
        """A copy of the log, optionally one direction only."""
        with self._lock:
            return [e for e in self._entries if direction is None or e.direction == direction]

    def types(
        self, direction: Literal["in", "out"] = "in", connection_id: int | None = None
    ) -> list[str]:
        """Event types in order, e.g. what a client sent."""
        return [
            e.type
            for e in self.entries(direction)
            if connection_id is None or e.connection_id == connection_id
        ]

    @property
    def truncations(self) -> list[TruncationRecord]:
        with self._lock:
            return list(self._truncations)

    @property
    def connections(self) -> list[ConnectionRecord]:
        with self._lock:
            return list(self._connections)
