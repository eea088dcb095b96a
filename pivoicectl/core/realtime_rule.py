"""Doctor's `pipewire-realtime` verdict: does PipeWire's data loop run realtime, and if
not, what on this system would grant it.

Why it matters: PipeWire runs the graph and the echo canceller in its data-loop thread.
Without realtime scheduling that thread takes turns with every busy program; on a
machine kept busy by other jobs the graph then misses deadlines (xruns), the canceller
is left cancelling worse until PipeWire restarts, and the assistant hears itself
(docs/figures.md, "Busy machine"). PipeWire asks for realtime by itself
(libpipewire-module-rt): through RLIMIT_RTPRIO where the user's limits allow it, else
through rtkit over D-Bus. Debian's pipewire-bin (bookworm-backports and trixie,
PipeWire 1.4) recommends rtkit and ships /etc/security/limits.d/25-pw-rlimits.conf,
which gives the `pipewire` group rtprio 95; so the fix is one of those two, then a
restart. Pure, so every branch is unit-tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PW_LIMITS_FILE = "/etc/security/limits.d/25-pw-rlimits.conf"


@dataclass(frozen=True)
class DaemonScheduling:
    """One running audio daemon and the realtime threads it got."""

    name: str
    """"pipewire" or "pipewire-pulse"."""
    pid: int
    realtime_threads: tuple[str, ...] = ()
    """Each realtime thread as "data-loop.0 SCHED_FIFO 88"."""
    rtprio_limit: int | None = None
    """Its RLIMIT_RTPRIO: the priority it may take by itself, without rtkit."""


def realtime_verdict(
    daemons: Sequence[DaemonScheduling],
    rtkit_installed: bool,
    user: str,
    user_groups: Sequence[str],
    pipewire_group_limits: bool,
    restart_command: str,
) -> tuple[str, str, str]:
    """(status, detail, fix) for the running daemons; status is "pass", "warn" or
    "skip". Only the `pipewire` process counts: it runs the echo canceller."""
    main = [d for d in daemons if d.name == "pipewire"]
    if not main:
        return (
            "skip",
            "cannot see the pipewire process (another user's, or outside this container)",
            "",
        )
    shown = "; ".join(
        f"{d.name} (pid {d.pid}): {', '.join(d.realtime_threads) or 'no realtime thread'}"
        for d in daemons
    )
    if any(d.realtime_threads for d in main):
        return "pass", shown, ""
    why = (
        f"{shown}: when other programs keep the CPU busy, PipeWire misses its deadlines, "
        "the echo canceller then lets the assistant's voice through (until PipeWire "
        "restarts) and the assistant interrupts itself"
    )
    limit = max((d.rtprio_limit or 0) for d in main)
    if limit > 0:
        return (
            "warn",
            f"{why}; it may take realtime priority itself (RLIMIT_RTPRIO {limit}) but did "
            "not: libpipewire-module-rt is disabled or failed",
            "remove `module.rt = false` (grep -r module.rt ~/.config/pipewire /etc/pipewire), "
            f"then {restart_command}",
        )
    user = user or "$USER"
    group = ""
    if pipewire_group_limits and "pipewire" in user_groups:
        group = (
            f"{user} is in the pipewire group, whose limits ({PW_LIMITS_FILE}) PipeWire "
            "gets at the next start of the user manager: sudo reboot"
        )
    elif pipewire_group_limits:
        group = (
            f"sudo adduser {user} pipewire, then sudo reboot ({PW_LIMITS_FILE} lets that "
            "group use rtprio 95)"
        )
    if not rtkit_installed:
        fix = f"sudo apt-get install rtkit && {restart_command}"
        return (
            "warn",
            f"{why}; rtkit, which grants it, is not installed",
            fix + (f"   (or: {group})" if group else ""),
        )
    return (
        "warn",
        f"{why}; rtkit is installed but PipeWire did not get realtime from it "
        "(`journalctl -b -u rtkit-daemon` says why)",
        group or f"sudo systemctl restart rtkit-daemon && {restart_command}",
    )
