"""`RunSettings`: everything `run` needs, in groups, each a frozen dataclass.

A group holds the settings one part of `run` reads (the service, the audio edge, the
mic path's deciders, push-to-talk, the limits, the trace), so that part is handed its
group and nothing else. Where a part has its own settings dataclass (`BargeInSettings`,
`EchoGuardSettings`, `OnsetMuteSettings`, `GpioSettings`) the group is that dataclass:
its defaults and checks are the only ones. Every range and choice is declared on its
field (`pivoicectl.core.setting_checks.checked`) and raises `SettingError`; the loader
names the flag, variable or key the bad value came from.

Light on purpose: `pivoicectl run --help` builds its options from these defaults, so
nothing here may import numpy, an audio library, websockets or RPi.GPIO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pivoicectl.core.setting_checks import SettingError, check_fields, checked
from pivoicectl.realtime.edges.ptt_gpio import GpioSettings
from pivoicectl.realtime.mic.settings import (
    BargeInSettings,
    EchoGuardSettings,
    OnsetMuteSettings,
)
from pivoicectl.realtime.protocol import events as ev

VAD_CHOICES = {"server": "server_vad", "semantic": "semantic_vad", "none": "none"}
"""`--vad` values and the turn detection they select."""

AUDIO_BACKENDS = ("auto", "pulse", "portaudio")
"""`--audio-backend` values: libpulse on the event loop, or PortAudio's callbacks."""

PTT_CHOICES = ("gpio", "key")
"""`--ptt` values: a button on a GPIO pin, or the space bar."""

DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"

_WEBSOCKET = ("ws://", "wss://")
_HTTP = ("http://", "https://")


def _check_url(name: str, value: str | None, schemes: tuple[str, ...]) -> None:
    if value is None or value.startswith(schemes):
        return
    if schemes == _WEBSOCKET:
        example = f"{ev.DEFAULT_BASE_URL} or ws://127.0.0.1:8765/v1/realtime"
        raise SettingError(name, value, "is not a WebSocket URL", f"a URL like {example}")
    example = "https://backend.example/v1/realtime/session"
    raise SettingError(name, value, "is not an HTTP URL", f"a URL like {example}")


@dataclass(frozen=True)
class ServiceSettings:
    """Which Realtime service, model and voice, how it detects turns, and the key."""

    url: str = ev.DEFAULT_BASE_URL
    model: str = ev.DEFAULT_MODEL
    voice: str = ev.DEFAULT_VOICE
    instructions: str = ev.SessionConfig.instructions
    vad: str = checked("server", choices=tuple(VAD_CHOICES))
    transcribe: bool = True
    api_key: str | None = field(default=None, repr=False)
    """Held, never shown: not in the repr, masked in the trace."""
    token_url: str | None = None
    """Fetch a short-lived client secret here before each connection instead."""
    local: bool = False
    """Talk to the embedded stand-in server instead of `url`."""
    local_call_tool: str | None = None
    """With `local`: the stand-in calls this declared tool after each question."""
    local_call_tool_args: str = "{}"
    """The arguments of that call, a JSON object."""

    def __post_init__(self) -> None:
        check_fields(self)
        _check_url("url", self.url, _WEBSOCKET)
        _check_url("token_url", self.token_url, _HTTP)


@dataclass(frozen=True)
class AudioSettings:
    """The sound edge: which backend and devices, block sizes, and the ready chime."""

    backend: str = checked("auto", choices=AUDIO_BACKENDS)
    input_device: str | None = None
    output_device: str | None = None
    input_block_ms: int = checked(20, lo=5, hi=200)
    """Mic block size: also how often audio can be sent."""
    output_block_ms: int = checked(20, lo=5, hi=200)
    """Speaker block size (portaudio backend)."""
    keep_output_open: bool = False
    """portaudio: never stop the output stream between answers."""
    timeout_s: float = checked(60.0, lo=1, hi=3600)
    """How long the audio edge keeps trying to reopen a lost audio server."""
    chime: bool = True

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class PttSettings:
    """Push-to-talk instead of turn detection (`mode` None: off)."""

    mode: str | None = checked(None, choices=PTT_CHOICES)
    gpio: GpioSettings = field(default_factory=GpioSettings)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class LimitSettings:
    """When `run` stops by itself (None: never)."""

    max_turns: int | None = checked(None, lo=1)
    duration_s: float | None = checked(None, lo=0, lo_open=True)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class TraceSettings:
    """Where the session trace goes: a JSON-lines file, an HTTP collector, both or none."""

    file: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        _check_url("url", self.url, _HTTP)


@dataclass(frozen=True)
class RunSettings:
    """Everything `run` needs, after merging flags, environment and config file."""

    service: ServiceSettings = field(default_factory=ServiceSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    barge_in: BargeInSettings = field(default_factory=BargeInSettings)
    echo_guard: EchoGuardSettings = field(default_factory=EchoGuardSettings)
    onset_mute: OnsetMuteSettings = field(default_factory=OnsetMuteSettings)
    ptt: PttSettings = field(default_factory=PttSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    trace: TraceSettings = field(default_factory=TraceSettings)

    def session_config(self) -> ev.SessionConfig:
        """The `session.update` these settings ask for."""
        s = self.service
        return ev.SessionConfig(
            instructions=s.instructions,
            voice=s.voice,
            # Push-to-talk: the button ends the turn, not the service's VAD.
            turn_detection="none" if self.ptt.mode else VAD_CHOICES[s.vad],  # type: ignore[arg-type]
            transcription_model=DEFAULT_TRANSCRIPTION_MODEL if s.transcribe else None,
            interrupt_response=self.barge_in.mode != "off",
        )
