"""The tools `run` offers the model unless `builtin_tools` in `[run]` says otherwise.

`set_volume` sets the default sink's volume through pulsectl. libpulse calls block, so
it runs in a worker thread (`asyncio.to_thread`) with a time limit: the event loop that
carries the audio never waits on the audio server for a tool. `get_local_time` tells the
model the device's local date, time and time zone, which it cannot know otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pivoicectl.realtime.tools.outcome import ToolResult
from pivoicectl.realtime.tools.schema import EMPTY_PARAMETERS

VOLUME_TIMEOUT_S = 5.0
"""How long set_volume waits for the audio server before it tells the model it failed."""


@dataclass
class SetVolume:
    server: str | None = None
    """The audio server (PULSE_SERVER); None: libpulse's own default."""
    name: str = "set_volume"
    description: str = (
        "Set the speaker volume (the default audio output) to a percentage from 0 to 100."
    )
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {
            "type": "object",
            "properties": {
                "percent": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 100,
                    "description": "The new volume, 0 (silent) to 100 (full).",
                }
            },
            "required": ["percent"],
            "additionalProperties": False,
        }
    )

    async def run(self, arguments: Mapping[str, Any]) -> ToolResult:
        percent = int(arguments["percent"])  # the schema checked it: 0 to 100
        try:
            now = await asyncio.wait_for(
                asyncio.to_thread(set_default_sink_volume, self.server, percent),
                VOLUME_TIMEOUT_S,
            )
        except TimeoutError:
            return ToolResult.failed(f"the audio server did not answer in {VOLUME_TIMEOUT_S:g} s")
        except VolumeError as exc:
            return ToolResult.failed(str(exc))
        return ToolResult(json.dumps({"ok": True, "percent": now}))

    async def aclose(self) -> None:
        return None


class VolumeError(Exception):
    """The audio server could not be reached or refused: told to the model, not raised."""


def set_default_sink_volume(server: str | None, percent: int) -> int:
    """Set every channel of the default sink to `percent`; the volume it has now (%)."""
    import pulsectl

    pulse = pulsectl.Pulse("pivoicectl-tools", server=server, connect=False)
    try:
        try:
            pulse.connect(autospawn=False, wait=False)
        except (pulsectl.PulseError, OSError) as exc:
            raise VolumeError("cannot set the volume: the audio server is not running") from exc
        try:
            name = pulse.server_info().default_sink_name
            if not name:
                raise VolumeError("cannot set the volume: there is no default speaker")
            sink = pulse.get_sink_by_name(name)
            pulse.volume_set_all_chans(sink, percent / 100)
            sink = pulse.get_sink_by_name(name)
            return round(pulse.volume_get_all_chans(sink) * 100)
        except (pulsectl.PulseError, pulsectl.PulseDisconnected) as exc:
            raise VolumeError(f"cannot set the volume: the audio server said {exc}") from exc
    finally:
        pulse.close()


@dataclass
class GetLocalTime:
    now: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())
    """The aware local time (a fixed one in tests)."""
    zone_name: Callable[[], str] = field(default=lambda: local_zone_name(os.environ))
    name: str = "get_local_time"
    description: str = "Get the local date, time, weekday and time zone where the device is."
    parameters: Mapping[str, Any] = field(default_factory=lambda: dict(EMPTY_PARAMETERS))

    async def run(self, arguments: Mapping[str, Any]) -> ToolResult:
        return ToolResult(json.dumps(local_time(self.now(), self.zone_name())))

    async def aclose(self) -> None:
        return None


def local_time(now: datetime, zone_name: str) -> dict[str, str]:
    """What get_local_time tells: `now` must be aware (it carries its offset)."""
    offset = now.strftime("%z")  # +0130
    return {
        "date": now.strftime("%Y-%m-%d"),
        "time": now.strftime("%H:%M:%S"),
        "weekday": now.strftime("%A"),
        "time_zone": zone_name or now.tzname() or "",
        "abbreviation": now.tzname() or "",
        "utc_offset": f"{offset[:3]}:{offset[3:5]}" if offset else "",
    }


def local_zone_name(environ: Mapping[str, str], localtime: Path = Path("/etc/localtime")) -> str:
    """The IANA name of the local time zone (Europe/Berlin) if the system says it: from
    TZ when set (as the C library reads it first), else from where /etc/localtime points;
    "" when it does not tell (a copied file, a path outside zoneinfo)."""
    tz = environ.get("TZ", "").removeprefix(":")
    if tz:
        return _zone_in(tz) if tz.startswith("/") else tz if _IANA.fullmatch(tz) else ""
    try:
        return _zone_in(os.readlink(localtime))
    except OSError:
        return ""


_IANA = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*")


def _zone_in(path: str) -> str:
    _, found, name = path.partition("zoneinfo/")
    return name if found and _IANA.fullmatch(name) else ""
