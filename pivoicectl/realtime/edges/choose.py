"""Which sound edge `run` uses: libpulse on the event loop, or PortAudio callbacks.

`auto` takes the libpulse edge whenever the audio server answers and the devices asked
for are its own sources and sinks: it does the same job for under half the CPU (see
`pivoicectl.system.libpulse`). PortAudio remains for what only it reaches: a device by
PortAudio index or name, or a machine without a PulseAudio-compatible server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pivoicectl.errors import UserError
from pivoicectl.realtime.session.playback import PlaybackQueue

if TYPE_CHECKING:
    from pivoicectl.realtime.settings import AudioSettings


def _server_reachable() -> bool:
    from pivoicectl.system import libpulse

    try:
        libpulse.load()
        libpulse.Context("pivoicectl probe", timeout_s=2.0).close()
    except (UserError, libpulse.PulseError):
        return False
    return True


def choose_backend(wanted: str, input_device: str | None, output_device: str | None) -> str:
    """`pulse` or `portaudio` for `--audio-backend wanted` and the devices asked for."""
    if wanted != "auto":
        return wanted
    from pivoicectl.system.audio_server import server_has_node

    for device, kind in ((input_device, "input"), (output_device, "output")):
        if device and (device.isdigit() or not server_has_node(device, kind)):
            return "portaudio"  # a PortAudio index or name
    return "pulse" if _server_reachable() else "portaudio"


def open_audio_edge(settings: AudioSettings, playback: PlaybackQueue) -> tuple[str, Any]:
    """The backend chosen for `settings` (`run`'s audio settings) and its (unstarted) edge."""
    backend = choose_backend(settings.backend, settings.input_device, settings.output_device)
    if backend == "pulse":
        from pivoicectl.realtime.edges.pulse import PulseAudioEdge

        return backend, PulseAudioEdge(
            playback,
            settings.input_device,
            settings.output_device,
            block_ms=settings.input_block_ms,
            audio_timeout_s=settings.timeout_s,
        )
    from pivoicectl.realtime.edges.portaudio import SoundDeviceAudio

    return backend, SoundDeviceAudio(
        playback,
        settings.input_device,
        settings.output_device,
        input_block_ms=settings.input_block_ms,
        output_block_ms=settings.output_block_ms,
        keep_output_open=settings.keep_output_open,
        audio_timeout_s=settings.timeout_s,
    )
