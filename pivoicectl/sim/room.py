"""The simulated room: its settings, its impulse response, and its PipeWire config.

Pure code (no processes, no sockets), so the room can be unit-tested and its expected
echo path (delay, ERL) compared with what `measure` finds in it.

Topology, made of real PipeWire nodes (it works on PipeWire 0.3.65 and 1.4):

    apps -> sim_speaker (null sink) --monitor--> [echo path: convolver with the room IR]
                                                       |
    `sim talk` --------------------------------> sim_air (null sink)
                                                       |
                                      monitor --> [mic: copy] --> sim_mic (Audio/Source)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SPEAKER = "sim_speaker"
AIR = "sim_air"
MIC = "sim_mic"
ECHO_IN = "sim_echo_in"
ECHO_OUT = "sim_echo_out"
MIC_IN = "sim_mic_in"
ROOM_CONF_NAME = "50-pivoicectl-sim-room.conf"
QUANTUM = 256
"""The room's fixed graph period (samples): 5.3 ms at 48 kHz, a low-latency Pi setting.

The echo path plays into sim_air, the graph's driver, whose monitor (the mic) hands it on
one period later; forcing the period makes that lag known, and the impulse response is
shortened by it so the speaker-to-mic delay is exactly `delay_ms`. Measured on 1.4.2:
unforced, the delay came out as delay_ms + one period, whatever the period was; with
min = max quantum in the config it still wandered by +-1 period between recordings;
with `clock.force-quantum` set in the settings metadata it was exact every time."""


@dataclass(frozen=True)
class RoomSettings:
    """The echo path from the simulated speaker to the simulated microphone."""

    delay_ms: float = 17.0
    """Direct-path delay from speaker to mic (ms); 17 ms is about 6 m of air and buffers."""
    gain: float = 0.25
    """Direct-path amplitude (0.25 = 12 dB of echo return loss without reverb)."""
    rt60_s: float = 0.25
    """Reverberation time: the tail decays by 60 dB in this many seconds (0 = no tail)."""
    reverb_db: float = -15.0
    """Energy of the reverberant tail relative to the direct path (dB)."""
    rate: int = 48000
    """Sample rate of the room's devices (Hz)."""
    seed: int = 1
    """Random seed of the reverberant tail, so a room is reproducible."""

    @property
    def graph_delay_ms(self) -> float:
        """The delay the room's graph adds by itself: one period."""
        return 1000.0 * QUANTUM / self.rate

    def validate(self) -> None:
        """Raise ValueError naming the first setting out of range."""
        if not self.graph_delay_ms <= self.delay_ms <= 500.0:
            raise ValueError(
                f"delay {self.delay_ms} ms is outside {self.graph_delay_ms:.1f}-500 ms "
                "(the room's graph alone takes one period)"
            )
        if not 0.0 < self.gain <= 4.0:
            raise ValueError(f"gain {self.gain} is outside (0, 4]")
        if not 0.0 <= self.rt60_s <= 2.0:
            raise ValueError(f"rt60 {self.rt60_s} s is outside 0-2 s")
        if not -60.0 <= self.reverb_db <= 20.0:
            raise ValueError(f"reverb level {self.reverb_db} dB is outside -60..20 dB")
        if self.rate not in (16000, 24000, 32000, 44100, 48000):
            raise ValueError(f"rate {self.rate} Hz is not one of 16000/24000/32000/44100/48000")

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def impulse_response(room: RoomSettings) -> np.ndarray:
    """The room's echo path as an FIR: a direct-path tap plus an exponentially decaying tail.

    The tail is seeded noise with the decay RT60 prescribes, starting 2 ms after the
    direct path, scaled so that its energy is `reverb_db` relative to the direct tap.
    """
    room.validate()
    delay = round(room.delay_ms * room.rate / 1000.0) - QUANTUM
    tail_len = round(room.rt60_s * room.rate) if room.rt60_s > 0 else 0
    ir = np.zeros(delay + 1 + tail_len, dtype=np.float64)
    ir[delay] = room.gain
    if tail_len:
        t = np.arange(tail_len) / room.rate
        rng = np.random.default_rng(room.seed)
        tail = rng.standard_normal(tail_len) * np.exp(-6.9078 * t / room.rt60_s)
        tail[: round(0.002 * room.rate)] = 0.0
        target_energy = room.gain**2 * 10 ** (room.reverb_db / 10.0)
        tail *= np.sqrt(target_energy / np.sum(tail**2))
        ir[delay + 1 :] = tail
    return ir.astype(np.float32)


