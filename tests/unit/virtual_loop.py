"""An asyncio event loop on a virtual clock, for tests of code that waits on timers.

Why: a test of the client loop against real time polls for what it waits for and
measures intervals against wall-clock deadlines, so on a busy 2-core machine it is slow
and sometimes wrong. On this loop the clock stands still while anything is ready to run
and, once nothing is, jumps straight to the next timer: a 30 s silence takes no wall
time, an interval the code under test waits is measured exactly, and the order of
events does not depend on the machine's load.

`when(predicate)` is the way to wait for a condition: a future that the loop resolves
in the first pass after which `predicate()` holds, before the clock moves on, so a
test sees the state at the virtual instant it arose, not some poll interval later.

Real file descriptors still work (the loop's self-pipe, so `call_soon_threadsafe`):
the loop polls them without waiting before each jump. Work in other threads does not
hold the clock back, so code under test that waits on a thread is not for this loop.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable
from typing import Any

START_S = 1000.0
"""The clock's reading when the loop is made (away from 0, like a monotonic clock)."""
REAL_WAIT_S = 5.0
"""How long (wall clock) the loop waits for another thread when no timer is left
before it declares the run stuck."""


class _JumpingSelector(selectors.DefaultSelector):
    """Polls the real descriptors without waiting; where the loop would have waited
    `timeout`, asks the loop to move its clock instead."""

    def __init__(self, idle: Callable[[float | None], bool]) -> None:
        super().__init__()
        self._idle = idle

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or self._idle(timeout):
            return ready
        ready = super().select(REAL_WAIT_S)  # only another thread can wake us now
        if not ready:
            raise RuntimeError("virtual loop stuck: nothing ready, no timer, no thread woke it")
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose `time()` moves only when nothing is ready to run."""

    def __init__(self) -> None:
        self._now = START_S
        self._watches: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        super().__init__(_JumpingSelector(self._on_idle))

    def time(self) -> float:
        return self._now

    def when(self, predicate: Callable[[], bool]) -> asyncio.Future[None]:
        """A future done in the first pass of the loop after which `predicate()` holds
        (at once if it already does)."""
        future: asyncio.Future[None] = self.create_future()
        if predicate():
            future.set_result(None)
        else:
            self._watches.append((predicate, future))
        return future

    def _on_idle(self, timeout: float | None) -> bool:
        """Between two passes of the loop: resolve the watches that hold; else move the
        clock by `timeout` (the wait until the next timer). False when there is no timer
        to move to."""
        if self._resolve_watches():
            return True
        if timeout is None:
            return False
        self._now += timeout
        return True

    def _resolve_watches(self) -> bool:
        resolved = False
        remaining = []
        for predicate, future in self._watches:
            if future.done():
                continue  # cancelled by a timeout
            if predicate():
                future.set_result(None)
                resolved = True
            else:
                remaining.append((predicate, future))
        self._watches = remaining
        return resolved


def run(coro: Any) -> Any:
    """`asyncio.run` on a fresh `VirtualClockLoop`."""
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(coro)
