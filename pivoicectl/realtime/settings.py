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
    barge_in = "local"          # server | local | off
    barge_in_threshold = 2      # speech frames (of barge_in_frame_ms) in the window
    barge_in_window_size = 5
    barge_in_lockout_seconds = 0.5
    barge_in_grace_period_seconds = 1.0
    barge_in_vad = "energy"     # energy | silero (pip install 'pivoicectl[silero]')
    echo_guard = "vad-gate"     # off | gate | vad-gate (no working echo canceller)
    echo_tail_ms = 300
    echo_erl_db = 12.0          # echo return loss from `pivoicectl measure` (optional)
    ptt = "gpio"                # push-to-talk: gpio | key (turn detection off)
    gpio_pin = 18               # BCM number of the button (to ground; pull-up inside)
    token_url = "https://backend.example/v1/realtime/session"  # no api_key on the device
    trace_url = "https://backend.example/v1/voice/trace"      # POST /start, /event, /end
    audio_backend = "auto"      # auto | pulse | portaudio (auto: pulse when reachable)
    input_block_ms = 20         # mic block size: also how often audio is sent
    output_block_ms = 20        # speaker block size (portaudio backend)
    keep_output_open = false    # portaudio: never stop the output stream between answers
    onset_mute_ms = 300         # mic sent as silence as an answer starts (0: off)
    uplink_batch_ms = 100       # quiet mic audio sent in batches this long (0: per block)
    uplink_speech_batch_ms = 40 # speech sent in batches this long (0: per block)
    uplink_idle_batch_ms = 200  # quiet audio while nothing plays (0: as uplink_batch_ms)
    uplink_talk_batch_ms = 200  # speech while nothing plays (0: as uplink_speech_batch_ms)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pivoicectl.errors import UserError
from pivoicectl.realtime.edges.ptt import PTT_CHOICES
from pivoicectl.realtime.edges.ptt_gpio import GpioSettings
from pivoicectl.realtime.mic.barge_in import BARGE_IN_CHOICES, BargeInSettings
from pivoicectl.realtime.mic.echo_guard import EchoGuardSettings
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.session.uplink import UplinkSettings

VAD_CHOICES = {"server": "server_vad", "semantic": "semantic_vad", "none": "none"}
"""`--vad` values and the turn detection they select."""

AUDIO_BACKENDS = ("auto", "pulse", "portaudio")
"""`--audio-backend` values: libpulse on the event loop, or PortAudio's callbacks."""

