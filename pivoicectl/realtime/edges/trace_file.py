"""The `--trace` file: one JSON object per line, redacted, flushed as it goes.

Why JSON lines flushed per record: a voice session ends by Ctrl+C, SIGTERM or a power
cut as often as by itself, and whatever was written must still parse. Every record is
passed through `protocol.redact.redact` with the key in use, so the API key never reaches the
file even when it shows up inside an error message.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import IO, Any

from pivoicectl.errors import UserError
from pivoicectl.realtime.protocol.redact import redact


class TraceWriter:
    """Appends records `{"t_s": seconds since start, "type": ..., ...}` to a file.

    `TraceWriter(None)` is a no-op writer, so callers need no `if trace:` branches.
    """

    def __init__(
        self,
        path: Path | None,
        secrets: tuple[str, ...] = (),
        t0_s: float | None = None,
        sink: Any = None,
    ):
        """`sink`: anything with `post(record)` and `close()` (e.g. `HttpTraceSink` for
        --trace-url) that gets every record too, after redaction."""
        self.path = path
        self.sink = sink
        self._secrets = tuple(s for s in secrets if s)
        self._t0_s = time.monotonic() if t0_s is None else t0_s
        self._file: IO[str] | None = None
        self.lost: str | None = None
        """Why the file stopped being written, if it did."""
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = path.open("w", encoding="utf-8")
            except OSError as exc:
                raise UserError(
                    f"cannot write the trace {path}: {exc.strerror}",
                    hint="pick a writable --trace path",
                ) from exc

    def add_secret(self, secret: str) -> None:
        """Redact `secret` too from now on (a client secret fetched mid-run)."""
        if secret and secret not in self._secrets:
            self._secrets = (*self._secrets, secret)

    def write(self, record: dict[str, Any], now_s: float | None = None) -> None:
        """Write one record (redacted) and flush it."""
        if self._file is None and self.sink is None:
            return
        now_s = time.monotonic() if now_s is None else now_s
        line = {"t_s": round(now_s - self._t0_s, 4), **redact(record, self._secrets)}
        if self.sink is not None:
            self.sink.post(line)
        if self._file is not None:
            try:
                self._file.write(json.dumps(line, default=str) + "\n")
                self._file.flush()
            except OSError as exc:  # disk full, the file system gone: the run goes on
                self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        """Stop writing the file, say so once, and keep the assistant running: a trace
        is a record of the conversation, never a reason to end it."""
        from pivoicectl import render

        file, self._file = self._file, None
        with contextlib.suppress(OSError):
            if file is not None:
                file.close()
        self.lost = exc.strerror or type(exc).__name__
        render.err().print(
            render.plain(f"warning: the trace {self.path} stopped ({self.lost}); run goes on")
        )

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        if self._file is not None:
            self._file.close()
            self._file = None


def read_trace(path: Path) -> list[dict[str, Any]]:
    """All records of a trace file (for tests and tools)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
