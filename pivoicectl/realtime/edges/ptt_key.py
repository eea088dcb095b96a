"""Push-to-talk from the space bar, read by timing.

Terminals report key presses, never releases; a held key only auto-repeats. So the
space bar is read by timing (`KeyHoldTracker`): a space starts talking at once; if
auto-repeats follow, the bar is held and talking ends when they stop (hold to talk); if
none comes within the longest usual repeat delay it was a tap, and the next space sends
(tap to talk, tap to send). The terminal is put in cbreak mode (Ctrl+C still works) and
restored on stop. Calls `on_change(pressed)` on the event loop, only when the state
changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pivoicectl.errors import UserError


@dataclass(frozen=True)
class KeyTiming:
    """How long to wait for the terminal's key auto-repeat before deciding what a space was.

    Terminals send only characters: a held key is one space, then (after the auto-repeat
    delay) a space every repeat interval. Common delays are 250-660 ms (the Linux console
    250, GNOME 500, KDE 600, the X server's default 660) and intervals 30-50 ms (25-33 Hz).
    """

    max_repeat_delay_s: float = 0.8
    """No space this long after a press means no auto-repeat is coming: it was a tap. Above
    X's 660 ms default with room for SSH jitter; a hold whose first repeat came later would
    be taken for a tap and its first repeat for "tap again to send", so err long (a long
    wait costs nothing visible: the press is reported at once either way)."""
    release_gap_s: float = 0.15
    """Once repeating, no space for this long is the release: 3-5 intervals at 30-50 ms,
    so a late repeat is not a release, while the send still feels immediate."""
    release_gap_per_interval: float = 3.0
    """The gap grows to this many typical (median) repeat intervals, for slow repeat
    rates and jittery links (SSH)."""
    max_release_gap_s: float = 0.5
    """Bounds that growth, so an odd interval cannot make the release lag."""

    def __post_init__(self) -> None:
        if not 0 < self.release_gap_s <= self.max_release_gap_s:
            raise ValueError("need 0 < release_gap_s <= max_release_gap_s")
        if self.max_repeat_delay_s <= 0 or self.release_gap_per_interval <= 0:
            raise ValueError("max_repeat_delay_s and release_gap_per_interval must be > 0")


class KeyHoldTracker:
    """Hold-to-talk and tap-to-toggle from a stream of space timestamps (no clock, no I/O).

    A space while not talking is a press: talking starts at once (the assistant stops
    without waiting to learn which kind of press it is). If auto-repeats follow, the key is
    held and talking ends when they stop for longer than the release gap. If none follows
    within `max_repeat_delay_s`, it was a tap and talking goes on until the next space,
    which sends at once; that press's own repeats (the bar held to send) are swallowed.

    The owner calls `space(now)` per space and `expire(now)` when `deadline_s` passes
    with no input waiting. A space never expires the previous key-down by itself, so
    spaces that queued up while the process was stalled count as the repeats they were,
    not as release-and-press-again.

    Limits, inherent to terminals: a hold released before its first auto-repeat is a tap
    (tap again to send), two taps within the repeat delay are a short hold (they send), and
    repeat intervals longer than `release_gap_s` end a hold early (raise it to match).
    """

    _INTERVALS_KEPT = 16

    def __init__(self, timing: KeyTiming = KeyTiming()) -> None:
        self.timing = timing
        self.pressed = False
        """Talking (what the button reports)."""
        self._down = False  # the key may still be down: its repeats are expected
        self._repeating = False  # repeats came since this key-down began
        self._started_talk = False  # this key-down began the talk, so its release ends it
        self._last_s = 0.0
        # The terminal's repeat rate is a property of the terminal: learnt across holds.
        self._intervals: deque[float] = deque(maxlen=self._INTERVALS_KEPT)

    @property
    def release_gap_s(self) -> float:
        """How long without a repeat ends a hold, given the repeat rate seen so far."""
        t = self.timing
        if not self._intervals:
            return t.release_gap_s
        typical = statistics.median(self._intervals)
        return min(t.max_release_gap_s, max(t.release_gap_s, t.release_gap_per_interval * typical))

    @property
    def deadline_s(self) -> float | None:
        """When `expire` has something to decide, or None while the key is surely up."""
        if not self._down:
            return None
        wait = self.release_gap_s if self._repeating else self.timing.max_repeat_delay_s
        return self._last_s + wait

    def space(self, now_s: float) -> bool | None:
        """A space arrived: the new `pressed` if it changed, else None."""
        if self._down:  # an auto-repeat of the key already down
            if self._repeating:
                self._intervals.append(max(0.0, now_s - self._last_s))
            self._repeating = True
            self._last_s = now_s
            return None
        self._down, self._repeating, self._last_s = True, False, now_s
        self._started_talk = not self.pressed
        self.pressed = not self.pressed  # press to talk, or (talking after a tap) send
        return self.pressed

    def expire(self, now_s: float) -> bool | None:
        """No space since the last one up to `now_s`: False if that ends a hold, else None."""
        deadline = self.deadline_s
        if deadline is None or now_s < deadline:
            return None
        self._down = False
        if self._repeating and self._started_talk and self.pressed:
            self.pressed = False  # released after holding
            return False
        return None  # a tap: keep talking until the next one (or the send's key went up)


class KeyButton:
    """The space bar in the controlling terminal: hold to talk, or tap to talk, tap to send."""

    def __init__(
        self,
        fd: int | None = None,
        timing: KeyTiming = KeyTiming(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.tracker = KeyHoldTracker(timing)
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_change: Callable[[bool], None] | None = None
        self._saved: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._reported = False
        self._closed = False

    def start(self, loop: asyncio.AbstractEventLoop, on_change: Callable[[bool], None]) -> None:
        import termios
        import tty

        if not os.isatty(self.fd):
            raise UserError("--ptt key needs a terminal on stdin", hint="or use --ptt gpio")
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        self._loop, self._on_change = loop, on_change
        self._closed = False
        loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 64)
        except OSError:
            data = b""
        if not data:  # the terminal went away: let a hold in progress still end
            self._closed = True
            if self._loop is not None:
                self._loop.remove_reader(self.fd)
        for byte in data:
            if byte == 0x20:
                self._report(self.tracker.space(self.clock()))
        self._schedule()

    def _schedule(self) -> None:
        """(Re)arm the one timer at the tracker's deadline."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.tracker.deadline_s
        if deadline is not None and self._loop is not None:
            delay = max(0.0, deadline - self.clock())
            self._timer = self._loop.call_later(delay, self._deadline)

    def _deadline(self) -> None:
        self._timer = None
        if not self._closed and self._input_waiting():
            self._readable()  # a repeat arrived as the timer fired: it is not a release
            return
        self._report(self.tracker.expire(self.clock()))
        self._schedule()

    def _input_waiting(self) -> bool:
        try:
            return bool(select.select([self.fd], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    def _report(self, pressed: bool | None) -> None:
        if pressed is None or pressed == self._reported or self._on_change is None:
            return
        self._reported = pressed
        self._on_change(pressed)

    def stop(self) -> None:
        import termios

        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.fd)
            self._loop = None
        if self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None
