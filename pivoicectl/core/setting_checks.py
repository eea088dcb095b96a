"""Range and choice checks for settings dataclasses, declared next to each field.

Why here: a setting's allowed values belong to the dataclass that uses it (the barge-in
detector's, the echo guard's, ...), written once. A field says `checked(300, lo=0,
hi=2000)`; the dataclass's `__post_init__` calls `check_fields(self)`, which raises a
`SettingError` naming the field, the value and what is allowed. The core knows nothing
of flags or files: `run`'s settings loader turns the error into a one-line `UserError`
naming the flag, variable or config key the value came from. Built directly with a bad
value (a bug, a test), the error is a plain `ValueError`.

Light on purpose (the standard library only): `pivoicectl run --help` imports it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

_UNITS = (("_dbfs", " dBFS"), ("_db", " dB"), ("_ms", " ms"), ("_s", " s"))


class SettingError(ValueError):
    """A setting's value its dataclass refuses: which field, the value, the problem
    ("is out of range") and what is allowed ("0 to 2000 ms")."""

    def __init__(self, field: str, value: object, problem: str, allowed: str) -> None:
        super().__init__(f"{field} = {value!r} {problem} (use {allowed})")
        self.field = field
        self.value = value
        self.problem = problem
        self.allowed = allowed


def checked(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    choices: Iterable[str] | None = None,
    allowed: str = "",
) -> Any:
    """A dataclass field whose value `check_fields` checks: within `lo`..`hi` (either may
    be open, i.e. exclusive), or one of `choices`. `allowed` replaces the generated text
    saying what is allowed. None always passes (it means "not set")."""
    meta: dict[str, Any] = {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open}
    meta["choices"] = tuple(choices) if choices is not None else None
    meta["allowed"] = allowed
    return dataclasses.field(default=default, metadata={"check": meta})


def unit_of(name: str) -> str:
    """The unit a field's name ends with (" ms" for `tail_ms`), for messages."""
    return next((text for suffix, text in _UNITS if name.endswith(suffix)), "")


def _num(value: float) -> str:
    return f"{value:g}"


def allowed_text(name: str, meta: dict[str, Any]) -> str:
    """What a checked field accepts, in words: "0 to 2000 ms", "one of: a, b"."""
    if meta["allowed"]:
        return str(meta["allowed"])
    if meta["choices"] is not None:
        return "one of: " + ", ".join(meta["choices"])
    lo, hi, unit = meta["lo"], meta["hi"], unit_of(name)
    if lo is not None and hi is not None:
        if meta["lo_open"] or meta["hi_open"]:
            return f"more than {_num(lo)} and less than {_num(hi)}{unit}"
        return f"{_num(lo)} to {_num(hi)}{unit}"
    if lo is not None:
        return f"{'more than' if meta['lo_open'] else 'at least'} {_num(lo)}{unit}"
    if hi is not None:
        return f"{'less than' if meta['hi_open'] else 'at most'} {_num(hi)}{unit}"
    return "any value"


def _outside(value: float, meta: dict[str, Any]) -> bool:
    lo, hi = meta["lo"], meta["hi"]
    if lo is not None and (value <= lo if meta["lo_open"] else value < lo):
        return True
    return hi is not None and (value >= hi if meta["hi_open"] else value > hi)


def check_fields(obj: Any) -> None:
    """Check every field of the dataclass `obj`: floats must be finite, `checked` fields
    within their range or choices. Raises `SettingError` for the first that is not."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None or dataclasses.is_dataclass(value):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingError(f.name, value, "is not a finite number", "a number, e.g. 1.5")
        meta = f.metadata.get("check")
        if meta is None:
            continue
        if meta["choices"] is not None:
            if value not in meta["choices"]:
                raise SettingError(f.name, value, "is unknown", allowed_text(f.name, meta))
        elif _outside(value, meta):
            raise SettingError(f.name, value, "is out of range", allowed_text(f.name, meta))


def field_check(cls: type, name: str) -> dict[str, Any] | None:
    """The check declared on field `name` of dataclass `cls` (None if unchecked)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("check")
    raise KeyError(f"{cls.__name__} has no field {name!r}")
