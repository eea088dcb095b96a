"""Which PipeWire and WirePlumber are installed, from their own `--version` output."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache


def _run_version(exe: str) -> str:
    if shutil.which(exe) is None:
        return ""
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout + out.stderr


def parse_pipewire(text: str) -> str | None:
    """'Compiled with libpipewire 1.4.2\\nLinked with libpipewire 1.4.2' -> '1.4.2'."""
    m = re.search(r"Linked with libpipewire (\d+\.\d+\.\d+)", text) or re.search(
        r"libpipewire (\d+\.\d+\.\d+)", text
    )
    return m.group(1) if m else None


def parse_wireplumber(text: str) -> str | None:
    m = re.search(r"Linked with libwireplumber (\d+\.\d+\.\d+)", text) or re.search(
        r"libwireplumber (\d+\.\d+\.\d+)", text
    )
    return m.group(1) if m else None


@cache
def installed_pipewire() -> str | None:
    return parse_pipewire(_run_version("pipewire"))


@cache
def installed_wireplumber() -> str | None:
    return parse_wireplumber(_run_version("wireplumber"))