def expected_erl_db(room: RoomSettings) -> float:
    """Echo return loss for a white reference: minus the IR's energy gain, in dB."""
    ir = impulse_response(room).astype(np.float64)
    return float(-10.0 * np.log10(np.sum(ir**2)))


def _sink(name: str, description: str, rate: int, priority: int, driver: int) -> str:
    return f"""  {{ factory = adapter
    args = {{
      factory.name = support.null-audio-sink
      node.name = "{name}"
      node.description = "{description}"
      media.class = Audio/Sink
      audio.rate = {rate}
      audio.position = [ MONO ]
      # keep the simulated device running: a suspended node stalls every capture of it
      session.suspend-timeout-seconds = 0
      node.pause-on-idle = false
      priority.session = {priority}
      priority.driver = {driver}
    }}
  }}"""


def pipewire_config(room: RoomSettings, ir_path: Path) -> str:
    """The drop-in fragment that builds the room inside the private PipeWire daemon."""
    room.validate()
    ir = str(ir_path).replace('"', '\\"')
    # The air drives the room's graph: it is always busy (the echo path plays into it),
    # so the mic keeps delivering even while nothing plays on the speaker.
    speaker = _sink(SPEAKER, "Simulated speaker", room.rate, 2000, 1000)
    air = _sink(AIR, "Simulated room air (what the mic hears)", room.rate, 100, 3000)
    return f"""# pivoicectl simulated room. Written by `pivoicectl sim up`; do not edit.
# delay {room.delay_ms} ms, gain {room.gain}, rt60 {room.rt60_s} s, reverb {room.reverb_db} dB
context.properties = {{
  # `sim up` also forces this period (settings metadata clock.force-quantum), so the
  # graph's own share of the echo delay is known (QUANTUM)
  default.clock.rate = {room.rate}
  default.clock.quantum = {QUANTUM}
}}
context.objects = [
{speaker}
{air}
]
context.modules = [
  {{ name = libpipewire-module-filter-chain
    args = {{
      node.description = "Simulated echo path"
      media.name = "Simulated echo path"
      filter.graph = {{
        nodes = [
          {{ type = builtin name = room label = convolver config = {{ filename = "{ir}" }} }}
        ]
      }}
      audio.rate = {room.rate}
      audio.channels = 1
      audio.position = [ MONO ]
      capture.props = {{
        node.name = "{ECHO_IN}"
        stream.capture.sink = true
        target.object = "{SPEAKER}"
        node.dont-reconnect = true
      }}
      playback.props = {{
        node.name = "{ECHO_OUT}"
        target.object = "{AIR}"
        node.dont-reconnect = true
      }}
    }}
  }}
  {{ name = libpipewire-module-filter-chain
    args = {{
      node.description = "Simulated microphone"
      media.name = "Simulated microphone"
      filter.graph = {{
        nodes = [ {{ type = builtin name = mic label = copy }} ]
      }}
      audio.rate = {room.rate}
      audio.channels = 1
      audio.position = [ MONO ]
      capture.props = {{
        node.name = "{MIC_IN}"
        stream.capture.sink = true
        target.object = "{AIR}"
        node.dont-reconnect = true
      }}
      playback.props = {{
        node.name = "{MIC}"
        node.description = "Simulated microphone"
        media.class = Audio/Source
        priority.session = 2000
        session.suspend-timeout-seconds = 0
      }}
    }}
  }}
]
"""
