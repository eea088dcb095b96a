"""Writing for the systemd journal: a priority on each line when a stream goes there.

Under systemd, stdout and stderr of a service are connected to journald and
`$JOURNAL_STREAM` names that stream as "DEVICE:INODE". A line that starts with `<3>` is
then logged at priority err, `<4>` warning, `<6>` info (sd-daemon.h), which is what
`journalctl -p err` filters on. The prefix is added only when the stream really is that
one: a child whose output was redirected elsewhere inherits the variable too.
"""

from __future__ import annotations

import os
from typing import TextIO

ERR = 3
WARNING = 4
NOTICE = 5
INFO = 6


def _stream_id(environ: dict[str, str] | None = None) -> tuple[int, int] | None:
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return None
    return int(dev), int(ino)


def goes_to_journal(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    wanted = _stream_id(environ)
    if wanted is None:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == wanted


def prefix(stream: TextIO, priority: int, environ: dict[str, str] | None = None) -> str:
    """`<N>` when `stream` is the journal, else nothing."""
    return f"<{priority}>" if goes_to_journal(stream, environ) else ""
