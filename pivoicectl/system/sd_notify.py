"""Telling systemd how `run` is doing: READY, STATUS, WATCHDOG and STOPPING datagrams.

A `Type=notify` unit with `WatchdogSec=` waits for READY before it counts the service
as started, and kills and restarts it when the WATCHDOG pings stop (a wedged event loop).
The protocol is one datagram of newline-separated `KEY=VALUE` lines sent to the
`AF_UNIX` socket named by `$NOTIFY_SOCKET` (a leading `@` means the abstract namespace).
It is small enough to speak directly, which spares a compiled dependency on libsystemd.

Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing, so `run` behaves the
same from a terminal.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

MIN_WATCHDOG_PING_S = 0.5
"""Pings are never sent more often than this, whatever the unit asks for."""


def _address(name: str) -> str | bytes | None:
    if not name:
        return None
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    return None  # systemd only hands out absolute or abstract names


def _clean(text: str) -> str:
    """One line of at most 200 characters: a STATUS is shown as one line by systemctl."""
    line = " ".join(text.split())
    return line[:200]


class Notifier:
    """Sends state changes to systemd when it supervises this process.

    Each send opens nothing new: one unconnected datagram socket is kept for the life of
    the process. A failed send (the manager went away) is ignored after the first time:
    supervision is a courtesy to systemd, never a reason for `run` to stop.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._socket: socket.socket | None = None
        self.watchdog_interval_s = _watchdog_interval_s(env)
        """How often to ping (half of what systemd allows), or None without a watchdog."""
        self.last_status = ""
        self.failed = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str = "") -> None:
        self._send("READY=1", status)

    def status(self, text: str) -> None:
        """A line for `systemctl status`; repeated lines are sent once."""
        line = _clean(text)
        if line != self.last_status:
            self._send("", line)

    def watchdog(self) -> None:
        if self.watchdog_interval_s is not None:
            self._send("WATCHDOG=1", "")

    def stopping(self, status: str = "") -> None:
        self._send("STOPPING=1", status)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, field: str, status: str) -> None:
        if self._address is None or self.failed:
            return
        lines = [field] if field else []
        if status:
            self.last_status = _clean(status)
            lines.append("STATUS=" + self.last_status)
        if not lines:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto("\n".join(lines).encode(), self._address)
        except OSError:
            self.failed = True
            self.close()


def _watchdog_interval_s(env: Mapping[str, str]) -> float | None:
    """Half the watchdog timeout systemd set for this very process, or None.

    `WATCHDOG_PID` guards against a child that inherited the variables: only the process
    systemd watches may ping.
    """
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return max(MIN_WATCHDOG_PING_S, int(usec) / 1e6 / 2)
