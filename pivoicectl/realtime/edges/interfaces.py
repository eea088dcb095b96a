"""What the client loop needs from its edges, and what every sound edge shares.

The client (`realtime/client.py`) drives a sound edge (libpulse or PortAudio), a
push-to-talk button and a UI only through these interfaces, so tests can hand it
fakes and each edge can be read on its own.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Protocol

from pivoicectl.realtime.session.playback import PlayReport

MicSink = Callable[[bytes, float], None]
"""Takes a mic block and its age: how long before the call its last sample was recorded
(an edge that reads several blocks at once hands the older ones with their age, so the
device-side decisions line them up with what the speaker played)."""

REOPEN_DELAYS_S = (0.25, 0.5, 1.0, 2.0)
"""Waits between attempts to reopen the streams after the audio server or the device went
away (the last one repeats): a restarted PipeWire answers within about a second."""


class AudioEdge(Protocol):
    underflows: int
    overflows: int
    sounding_until_s: float
    """When (monotonic) the audio handed over so far will have been heard."""
    relaxed_ms: int
    """How seldom the edge may deliver mic audio for now (0: every block, promptly)."""
    state_listener: Callable[[str, str], None] | None
    """Told ("lost", why), ("back", text) and ("gone", why), on the event loop, by an edge
    that recovers from a lost audio server."""

    def start(
        self, loop: asyncio.AbstractEventLoop, mic: Callable[[bytes, float], None]
    ) -> None: ...

    def drain_reports(self) -> list[PlayReport]: ...

    def stop(self) -> None: ...


class TalkButton(Protocol):
    """A push-to-talk source (GPIO pin, space bar): calls `on_change(pressed)` on the
    event loop whenever the debounced state changes."""

    def start(self, loop: asyncio.AbstractEventLoop, on_change: Callable[[bool], None]) -> None: ...

    def stop(self) -> None: ...


class Ui(Protocol):
    def show(self, kind: str, text: str) -> None: ...


class ToolOutcomeLike(Protocol):
    @property
    def output(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def error(self) -> str: ...


class Toolbox(Protocol):
    """Runs the function tools the session declared (`realtime.tools.Toolbox`)."""

    async def call(self, name: str, arguments: str) -> ToolOutcomeLike: ...


class Supervisor(Protocol):
    """Told how the run is doing, for a service manager (systemd's notify protocol):
    "listening" or "answering" once a session is up and the mic delivers,
    "reconnecting" and "waiting for audio" with why."""

    def state(self, state: str, detail: str) -> None: ...


class EdgeCounters:
    """What both sound edges keep for the client: the playback reports it drains and the
    counters `run` summarises."""

    def __init__(self) -> None:
        self.reports: collections.deque[PlayReport] = collections.deque(maxlen=10_000)
        self.underflows = 0
        self.overflows = 0
        self.output_latency_s = 0.0
        self.input_latency_s = 0.0
        self.output_starts = 0
        self.output_aborts = 0
        self.sounding_until_s = 0.0
        """When (monotonic) the last audio handed to the sound system will have been
        heard. Why: the edge holds audio ahead of the speaker that is no longer in the
        `PlaybackQueue`, and the echo guard must stay closed until it has played."""
        self.state_listener: Callable[[str, str], None] | None = None
        """Set by the client: told ("lost", why), ("back", ...) and ("gone", why) by an
        edge that recovers from a lost audio server or device (both do)."""
        self.relaxed_ms = 0
        """Set by the client: the audio may be read this seldom (ms) for now, because
        the uplink sends it that seldom anyway (one of its batches); 0 while
        a device-side decision needs every block promptly. Edges driven by device
        callbacks ignore it."""

    def drain_reports(self) -> list[PlayReport]:
        """Reports appended since the last call."""
        out = []
        reports = self.reports
        while reports:
            out.append(reports.popleft())
        return out
