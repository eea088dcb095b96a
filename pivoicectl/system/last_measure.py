"""The last `pivoicectl measure` result, as other commands read it back.

`measure` stores its result (paths.last_measure_file) so that the numbers a user
measured once keep working for them: `doctor` turns them into echo-guard advice and
`run --echo-guard` takes the echo return loss from them instead of guessing it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pivoicectl.system import paths


def save(result: dict[str, Any]) -> None:
    """Store a result with the time it was taken; losing it loses nothing, so a
    read-only state directory does not fail the measurement."""
    import contextlib
    import time

    from pivoicectl.system import fileops

    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}
    with contextlib.suppress(OSError):
        fileops.atomic_write(paths.last_measure_file(), json.dumps(record, indent=2).encode())


def load() -> dict[str, Any] | None:
    """The stored record, or None when there is none or it cannot be read."""
    try:
        data = json.loads(paths.last_measure_file().read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class MeasuredErl:
    erl_db: float
    measured_at: str


def measured_erl() -> MeasuredErl | None:
    """The echo return loss of the last measurement, if it found a usable one."""
    data = load()
    if data is None:
        return None
    erl = data.get("erl_db")
    if not isinstance(erl, int | float) or isinstance(erl, bool) or not math.isfinite(erl):
        return None
    return MeasuredErl(float(erl), str(data.get("time", "an earlier run")))
