"""Merge `run`'s settings from flags, environment and config file, and say where a bad
value came from.

Precedence is flags > environment > `[run]` in config.toml > defaults. The layers are
plain dicts keyed by the table's names (`SETTINGS`); values from the environment (text)
and the file (TOML types) are converted to the row's type here. Ranges and choices are
checked by the settings dataclasses alone: when one refuses a value (`SettingError`),
this module turns that into a one-line `UserError` naming the flag (`--onset-mute-ms
5000`), variable (`PIVOICECTL_ONSET_MUTE_MS=5000`) or key (`config.toml: onset_mute_ms
= 5000`) it came from, with the allowed range as the hint.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pivoicectl.core.setting_checks import SettingError
from pivoicectl.errors import UserError
from pivoicectl.realtime.settings.groups import RunSettings
from pivoicectl.realtime.settings.table import (
    BY_NAME,
    BY_PATH,
    REMOVED,
    REMOVED_WHY,
    SETTINGS,
    Setting,
    value_at,
)

_KIND_WORDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_KIND_HINTS = {
    bool: "use true or false",
    int: "use a whole number",
    float: "use a number, e.g. 1.5",
    str: "use a quoted string",
}


def _parse_bool(value: str) -> bool | None:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    return None


def _convert(row: Setting, value: Any) -> Any:
    """`value` from the environment (text) or the file (TOML) as the row's type, or
    None if it cannot be one."""
    kind = row.kind
    if isinstance(value, str) and kind is not str:
        if kind is bool:
            return _parse_bool(value)
        try:
            return kind(value.strip())
        except ValueError:
            return None
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    return None


def _coerce(row: Setting, value: Any, where: str) -> Any:
    converted = _convert(row, value)
    if converted is None:
        raise UserError(f"{where} is not {_KIND_WORDS[row.kind]}", hint=_KIND_HINTS[row.kind])
    return converted


def env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings given by environment variables (empty ones count as unset)."""
    for key, old in REMOVED.items():
        if environ.get(old):
            raise UserError(
                f"{old} was removed ({REMOVED_WHY}; [run] key {key} too)", hint=f"unset {old}"
            )
    out: dict[str, Any] = {}
    for row in SETTINGS:
        var = row.env_var
        value = environ.get(var) if var else None
        if value:
            out[row.name] = _coerce(row, value, f"{var}={row.show(value)}")
    return out


TOOL_KEYS = frozenset({"builtin_tools", "tools", "mcp"})
"""Keys of `[run]` that are not settings: the tool box (`pivoicectl.realtime.tools`) reads
`builtin_tools`, the `[[run.tools]]` tables and the `[[run.mcp]]` servers from
`read_run_table`."""


def read_run_table(path: Path) -> dict[str, Any]:
    """The raw `[run]` table of the config file as TOML gave it ({} if the file does not
    exist): what the tool box reads its keys from."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path} is not UTF-8 text (byte {exc.start})", hint="save it as UTF-8, or remove it"
        ) from exc
    except OSError as exc:
        raise UserError(
            f"cannot read {path}: {exc.strerror}", hint="check its permissions"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}", hint="fix or remove the file") from exc
    table = data.get("run", {})
    if not isinstance(table, dict):
        raise UserError(f"{path}: [run] must be a table", hint="see `pivoicectl run --help`")
    return table


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in the `[run]` table of the config file ({} if the file does not
    exist), typed; the tool box's keys (`TOOL_KEYS`) are left out."""
    out: dict[str, Any] = {}
    for key, value in read_run_table(path).items():
        if key in TOOL_KEYS:
            continue
        if key in REMOVED:
            raise UserError(
                f"{path}: {key} in [run] was removed ({REMOVED_WHY})",
                hint=f"delete the {key} line",
            )
        row = BY_NAME.get(key)
        if row is None or not row.in_file:
            known = ", ".join(r.name for r in SETTINGS if r.in_file)
            raise UserError(f"{path}: unknown setting {key!r} in [run]", hint="known: " + known)
        out[key] = _coerce(row, value, f"{path}: {key} = {row.show(value)}")
    return out


def _where_flag(row: Setting, value: Any) -> str:
    return f"{row.flag_name} {row.show(value)}"


def _where_env(row: Setting, value: Any) -> str:
    return f"{row.env_var}={row.show(value)}"


def merge_run_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, Any],
    file: Mapping[str, Any],
    file_path: Path | None = None,
) -> RunSettings:
    """flags > env > file > defaults; a None flag means "not given". A value the
    settings refuse is a UserError naming the flag, variable or key it came from."""
    shown_path = file_path or "config file"

    def where_file(row: Setting, value: Any) -> str:
        return f"{shown_path}: {row.name} = {row.show(value)}"

    given: dict[tuple[str, ...], tuple[Any, str]] = {}
    for layer, where in ((file, where_file), (env, _where_env), (flags, _where_flag)):
        for name, value in layer.items():
            if value is None:
                continue
            row = BY_NAME.get(name)
            if row is None:
                raise KeyError(f"{name!r} is not a `run` setting")
            given[row.path] = (value, where(row, value))
    return _build(RunSettings(), (), given)


def _build(default: Any, path: tuple[str, ...], given: dict[tuple[str, ...], Any]) -> Any:
    """`default` (a settings dataclass at `path`) with the given values inside it."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(default):
        sub = (*path, f.name)
        current = getattr(default, f.name)
        if dataclasses.is_dataclass(current):
            if any(p[: len(sub)] == sub for p in given):
                changes[f.name] = _build(current, sub, given)
        elif sub in given:
            changes[f.name] = given[sub][0]
    if not changes:
        return default
    try:
        return dataclasses.replace(default, **changes)
    except SettingError as exc:
        row = BY_PATH.get((*path, exc.field))
        if row is None:  # a field no user can set: the defaults themselves disagree
            raise
        raise _user_error(exc, row, given) from exc


def _user_error(exc: SettingError, row: Setting, given: dict[tuple[str, ...], Any]) -> UserError:
    path = row.path
    if path in given:
        where = given[path][1]
    else:  # a check across fields refused this one's default
        where = f"{row.flag_name or row.name} {row.show(exc.value)} (the default)"
    return UserError(f"{where} {exc.problem}", hint=f"use {exc.allowed}")


def load_run_settings(
    flags: Mapping[str, Any],
    config_file: Path,
    environ: Mapping[str, str] | None = None,
) -> RunSettings:
    """Read the environment and the config file, then merge with the flags."""
    environ = os.environ if environ is None else environ
    return merge_run_settings(
        flags, env_values(environ), read_config_file(config_file), config_file
    )


__all__ = [
    "env_values",
    "load_run_settings",
    "merge_run_settings",
    "read_config_file",
    "read_run_table",
    "value_at",
]
