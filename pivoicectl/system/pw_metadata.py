"""The PipeWire metadata edge: reading and writing metadata objects with `pw-metadata`.

Two things pivoicectl needs are only visible or writable here, not through the Pulse
protocol: whether the session manager (WirePlumber) is ready to take a default, which
shows as its "default" metadata holding the current defaults, and the configured
defaults themselves, which `setup --undo` writes back (also for nodes that are gone)
or deletes. `pw-metadata` ships with PipeWire (Debian's pipewire-bin, a dependency of
pipewire), so this needs nothing else installed. It talks to the PipeWire that
`PIPEWIRE_RUNTIME_DIR` or `XDG_RUNTIME_DIR` points at (in `env`, laid over ours).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping

from pivoicectl.errors import UserError

TIMEOUT_S = 5.0
_UPDATE = re.compile(r"^update: id:(\d+) key:'(.*?)' value:'(.*)' type:'(.*?)'$")


def parse(text: str) -> dict[str, str] | None:
    """pw-metadata's listing -> {key: value} of subject 0; None if the metadata is absent."""
    if "Found " not in text:
        return None
    out = {}
    for line in text.splitlines():
        m = _UPDATE.match(line.strip())
        if m and m.group(1) == "0":
            out[m.group(2)] = m.group(3)
    return out


def _run(args: list[str], env: Mapping[str, str] | None) -> str:
    try:
        proc = subprocess.run(
            ["pw-metadata", *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
            env={**os.environ, **env} if env is not None else None,
        )
    except FileNotFoundError as e:
        raise UserError("pw-metadata is not installed", "sudo apt-get install pipewire-bin") from e
    except subprocess.TimeoutExpired as e:
        raise UserError(
            f"PipeWire did not answer pw-metadata within {TIMEOUT_S:.0f} s",
            "check `systemctl --user status pipewire`",
            exit_code=1,
        ) from e
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise UserError(
            f"pw-metadata {' '.join(args[:3])} failed: {detail[-1] if detail else proc.returncode}",
            "is PipeWire running? `pivoicectl doctor`",
            exit_code=1,
        )
    return proc.stdout


def read(name: str, env: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The properties of subject 0 of metadata `name`, or None while nobody provides it."""
    return parse(_run(["-n", name], env))


def write(
    name: str, key: str, value: str, type_: str = "", env: Mapping[str, str] | None = None
) -> None:
    _run(["-n", name, "0", key, value, *([type_] if type_ else [])], env)


def delete(name: str, key: str, env: Mapping[str, str] | None = None) -> None:
    _run(["-n", name, "-d", "0", key], env)
