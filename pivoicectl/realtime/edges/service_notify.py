"""The client's supervisor under systemd: READY, STATUS lines, watchdog pings, STOPPING.

READY goes out once a session is up and the mic delivers (the first "listening" or
"answering"), not when the process starts: a unit that counts as started while it waits
for the network or the audio server would hide exactly the boot problems it is for.
Watchdog pings are timers on the client's own event loop, so a loop that wedges stops
pinging and systemd restarts it, while one that merely waits (for the network, a
restarted audio server) keeps pinging.
"""

from __future__ import annotations

import asyncio

from pivoicectl.system.sd_notify import Notifier

UP_STATES = ("listening", "answering")


class ServiceNotifier:
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.ready_sent = False
        self._timer: asyncio.TimerHandle | None = None

    def state(self, state: str, detail: str = "") -> None:
        text = f"{state}: {detail}" if detail else state
        if state in UP_STATES and not self.ready_sent:
            self.ready_sent = True
            self.notifier.ready(text)
        else:
            self.notifier.status(text)

    def start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            return

        def ping() -> None:
            self.notifier.watchdog()
            self._timer = loop.call_later(interval, ping)

        ping()

    def stopping(self, why: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.notifier.stopping(f"stopping: {why}")
        self.notifier.close()
