"""The stand-in server's own turn detection over the input audio timeline.

The service detects turns itself (`server_vad`); the stand-in must too, or nothing
would exercise the client's handling of `speech_started` / `speech_stopped` arriving
while it plays. Pure and incremental, so it is tested without a socket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pivoicectl.dsp.vad import StreamingVad, VadSettings
from pivoicectl.realtime.protocol.events import BYTES_PER_SAMPLE, SAMPLE_RATE_HZ, ms_to_samples
from pivoicectl.standin.settings import DEFAULT_SETTINGS, LocalServerSettings

VadKind = Literal["start", "stop"]


@dataclass(frozen=True)
class VadEvent:
    """A turn boundary on the input timeline (samples since the session's first append).

    `start`: `speech_start_samples` is where the first loud frame began.
    `stop`: `speech_end_samples` is where the last loud frame ended, `stop_samples` where
    the silence that ended the turn reached `silence_duration_ms`.
    """

    kind: VadKind
    speech_start_samples: int = 0
    speech_end_samples: int = 0
    stop_samples: int = 0


def vad_margin_db(threshold: float) -> float:
    """The service's 0..1 `threshold` as dB above the noise floor (0.5 -> 18 dB)."""
    return 6.0 + 24.0 * min(1.0, max(0.0, threshold))


class EnergyVad:
    """Turn boundaries over a PCM16 stream, on the energy VAD of `pivoicectl.dsp.vad`.

    Pure and incremental: `feed` takes any number of bytes and returns the turn
    boundaries found in the complete frames so far. Whether a frame is loud is the
    shared `StreamingVad` decision: `vad_margin_db(threshold)` above an adaptive noise
    floor (down at once, up at most 5 dB/s; the first frame only calibrates it) and above
    `vad_min_level_dbfs`. What is the server's own is the turn around those frames:
    `vad_min_speech_ms` of consecutive loud frames start it; during it the floor is
    frozen, so a long utterance does not raise it and a pause does not drag it down; the
    stop threshold is the start threshold minus a hysteresis, so a voice decaying at the
    end of a word does not end the turn early; `silence_duration_ms` below it ends it.
    """

    FLOOR_RISE_DB_PER_S = 5.0

    def __init__(
        self,
        threshold: float = 0.5,
        silence_duration_ms: int = 500,
        settings: LocalServerSettings = DEFAULT_SETTINGS,
        position_samples: int = 0,
    ) -> None:
        self._settings = settings
        self.frames = StreamingVad(SAMPLE_RATE_HZ, self._frame_settings(threshold))
        self.frame_samples = self.frames.frame_len
        self.hysteresis_db = settings.vad_hysteresis_db
        self.min_speech_frames = max(
            1, math.ceil(settings.vad_min_speech_ms / settings.vad_frame_ms)
        )
        self.silence_samples = ms_to_samples(silence_duration_ms)
        self.position_samples = position_samples
        self.speaking = False
        self._pending = b""
        self._loud_run = 0
        self._candidate_start = 0
        self._stop_threshold_dbfs = 0.0
        self._last_loud_end = 0
        self._quiet_samples = 0

    def _frame_settings(self, threshold: float) -> VadSettings:
        return VadSettings(
            frame_ms=float(self._settings.vad_frame_ms),
            threshold_db=vad_margin_db(threshold),
            min_level_dbfs=self._settings.vad_min_level_dbfs,
            hangover_frames=0,
            noise_rise_db_per_s=self.FLOOR_RISE_DB_PER_S,
        )

    def configure(self, threshold: float, silence_duration_ms: int) -> None:
        """Apply a `session.update` without losing the noise floor or the timeline."""
        self.frames.retune(self._frame_settings(threshold))
        self.silence_samples = ms_to_samples(silence_duration_ms)

    def reset_turn(self) -> None:
        """Forget any turn in progress (buffer cleared or committed by hand).

        The timeline position and noise floor stay: the input timeline never restarts.
        """
        self.speaking = False
        self._loud_run = 0
        self._quiet_samples = 0

    @property
    def noise_floor_dbfs(self) -> float | None:
        return self.frames.noise_floor_dbfs

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Process `pcm`; returns the turn boundaries completed by it."""
        data = self._pending + pcm
        frame_bytes = self.frame_samples * BYTES_PER_SAMPLE
        n_whole = len(data) // frame_bytes * frame_bytes
        self._pending = data[n_whole:]
        view = memoryview(data)
        events: list[VadEvent] = []
        for i in range(0, n_whole, frame_bytes):
            event = self._frame(view[i : i + frame_bytes])
            if event is not None:
                events.append(event)
            self.position_samples += self.frame_samples
        return events

    def _frame(self, frame: memoryview) -> VadEvent | None:
        start = self.position_samples
        end = start + self.frame_samples
        loud = self.frames.process(frame, adapt=not self.speaking)
        if not self.speaking:
            if not loud:
                self._loud_run = 0
                return None
            if self._loud_run == 0:
                self._candidate_start = start
            self._loud_run += 1
            if self._loud_run < self.min_speech_frames:
                return None
            self.speaking = True
            self._stop_threshold_dbfs = self.frames.threshold_dbfs - self.hysteresis_db
            self._last_loud_end = end
            self._quiet_samples = 0
            return VadEvent("start", speech_start_samples=self._candidate_start)
        if self.frames.level_dbfs >= self._stop_threshold_dbfs:
            self._last_loud_end = end
            self._quiet_samples = 0
            return None
        self._quiet_samples += self.frame_samples
        if self._quiet_samples < self.silence_samples:
            return None
        self.speaking = False
        self._loud_run = 0
        return VadEvent(
            "stop",
            speech_start_samples=self._candidate_start,
            speech_end_samples=self._last_loud_end,
            stop_samples=end,
        )
