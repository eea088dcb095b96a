"""Output: one place that turns result data into rich text or JSON.

Commands return dataclasses; both views are rendered from the same data so they never
disagree. Human text goes to stdout unless a command's stdout is meant for the shell
(`sim up` prints `export` lines), in which case progress goes to stderr.

Text from outside the program (device names, paths, config values, what the Realtime
service says) goes into markup only through `esc`, or is printed as a `plain` Text, so
`[/]` or `[bold]` in it is shown as written instead of crashing rich or styling the
line. The consoles do not turn `:name:` into emoji for the same reason.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

_out: Console | None = None
_err: Console | None = None


def out() -> Console:
    global _out
    if _out is None:
        _out = Console(highlight=False, soft_wrap=True, emoji=False)
    return _out


def err() -> Console:
    global _err
    if _err is None:
        _err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
    return _err


def esc(value: object) -> str:
    """`value` as literal text inside a rich markup string (a print or a table cell):
    brackets in it are shown, never taken for markup."""
    from rich.markup import escape

    return escape(str(value))


def plain(value: object, style: str = "") -> Text:
    """`value` as a line of its own with no markup at all, e.g. for `Console.status`,
    whose spinner would otherwise parse markup and emoji codes in it."""
    return Text(str(value), style=style)


def to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    return obj


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()


def error_line(message: str, hint: str = "") -> None:
    """One line on stderr: what is wrong, then what to do about it (at priority err when
    stderr is the systemd journal, so `journalctl -p err` finds it)."""
    from pivoicectl.system import journal

    text = journal.prefix(sys.stderr, journal.ERR) + f"[bold red]error:[/] {esc(message)}"
    if hint:
        text += f" [dim]—[/] {esc(hint)}"
    err().print(text, markup=True, highlight=False)
