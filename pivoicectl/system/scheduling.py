"""How the audio server's processes are scheduled, read from /proc.

Why: PipeWire runs the graph and the echo canceller in its data-loop thread. With
realtime scheduling (SCHED_FIFO or SCHED_RR, which libpipewire-module-rt asks for
through RLIMIT_RTPRIO or rtkit) that thread runs the moment its period is due,
whatever else the machine does; without it, it takes turns with every busy process.
`doctor` reports which one the running daemons got, and the busy-machine bench sets it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

POLICIES = {
    0: "SCHED_OTHER",
    1: "SCHED_FIFO",
    2: "SCHED_RR",
    3: "SCHED_BATCH",
    5: "SCHED_IDLE",
    6: "SCHED_DEADLINE",
}
REALTIME_POLICIES = ("SCHED_FIFO", "SCHED_RR", "SCHED_DEADLINE")
PROC = Path("/proc")


@dataclass(frozen=True)
class ThreadScheduling:
    """One thread's scheduling class, priority and nice value."""

    tid: int
    name: str
    policy: str
    rt_priority: int
    nice: int

    @property
    def realtime(self) -> bool:
        return self.policy in REALTIME_POLICIES


def parse_stat(text: str) -> tuple[int, int, int]:
    """(nice, rt_priority, policy number) from a /proc/PID/task/TID/stat line.

    The name in (...) may hold spaces and parentheses, so fields are counted from the
    last ')': after it come field 3 (state) onwards; nice is field 19, rt_priority 40
    and policy 41 (proc(5))."""
    fields = text.rsplit(")", 1)[-1].split()
    return int(fields[16]), int(fields[37]), int(fields[38])


def thread_scheduling(pid: int, proc: Path = PROC) -> list[ThreadScheduling]:
    """Every thread of `pid` (empty if it is gone or unreadable)."""
    out = []
    try:
        tasks = sorted((proc / str(pid) / "task").iterdir(), key=lambda p: int(p.name))
    except (OSError, ValueError):
        return []
    for task in tasks:
        try:
            nice, prio, policy = parse_stat((task / "stat").read_text())
            name = (task / "comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            continue
        policy_name = POLICIES.get(policy, str(policy))
        out.append(ThreadScheduling(int(task.name), name, policy_name, prio, nice))
    return out


def parse_rtprio_limit(limits_text: str) -> int | None:
    """The soft RLIMIT_RTPRIO from a /proc/PID/limits text; 'unlimited' is 99 (the
    highest priority there is), None when the line is missing or unreadable."""
    for line in limits_text.splitlines():
        if line.startswith("Max realtime priority"):
            soft = line[len("Max realtime priority") :].split()[0]
            if soft == "unlimited":
                return 99
            with contextlib.suppress(ValueError):
                return int(soft)
    return None


def rtprio_limit(pid: int, proc: Path = PROC) -> int | None:
    """The highest realtime priority `pid` may give itself without rtkit."""
    try:
        return parse_rtprio_limit((proc / str(pid) / "limits").read_text())
    except OSError:
        return None


def socket_peer_pid(path: str) -> int | None:
    """The pid that listens on a unix socket (SO_PEERCRED), or None.

    Under systemd socket activation the listener is the user manager, not the daemon:
    callers check the name of what they got."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
            creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return None
    pid = struct.unpack("3i", creds)[0]
    return pid or None


def _comm(pid: int, proc: Path) -> str | None:
    try:
        return (proc / str(pid) / "comm").read_text().strip()
    except OSError:
        return None


def _runtime_dir(pid: int, proc: Path) -> str | None:
    try:
        env = (proc / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"XDG_RUNTIME_DIR="):
            return item.split(b"=", 1)[1].decode(errors="replace")
    return None


def daemon_pids(
    name: str,
    socket_path: str | None,
    uid: int | None = None,
    runtime_dir: str | None = None,
    proc: Path = PROC,
) -> list[int]:
    """The pids of the daemon `name` ("pipewire", "pipewire-pulse") serving this user.

    First the listener on `socket_path`, when it is that daemon (an exact answer even
    with several audio servers on the machine); else every process named `name` owned
    by `uid`, narrowed to those whose XDG_RUNTIME_DIR is `runtime_dir` when that leaves
    any."""
    if socket_path:
        peer = socket_peer_pid(socket_path)
        if peer is not None and _comm(peer, proc) == name:
            return [peer]
    uid = os.getuid() if uid is None else uid
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
        except OSError:
            continue
        if _comm(int(entry.name), proc) == name:
            found.append(int(entry.name))
    if runtime_dir and len(found) > 1:
        same = [pid for pid in found if _runtime_dir(pid, proc) == runtime_dir]
        found = same or found
    return sorted(found)


def serving_pids(name: str, socket_path: str | None) -> list[int]:
    """`daemon_pids` for this user's session: the socket's listener, else the daemons
    whose XDG_RUNTIME_DIR is this environment's."""
    from pivoicectl.system import paths

    runtime = paths.runtime_dir()
    return daemon_pids(name, socket_path, runtime_dir=str(runtime) if runtime else None)


def pipewire_realtime() -> bool | None:
    """Whether the PipeWire serving this user runs a realtime thread; None when its
    process cannot be seen (another user's, or outside this container)."""
    from pivoicectl.system import paths

    sock = paths.pipewire_socket()
    pids = serving_pids("pipewire", str(sock) if sock else None)
    if not pids:
        return None
    return any(t.realtime for pid in pids for t in thread_scheduling(pid))
