"""Settings of `pivoicectl run`, merged from flags, environment and the config file.

Precedence is flags > `PIVOICECTL_*` environment > `[run]` in
`$XDG_CONFIG_HOME/pivoicectl/config.toml` > defaults, decided by one pure function
(`merge_run_settings`) so the rule is tested without touching the environment. The API
key follows the same order with `OPENAI_API_KEY` as its variable and `api_key` in the
file; it is held in `RunSettings` but never printed (`__repr__` masks it).

Example config file:

    [run]
    voice = "marin"
    vad = "semantic"
    transcribe = true
    api_key = "sk-..."          # or OPENAI_API_KEY
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pivoicectl.errors import UserError
from pivoicectl.realtime import events as ev

VAD_CHOICES = {"server": "server_vad", "semantic": "semantic_vad", "none": "none"}
"""`--vad` values and the turn detection they select."""

DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"

# name -> (environment variable, type)
_FIELDS: dict[str, tuple[str, type]] = {
    "url": ("PIVOICECTL_URL", str),
    "model": ("PIVOICECTL_MODEL", str),
    "voice": ("PIVOICECTL_VOICE", str),
    "instructions": ("PIVOICECTL_INSTRUCTIONS", str),
    "vad": ("PIVOICECTL_VAD", str),
    "input_device": ("PIVOICECTL_INPUT_DEVICE", str),
    "output_device": ("PIVOICECTL_OUTPUT_DEVICE", str),
    "transcribe": ("PIVOICECTL_TRANSCRIBE", bool),
    "trace": ("PIVOICECTL_TRACE", str),
    "max_turns": ("PIVOICECTL_MAX_TURNS", int),
    "duration_s": ("PIVOICECTL_DURATION", float),
    "chime": ("PIVOICECTL_CHIME", bool),
    "api_key": ("OPENAI_API_KEY", str),
}


@dataclass(frozen=True)
class RunSettings:
    """Everything `run` needs, after merging. Units are in the names."""

    url: str = ev.DEFAULT_BASE_URL
    model: str = ev.DEFAULT_MODEL
    voice: str = ev.DEFAULT_VOICE
    instructions: str = ev.SessionConfig.instructions
    vad: str = "server"
    input_device: str | None = None
    output_device: str | None = None
    transcribe: bool = True
    trace: str | None = None
    max_turns: int | None = None
    duration_s: float | None = None
    api_key: str | None = None
    local: bool = False
    chime: bool = True
    output_block_ms: int = 10
    input_block_ms: int = 20

    def __post_init__(self) -> None:
        if self.vad not in VAD_CHOICES:
            raise UserError(
                f"unknown --vad {self.vad!r}", hint="use one of: " + ", ".join(VAD_CHOICES)
            )
        if self.max_turns is not None and self.max_turns < 1:
            raise UserError("--max-turns must be at least 1", hint="leave it out to run on")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UserError("--duration must be positive seconds", hint="e.g. --duration 60")
        if not self.url.startswith(("ws://", "wss://")):
            raise UserError(
                f"--url {self.url!r} is not a WebSocket URL",
                hint=f"e.g. {ev.DEFAULT_BASE_URL} or ws://127.0.0.1:8765/v1/realtime",
            )

    def __repr__(self) -> str:
        shown = self.public_view()
        fields = ", ".join(f"{name}={value!r}" for name, value in shown.items())
        return f"RunSettings({fields})"

    def session_config(self) -> ev.SessionConfig:
        """The `session.update` these settings ask for."""
        return ev.SessionConfig(
            instructions=self.instructions,
            voice=self.voice,
            turn_detection=VAD_CHOICES[self.vad],  # type: ignore[arg-type]
            transcription_model=DEFAULT_TRANSCRIPTION_MODEL if self.transcribe else None,
        )

    def public_view(self) -> dict[str, Any]:
        """The settings as a dict for traces and `--json`, with the key masked."""
        out = dataclasses.asdict(self)
        out["api_key"] = "[REDACTED]" if self.api_key else None
        return out


def _parse_bool(name: str, value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise UserError(f"{name}={value!r} is not a boolean", hint="use true or false")


def _coerce(name: str, source: str, value: Any, kind: type) -> Any:
    """A value from the environment (a string) or TOML (typed) as `kind`."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _parse_bool(source, value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(value, str):
        return value
    raise UserError(f"{source}: {name} must be a {kind.__name__}, got {value!r}")


def env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings given by environment variables (empty ones count as unset)."""
    out: dict[str, Any] = {}
    for name, (var, kind) in _FIELDS.items():
        value = environ.get(var)
        if value:
            out[name] = _coerce(name, var, value, kind)
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """The `[run]` table of the config file ({} if the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
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
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = "duration_s" if key == "duration" else key
        if name not in _FIELDS:
            raise UserError(
                f"{path}: unknown setting {key!r} in [run]",
                hint="known: " + ", ".join(k if k != "duration_s" else "duration" for k in _FIELDS),
            )
        out[name] = _coerce(name, str(path), value, _FIELDS[name][1])
    return out


def merge_run_settings(
    flags: Mapping[str, Any], env: Mapping[str, Any], file: Mapping[str, Any]
) -> RunSettings:
    """flags > env > file > defaults; a None flag means "not given"."""
    merged: dict[str, Any] = {}
    for layer in (file, env, flags):
        merged.update({k: v for k, v in layer.items() if v is not None})
    return RunSettings(**merged)


def load_run_settings(
    flags: Mapping[str, Any],
    config_file: Path,
    environ: Mapping[str, str] | None = None,
) -> RunSettings:
    """Read the environment and the config file, then merge with the flags."""
    environ = os.environ if environ is None else environ
    return merge_run_settings(flags, env_values(environ), read_config_file(config_file))
