"""The one table of `run`'s settings: each row gives a setting's flag, environment
variable, config key, type, help line and where it lands in `RunSettings`.

Why one table: a setting used to be declared four times (dataclass field, environment
table, Typer option, the dict of flags); now `pivoicectl run`'s options, the
environment, `[run]` in config.toml, the trace's view of the settings and the docs
check are all made from `SETTINGS`. Adding a setting is a field in its group
(`groups.py`, with its default and check) and one row here. Defaults are read from the
dataclasses, never copied.

Names: a row's `name` is its `[run]` key; the flag is `--name-with-dashes` and the
variable `PIVOICECTL_NAME`, unless the row says otherwise (the key's variable is
OPENAI_API_KEY, and it has no flag: a flag would show it in `ps`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pivoicectl.core.setting_checks import allowed_text, field_check
from pivoicectl.realtime.settings.groups import RunSettings

ENV_PREFIX = "PIVOICECTL_"


@dataclass(frozen=True)
class Setting:
    """One user-visible setting of `run`."""

    name: str
    """The `[run]` key; the flag and the variable are made from it."""
    path: tuple[str, ...]
    """Where it lands in `RunSettings`: ("audio", "timeout_s") is settings.audio.timeout_s."""
    kind: type
    """str, int, float or bool: what the environment and the file are converted to."""
    help: str
    none_means: str = ""
    """What the default None means, for the help ("the default source")."""
    flag: bool = True
    negatable: bool = True
    """A bool flag also has --no-NAME."""
    env: str | None = ""
    """The variable: "" makes PIVOICECTL_NAME; None: no variable."""
    in_file: bool = True
    secret: bool = False
    """Its value is never shown, not even in an error."""
    metavar: str = ""

    @property
    def flag_name(self) -> str | None:
        return "--" + self.name.replace("_", "-") if self.flag else None

    @property
    def env_var(self) -> str | None:
        if self.env is None:
            return None
        return self.env or ENV_PREFIX + self.name.upper()

    @property
    def toml_key(self) -> str | None:
        return self.name if self.in_file else None

    @property
    def default(self) -> Any:
        """The default, read from the dataclasses."""
        return value_at(_DEFAULTS, self.path)

    def show(self, value: Any) -> str:
        """A value as an error message shows it."""
        if self.secret:
            return "[REDACTED]"
        return repr(value) if isinstance(value, str) else str(value)

    def default_text(self) -> str:
        """The default as the help and the docs show it ("" when there is nothing to say)."""
        value = self.default
        if value is None:
            return self.none_means
        if isinstance(value, bool):  # a flag alone (--local) is off unless given
            return ("on" if value else "off") if self.negatable else ""
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    def allowed(self) -> str:
        """The range the dataclass accepts, in words ("" for choices and free values:
        the help line names the choices)."""
        parent = value_at(_DEFAULTS, self.path[:-1])
        check = field_check(type(parent), self.path[-1])
        if check is None or check["choices"] is not None:
            return ""
        return allowed_text(self.path[-1], check)

    def help_text(self) -> str:
        """The help line with its default and range, as plain text."""
        notes = []
        if self.default_text():
            notes.append(f"[default: {self.default_text()}]")
        if self.allowed():
            notes.append(f"[{self.allowed()}]")
        return " ".join([self.help, *notes])


_DEFAULTS = RunSettings()


def value_at(settings: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` inside a (nested) settings dataclass."""
    return functools.reduce(getattr, path, settings)


def _row(name: str, path: str, kind: type, help: str, **kw: Any) -> Setting:
    return Setting(name, tuple(path.split(".")), kind, help, **kw)


