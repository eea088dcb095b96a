"""Waiting for the session manager (WirePlumber) before setting a default node.

After `systemctl --user restart pipewire pipewire-pulse wireplumber` returns, PipeWire
lists the nodes and pipewire-pulse answers before WirePlumber is ready (1.1 s later on
a booted VM, a few ms on a fast machine). Until WirePlumber has created its "default"
metadata, pipewire-pulse refuses to set a default ("Not supported"). In the moment
after, a default that is set takes effect but is never saved: WirePlumber's saving
hook is not registered yet, and setting the same name again is no change it would see.

WirePlumber is ready once its default-nodes scripts have written the current defaults
(`default.audio.source` or `default.audio.sink`) into that metadata: 0.5 loads them
after the saving hook, and 0.4 does both in one module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pivoicectl.errors import UserError
from pivoicectl.system import pw_metadata
from pivoicectl.system.audio_server import SESSION_MANAGER_HINT, AudioServer
from pivoicectl.system.polling import wait_until

READY_KEYS = ("default.audio.source", "default.audio.sink")
POLL_S = 0.1


def ready(env: Mapping[str, str] | None = None) -> bool:
    """True once WirePlumber can take a default and will save it."""
    try:
        props = pw_metadata.read("default", env)
    except UserError:
        return False  # PipeWire itself is not answering yet
    return props is not None and any(key in props for key in READY_KEYS)


def wait_ready(
    nodes: Sequence[tuple[str, str]],
    timeout_s: float,
    after: str = "after the restart",
    env: Mapping[str, str] | None = None,
) -> None:
    """Wait until each (name, kind) node exists and WirePlumber is ready.

    Raises a UserError naming what was still missing at the deadline: the audio
    server, a node, or the session manager.
    """
    blocker = ""

    def check() -> bool:
        nonlocal blocker
        try:
            with AudioServer.connect(timeout_s=1.0, env=env) as server:
                names = {(n.name, n.kind) for n in server.sources() + server.sinks()}
        except UserError:
            blocker = "pipewire-pulse"
            return False
        missing = [name for name, kind in nodes if (name, kind) not in names]
        if missing:
            blocker = missing[0]
            return False
        if not ready(env):
            blocker = "wireplumber"
            return False
        return True

    if wait_until(check, timeout_s, interval_s=POLL_S):
        return
    if blocker == "pipewire-pulse":
        raise UserError(
            f"pipewire-pulse did not answer within {timeout_s:.0f} s {after}",
            "check `systemctl --user status pipewire-pulse`",
            exit_code=1,
        )
    if blocker == "wireplumber":
        raise UserError(
            f"the session manager (WirePlumber) was not ready within {timeout_s:.0f} s {after}",
            SESSION_MANAGER_HINT,
            exit_code=1,
        )
    raise UserError(
        f"{blocker} did not appear within {timeout_s:.0f} s {after}",
        "see `pivoicectl doctor`; a pinned device that is missing makes the "
        "echo-cancel module unload itself",
        exit_code=1,
    )
