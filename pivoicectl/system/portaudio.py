"""The PortAudio edge: the devices sounddevice (and so `run` and `parrot`) can open."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pivoicectl.errors import UserError

# ALSA devices that route through the audio server (libasound2-plugins, pipewire-alsa),
# and therefore through source_ec once it is the default source.
SERVER_ROUTED = ("pulse", "pipewire", "default")


@dataclass(frozen=True)
class PortAudioDevice:
    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_input: bool
    default_output: bool
    via_audio_server: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises OSError when libportaudio is missing
        raise UserError(
            "PortAudio is not installed (sounddevice cannot load libportaudio)",
            "sudo apt-get install libportaudio2 libasound2-plugins pipewire-alsa",
        ) from e
    return sounddevice


def list_devices() -> list[PortAudioDevice]:
    sd = load_sounddevice()
    hostapis = [h["name"] for h in sd.query_hostapis()]
    default_in, default_out = sd.default.device
    out = []
    for d in sd.query_devices():
        out.append(
            PortAudioDevice(
                index=int(d["index"]),
                name=str(d["name"]),
                hostapi=hostapis[d["hostapi"]] if d["hostapi"] < len(hostapis) else "?",
                max_input_channels=int(d["max_input_channels"]),
                max_output_channels=int(d["max_output_channels"]),
                default_samplerate=float(d["default_samplerate"]),
                default_input=d["index"] == default_in,
                default_output=d["index"] == default_out,
                via_audio_server=d["name"].split(" ")[0] in SERVER_ROUTED,
            )
        )
    return out