SETTINGS: tuple[Setting, ...] = (
    _row("url", "service.url", str, "Realtime WebSocket endpoint (ws:// or wss://)."),
    _row("model", "service.model", str, "Model."),
    _row("voice", "service.voice", str, "Voice."),
    _row("instructions", "service.instructions", str, "System instructions for the assistant."),
    _row(
        "vad",
        "service.vad",
        str,
        "Turn detection: server (server_vad), semantic (semantic_vad) or none.",
    ),
    _row(
        "input_device",
        "audio.input_device",
        str,
        "Microphone: an audio server source (see `pivoicectl devices`), or with "
        "--audio-backend portaudio a PortAudio name or index.",
        none_means="the default source",
    ),
    _row(
        "output_device",
        "audio.output_device",
        str,
        "Speaker: an audio server sink, or a PortAudio name or index.",
        none_means="the default sink",
    ),
    _row(
        "audio_backend",
        "audio.backend",
        str,
        "auto (pulse whenever the audio server answers), pulse (libpulse on the event "
        "loop: the light one) or portaudio (sounddevice callbacks).",
    ),
    _row("transcribe", "service.transcribe", bool, "Transcribe what you say."),
    _row(
        "trace",
        "trace.file",
        str,
        "Write a JSON-lines session trace to FILE (the API key is never written).",
        metavar="FILE",
    ),
    _row(
        "local",
        "service.local",
        bool,
        "Talk to the embedded repeater server (no key needed).",
        negatable=False,
        env=None,
        in_file=False,
    ),
    _row(
        "local_call_tool",
        "service.local_call_tool",
        str,
        "With --local: the repeater calls this tool after each question, to try tools.",
        env=None,
        in_file=False,
        metavar="NAME",
    ),
    _row(
        "local_call_tool_args",
        "service.local_call_tool_args",
        str,
        "With --local-call-tool: the call's arguments, a JSON object.",
        env=None,
        in_file=False,
        metavar="JSON",
    ),
    _row("max_turns", "limits.max_turns", int, "Stop after N answers.", metavar="N"),
    _row("duration", "limits.duration_s", float, "Stop after SECONDS.", metavar="SECONDS"),
    _row(
        "audio_timeout",
        "audio.timeout_s",
        float,
        "How long to wait for an audio server that went away (restart, crash) before giving up.",
        metavar="SECONDS",
    ),
    _row(
        "chime",
        "audio.chime",
        bool,
        "Play a short ready sound first (trains the echo canceller).",
    ),
    _row(
        "barge_in",
        "barge_in.mode",
        str,
        "Who decides you interrupt: server (its VAD), local (a VAD on this device, faster) or off.",
    ),
    _row("barge_in_frame_ms", "barge_in.frame_ms", int, "Local barge-in: VAD frame length."),
    _row(
        "barge_in_threshold",
        "barge_in.threshold_frames",
        int,
        "Local barge-in: speech frames in the window to trigger.",
    ),
    _row(
        "barge_in_window_size",
        "barge_in.window_frames",
        int,
        "Local barge-in: sliding window in frames.",
    ),
    _row(
        "barge_in_lockout_seconds",
        "barge_in.lockout_s",
        float,
        "Local barge-in: no interrupt this long after an answer starts.",
    ),
    _row(
        "barge_in_grace_period_seconds",
        "barge_in.grace_period_s",
        float,
        "Local barge-in: keep listening this long after the audio ends.",
    ),
    _row(
        "barge_in_vad",
        "barge_in.vad_engine",
        str,
        "Local barge-in: energy (numpy) or silero (a neural VAD; pip install "
        "'pivoicectl[silero]').",
    ),
    _row(
        "echo_guard",
        "echo_guard.mode",
        str,
        "Without a working echo canceller: off, gate (mute the mic while the assistant "
        "speaks) or vad-gate (mute, but let you interrupt).",
    ),
    _row(
        "echo_tail_ms",
        "echo_guard.tail_ms",
        int,
        "Echo guard: keep the gate shut this long after the assistant stops.",
    ),
    _row(
        "echo_erl_db",
        "echo_guard.erl_db",
        float,
        "Echo guard: echo return loss.",
        none_means="the last `measure`, else estimated",
    ),
    _row(
        "ptt",
        "ptt.mode",
        str,
        "Push-to-talk instead of turn detection: gpio (a button, RPi.GPIO) or key "
        "(space bar: hold to talk, or tap to start and tap to send).",
    ),
    _row("gpio_pin", "ptt.gpio.pin_bcm", int, "--ptt gpio: BCM pin of the button."),
    _row(
        "token_url",
        "service.token_url",
        str,
        "Fetch a short-lived client secret from this backend URL before each connection "
        '(POST; JSON {"value": ...}) instead of holding the API key.',
    ),
    _row(
        "trace_url",
        "trace.url",
        str,
        "Also send the trace to this HTTP collector (POST URL/start, /event, /end) in "
        "the background; it never holds up the audio.",
    ),
    _row(
        "input_block_ms",
        "audio.input_block_ms",
        int,
        "Mic block size; larger blocks cost less CPU and add latency.",
    ),
    _row(
        "output_block_ms",
        "audio.output_block_ms",
        int,
        "Speaker block size (portaudio backend only).",
    ),
    _row(
        "keep_output_open",
        "audio.keep_output_open",
        bool,
        "portaudio backend: keep the output stream open between answers (for a device "
        "that clicks when a stream starts).",
    ),
    _row(
        "onset_mute_ms",
        "onset_mute.mute_ms",
        int,
        "Send the mic as silence this long as an answer starts (0: off).",
    ),
    _row(
        "api_key",
        "service.api_key",
        str,
        "The OpenAI API key (never printed or traced).",
        flag=False,
        env="OPENAI_API_KEY",
        secret=True,
    ),
)

BY_NAME: dict[str, Setting] = {row.name: row for row in SETTINGS}
BY_PATH: dict[tuple[str, ...], Setting] = {row.path: row for row in SETTINGS}

REMOVED: dict[str, str] = {
    "uplink_batch_ms": "PIVOICECTL_UPLINK_BATCH_MS",
    "uplink_speech_batch_ms": "PIVOICECTL_UPLINK_SPEECH_BATCH_MS",
    "uplink_idle_batch_ms": "PIVOICECTL_UPLINK_IDLE_BATCH_MS",
    "uplink_talk_batch_ms": "PIVOICECTL_UPLINK_TALK_BATCH_MS",
}
"""Settings that are gone (`[run]` key -> variable): the mic batching is fixed now
(`pivoicectl.realtime.session.uplink.RUN_UPLINK`). Naming one is an error that says so,
so a tuning that no longer applies is not silently ignored."""
REMOVED_WHY = "mic audio batching is built in now"


def public_view(settings: RunSettings) -> dict[str, Any]:
    """The settings by their `[run]` names, for the trace; the key masked."""
    out: dict[str, Any] = {}
    for row in SETTINGS:
        value = value_at(settings, row.path)
        out[row.name] = "[REDACTED]" if row.secret and value else value
    return out
