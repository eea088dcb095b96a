"""Waiting for the audio server: PipeWire applies most changes asynchronously.

Defaults, node creation and WirePlumber's saved state all show up a moment after the
request, so several places poll a condition against a deadline; this is that loop once.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """True as soon as `check()` is; False once `timeout_s` has passed (checked at least once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