BLOCK_MS_RANGE = (5, 200)
"""Sound device block sizes `run` accepts, in milliseconds."""

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
    "audio_timeout_s": ("PIVOICECTL_AUDIO_TIMEOUT", float),
    "chime": ("PIVOICECTL_CHIME", bool),
    "barge_in": ("PIVOICECTL_BARGE_IN", str),
    "barge_in_frame_ms": ("PIVOICECTL_BARGE_IN_FRAME_MS", int),
    "barge_in_threshold": ("PIVOICECTL_BARGE_IN_THRESHOLD", int),
    "barge_in_window_size": ("PIVOICECTL_BARGE_IN_WINDOW_SIZE", int),
    "barge_in_lockout_seconds": ("PIVOICECTL_BARGE_IN_LOCKOUT_SECONDS", float),
    "barge_in_grace_period_seconds": ("PIVOICECTL_BARGE_IN_GRACE_PERIOD_SECONDS", float),
    "barge_in_vad": ("PIVOICECTL_BARGE_IN_VAD", str),
    "echo_guard": ("PIVOICECTL_ECHO_GUARD", str),
    "echo_tail_ms": ("PIVOICECTL_ECHO_TAIL_MS", int),
    "echo_erl_db": ("PIVOICECTL_ECHO_ERL_DB", float),
    "ptt": ("PIVOICECTL_PTT", str),
    "gpio_pin": ("PIVOICECTL_GPIO_PIN", int),
    "token_url": ("PIVOICECTL_TOKEN_URL", str),
    "trace_url": ("PIVOICECTL_TRACE_URL", str),
    "audio_backend": ("PIVOICECTL_AUDIO_BACKEND", str),
    "input_block_ms": ("PIVOICECTL_INPUT_BLOCK_MS", int),
    "output_block_ms": ("PIVOICECTL_OUTPUT_BLOCK_MS", int),
    "keep_output_open": ("PIVOICECTL_KEEP_OUTPUT_OPEN", bool),
    "onset_mute_ms": ("PIVOICECTL_ONSET_MUTE_MS", int),
    "uplink_batch_ms": ("PIVOICECTL_UPLINK_BATCH_MS", int),
    "uplink_speech_batch_ms": ("PIVOICECTL_UPLINK_SPEECH_BATCH_MS", int),
    "uplink_idle_batch_ms": ("PIVOICECTL_UPLINK_IDLE_BATCH_MS", int),
    "uplink_talk_batch_ms": ("PIVOICECTL_UPLINK_TALK_BATCH_MS", int),
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
    audio_timeout_s: float = 60.0
    """How long the audio edge keeps trying to reopen a lost audio server."""
    api_key: str | None = None
    local: bool = False
    chime: bool = True
    audio_backend: str = "auto"
    output_block_ms: int = 20
    input_block_ms: int = 20
    keep_output_open: bool = False
    onset_mute_ms: int = 300
    uplink_batch_ms: int = 100
    uplink_speech_batch_ms: int = 40
    uplink_idle_batch_ms: int = 200
    uplink_talk_batch_ms: int = 200
    barge_in: str = "server"
    barge_in_frame_ms: int = BargeInSettings.frame_ms
    barge_in_threshold: int = BargeInSettings.threshold
    barge_in_window_size: int = BargeInSettings.window_size
    barge_in_lockout_seconds: float = BargeInSettings.lockout_seconds
    barge_in_grace_period_seconds: float = BargeInSettings.grace_period_seconds
    barge_in_vad: str = BargeInSettings.vad_engine
    echo_guard: str = "off"
    echo_tail_ms: int = EchoGuardSettings.tail_ms
    echo_erl_db: float | None = None
    ptt: str | None = None
    gpio_pin: int = 18
    token_url: str | None = None
    trace_url: str | None = None

    @property
    def uplink(self) -> UplinkSettings:
        """When mic audio is sent (quiet, idle, talk and speech batching)."""
        return UplinkSettings(
            quiet_batch_ms=self.uplink_batch_ms,
            speech_batch_ms=self.uplink_speech_batch_ms,
            idle_batch_ms=self.uplink_idle_batch_ms,
            talk_batch_ms=self.uplink_talk_batch_ms,
        )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(
                    f"{f.name} = {value} is not a finite number", hint="give a number, e.g. 1.5"
                )
        for name in ("input_block_ms", "output_block_ms"):
            value = getattr(self, name)
            if not BLOCK_MS_RANGE[0] <= value <= BLOCK_MS_RANGE[1]:
                raise UserError(
                    f"{name} = {value} is out of range",
                    hint=f"use {BLOCK_MS_RANGE[0]} to {BLOCK_MS_RANGE[1]} ms",
                )
        _ = self.uplink  # validates the ranges
        if self.audio_backend not in AUDIO_BACKENDS:
            raise UserError(
                f"unknown --audio-backend {self.audio_backend!r}",
                hint="use one of: " + ", ".join(AUDIO_BACKENDS),
            )
        if not 0 <= self.onset_mute_ms <= 2000:
            raise UserError(
                f"onset_mute_ms = {self.onset_mute_ms} is out of range", hint="use 0 to 2000"
            )
        for name in ("token_url", "trace_url"):
            value = getattr(self, name)
            if value is not None and not value.startswith(("http://", "https://")):
                flag = "--" + name.replace("_", "-")
                raise UserError(
                    f"{flag} {value!r} is not an HTTP URL",
                    hint=f"e.g. {flag} https://backend.example/v1/realtime/session",
                )
        if self.ptt is not None and self.ptt not in PTT_CHOICES:
            raise UserError(
                f"unknown --ptt {self.ptt!r}", hint="use one of: " + ", ".join(PTT_CHOICES)
            )
        if self.ptt == "gpio":
            GpioSettings(pin_bcm=self.gpio_pin)  # validates the pin
        if self.barge_in not in BARGE_IN_CHOICES:
            raise UserError(
                f"unknown --barge-in {self.barge_in!r}",
                hint="use one of: " + ", ".join(BARGE_IN_CHOICES),
            )
        self.barge_in_settings()  # validates the tuning
        if self.barge_in == "local":
            self.barge_in_settings().check_engine()  # a missing extra fails before the run
        self.echo_guard_settings()
        if self.vad not in VAD_CHOICES:
            raise UserError(
                f"unknown --vad {self.vad!r}", hint="use one of: " + ", ".join(VAD_CHOICES)
            )
        if self.max_turns is not None and self.max_turns < 1:
            raise UserError("--max-turns must be at least 1", hint="leave it out to run on")
        if not 1.0 <= self.audio_timeout_s <= 3600.0:
            raise UserError(
                f"audio_timeout = {self.audio_timeout_s:g} s is out of range",
                hint="use 1 to 3600 seconds",
            )
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
            # Push-to-talk: the button ends the turn, not the service's VAD.
            turn_detection="none" if self.ptt else VAD_CHOICES[self.vad],  # type: ignore[arg-type]
            transcription_model=DEFAULT_TRANSCRIPTION_MODEL if self.transcribe else None,
            interrupt_response=self.barge_in != "off",
        )

    def barge_in_settings(self) -> BargeInSettings:
        """The local barge-in detector's tuning."""
        return BargeInSettings(
            frame_ms=self.barge_in_frame_ms,
            threshold=self.barge_in_threshold,
            window_size=self.barge_in_window_size,
            lockout_seconds=self.barge_in_lockout_seconds,
            grace_period_seconds=self.barge_in_grace_period_seconds,
            vad_engine=self.barge_in_vad,
        )

    def echo_guard_settings(self) -> EchoGuardSettings:
        """The echo guard's mode and tuning."""
        return EchoGuardSettings(
            mode=self.echo_guard, tail_ms=self.echo_tail_ms, erl_db=self.echo_erl_db
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
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None and math.isfinite(number):
            return number
    elif isinstance(value, str):
        return value
    what = "finite number" if kind is float else kind.__name__
    raise UserError(f"{source}: {name} must be a {what}, got {value!r}")


def env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings given by environment variables (empty ones count as unset)."""
    out: dict[str, Any] = {}
    for name, (var, kind) in _FIELDS.items():
        value = environ.get(var)
        if value:
            out[name] = _coerce(name, var, value, kind)
    return out


_TOML_NAMES = {"duration": "duration_s", "audio_timeout": "audio_timeout_s"}
"""config.toml keys that differ from the field they set (the flag's name)."""
_FIELD_TOML = {field: key for key, field in _TOML_NAMES.items()}


def read_config_file(path: Path) -> dict[str, Any]:
    """The `[run]` table of the config file ({} if the file does not exist)."""
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
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = _TOML_NAMES.get(key, key)
        if name not in _FIELDS:
            raise UserError(
                f"{path}: unknown setting {key!r} in [run]",
                hint="known: " + ", ".join(_FIELD_TOML.get(k, k) for k in _FIELDS),
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
