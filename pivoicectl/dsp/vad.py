"""Energy voice-activity detection against an adaptive noise floor.

Why energy and not a model: `parrot`, the local barge-in and the local Realtime server's
turn detection run on a Raspberry Pi next to an echo canceller and a speech client, and
they only need "is somebody louder than the room right now". A fixed amplitude threshold
(e.g. silent while the peak is < 500) breaks as soon as the room or the mic gain changes,
so the threshold here rides on a noise floor that follows the quietest recent frames:
`pivoicectl.dsp.noise_floor.NoiseFloor`, which drops at once to any quieter frame and
rises by at most `noise_rise_db_per_s`. It is clamped from below at
`min_level_dbfs - threshold_db`, so a stretch of digital silence (a converged canceller
outputs exact zeros) does not drag the floor to -120 dBFS and leave it crawling back up
for half a minute.

A frame is speech when it is `threshold_db` above the floor *and* above
`min_level_dbfs`; the absolute minimum keeps a near-silent room from turning every
breath into speech. `hangover_frames` keeps the decision on through the short dips
between syllables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pivoicectl.dsp.levels import FLOOR_DBFS, pcm16_dbfs
from pivoicectl.dsp.noise_floor import NoiseFloor, NoiseFloorSettings

_FLOOR_POWER = 10.0 ** (FLOOR_DBFS / 10.0)


@dataclass(frozen=True)
class VadSettings:
    """Tuning of the energy VAD; the defaults suit a Pi mic at arm's length.

    `min_level_dbfs` = -50 sits a little below where a fixed peak threshold of
    500/32768 (-36 dBFS peak) lands for speech, whose 20 ms frames have a crest factor
    of roughly 10 dB (-46 dBFS RMS), so quiet talkers a fixed peak threshold misses still count.
    """

    frame_ms: float = 20.0
    threshold_db: float = 9.0
    min_level_dbfs: float = -50.0
    hangover_frames: int = 8
    noise_rise_db_per_s: float = 3.0

    def frame_len(self, rate: int) -> int:
        """Samples per frame at `rate` Hz."""
        n = round(rate * self.frame_ms / 1000.0)
        if n <= 0:
            raise ValueError(f"frame_ms={self.frame_ms} gives no samples at {rate} Hz")
        return n

    @property
    def floor_min_dbfs(self) -> float:
        """Lowest noise floor worth tracking; below it `min_level_dbfs` decides anyway."""
        return self.min_level_dbfs - self.threshold_db

    @property
    def noise_floor(self) -> NoiseFloorSettings:
        """The floor's adaptation: `noise_rise_db_per_s`, clamped at `floor_min_dbfs`."""
        return NoiseFloorSettings(
            rise_db_per_s=self.noise_rise_db_per_s, min_dbfs=self.floor_min_dbfs
        )


class StreamingVad:
    """Frame-at-a-time VAD for live audio: `process(frame)` -> speech or not.

    Feed it consecutive mono frames of `frame_len` samples (int16 bytes as they come
    from a capture stream, an int16 array, or floats in [-1, 1]; a (frames, 1) block
    from sounddevice is fine too). Each call costs a microsecond or two: int16 frames are
    measured by `pcm16_dbfs` (the C RMS of `audioop`) without a conversion to float, and
    the floor and the decision are scalar Python math.

    The floor starts at the first frame's level, so start it on room tone (before the
    prompt, not after the user has begun talking): a floor that starts too high drops
    at the first quiet frame, but one that starts on speech makes that speech the floor
    until then.
    """

    def __init__(
        self,
        rate: int,
        settings: VadSettings = VadSettings(),
    ) -> None:
        self.rate = rate
        self.frame_len = settings.frame_len(rate)
        self._floor = NoiseFloor(settings.noise_floor)
        self._apply(settings)
        self.reset()

    def _apply(self, settings: VadSettings) -> None:
        self.settings = settings
        self._frame_s = settings.frame_ms / 1000.0
        self._floor.retune(settings.noise_floor)
        self._floor_min = settings.floor_min_dbfs
        self._threshold_db = settings.threshold_db
        self._min_level = settings.min_level_dbfs
        self._hangover = settings.hangover_frames

    def retune(self, settings: VadSettings) -> None:
        """Switch to new thresholds mid-stream, keeping the floor and the hangover count.

        For a live stream whose sensitivity is changed while it runs (the local server's
        `session.update`); the frame length is fixed for the life of the stream.
        """
        if settings.frame_len(self.rate) != self.frame_len:
            raise ValueError("retune cannot change the frame length of a running VAD")
        self._apply(settings)

    def reset(self, noise_floor_dbfs: float | None = None) -> None:
        """Forget everything; optionally start from a known floor (e.g. a calibration)."""
        self._floor.reset(noise_floor_dbfs)
        self._since_speech = self._hangover + 1
        self.level_dbfs = FLOOR_DBFS
        self.in_speech = False

    @property
    def noise_floor_dbfs(self) -> float | None:
        """Current floor estimate, None before the first frame."""
        return self._floor.floor_dbfs

    @property
    def threshold_dbfs(self) -> float:
        """The level a frame must exceed to be speech against the current floor."""
        floor = self._floor.floor_dbfs
        if floor is None:
            floor = self._floor_min
        return max(floor + self._threshold_db, self._min_level)

    def process(
        self, frame: bytes | bytearray | memoryview | np.ndarray, adapt: bool = True
    ) -> bool:
        """Update with one frame and return whether it is (still) speech.

        `adapt=False` judges the frame against the floor as it is and leaves the floor
        alone, for a caller that knows the frame belongs to an utterance (the local
        server during a turn), so a pause inside it cannot drag the floor down.
        """
        if isinstance(frame, np.ndarray):
            if frame.ndim != 1:
                if frame.ndim != 2 or frame.shape[1] != 1:
                    raise ValueError(f"expected a mono frame, got shape {frame.shape}")
                frame = frame[:, 0]
            n = frame.shape[0]
            if n == 0:
                return self.in_speech
            if frame.dtype == np.int16:
                level = pcm16_dbfs(frame)
            elif frame.dtype.kind == "f":
                power = float(np.dot(frame, frame)) / n
                level = 10.0 * math.log10(power) if power > _FLOOR_POWER else FLOOR_DBFS
            else:
                raise ValueError(f"unsupported frame type {frame.dtype}; use int16 or float")
        else:
            if len(frame) < 2:
                return self.in_speech
            level = pcm16_dbfs(frame)
        self.level_dbfs = level

        if adapt or self._floor.floor_dbfs is None:
            floor = self._floor.update(level, self._frame_s)
        else:
            floor = self._floor.floor_dbfs

        if level > floor + self._threshold_db and level > self._min_level:
            self._since_speech = 0
        elif self._since_speech <= self._hangover:
            self._since_speech += 1
        self.in_speech = self._since_speech <= self._hangover
        return self.in_speech
