"""Energy voice-activity detection against an adaptive noise floor.

Why energy and not a model: `parrot`, the local barge-in and the local Realtime server's
turn detection run on a Raspberry Pi next to an echo canceller and a speech client, and
they only need "is somebody louder than the room right now". A fixed amplitude threshold
(e.g. silent while the peak is < 500) breaks as soon as the room or the mic gain changes,
so the threshold here rides on a noise floor that follows the quietest recent frames.

The floor rule, per frame: it drops at once to any quieter frame and rises by at most
`noise_rise_db_per_s`. That single rule is the whole adaptation; it is also what makes
the offline version a closed-form cumulative minimum instead of a Python loop, and the
streaming version a handful of float operations. It is clamped from below at
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
from dataclasses import dataclass, replace

import numpy as np

from pivoicectl.dsp.levels import FLOOR_DBFS, frame_levels_dbfs

_INT16_POWER_SCALE = 1.0 / (32768.0 * 32768.0)


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
    def rise_per_frame_db(self) -> float:
        return self.noise_rise_db_per_s * self.frame_ms / 1000.0


@dataclass(frozen=True)
class SpeechFrames:
    """Per-frame VAD trace of a whole signal (arrays of length n_frames)."""

    frame_len_samples: int
    rate: int
    level_dbfs: np.ndarray
    noise_floor_dbfs: np.ndarray
    is_speech: np.ndarray

    @property
    def frame_s(self) -> float:
        return self.frame_len_samples / self.rate


def noise_floor_dbfs(
    level_dbfs: np.ndarray,
    settings: VadSettings,
    initial_floor_dbfs: float | None = None,
) -> np.ndarray:
    """The adaptive floor for a run of frame levels, in closed form.

    floor[n] = min(level[n], floor[n-1] + r) unrolls to
    floor[n] = min over k <= n of (level[k] + (n - k) * r), i.e. n*r plus a cumulative
    minimum of (level[k] - k*r): vectorized, and identical to the streaming recursion.
    """
    levels = np.maximum(np.asarray(level_dbfs, dtype=np.float64), settings.floor_min_dbfs)
    r = settings.rise_per_frame_db
    k = np.arange(levels.size, dtype=np.float64)
    floor = k * r + np.minimum.accumulate(levels - k * r)
    if initial_floor_dbfs is not None:
        start = max(initial_floor_dbfs, settings.floor_min_dbfs)
        floor = np.minimum(floor, start + (k + 1.0) * r)
    return floor


def _apply_hangover(raw: np.ndarray, hangover_frames: int) -> np.ndarray:
    """Keep speech on for `hangover_frames` after each raw speech frame."""
    idx = np.arange(raw.size)
    last = np.maximum.accumulate(np.where(raw, idx, -(hangover_frames + 1) - 1))
    return (idx - last) <= hangover_frames


def detect_speech(
    signal: np.ndarray,
    rate: int,
    settings: VadSettings = VadSettings(),
    initial_floor_dbfs: float | None = None,
) -> SpeechFrames:
    """Frame-by-frame speech decisions for a whole signal (int16 or float).

    Without `initial_floor_dbfs` the floor starts at the first frame, exactly like
    `StreamingVad`, so offline analysis and the live path agree frame for frame.
    """
    n = settings.frame_len(rate)
    return _decide(frame_levels_dbfs(signal, n), n, rate, settings, initial_floor_dbfs)


def _decide(
    levels: np.ndarray,
    frame_len: int,
    rate: int,
    settings: VadSettings,
    initial_floor_dbfs: float | None,
) -> SpeechFrames:
    floor = noise_floor_dbfs(levels, settings, initial_floor_dbfs)
    raw = (levels > floor + settings.threshold_db) & (levels > settings.min_level_dbfs)
    speech = _apply_hangover(raw, settings.hangover_frames)
    return SpeechFrames(frame_len, rate, levels, floor, speech)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the runs of True in a boolean array."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.diff(padded)
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def speech_segments(
    signal: np.ndarray,
    rate: int,
    settings: VadSettings = VadSettings(),
    min_speech_ms: float = 120.0,
    min_silence_ms: float = 300.0,
) -> list[tuple[float, float]]:
    """Utterances in a recording as (start_s, end_s), frame-accurate.

    Gaps shorter than `min_silence_ms` are bridged first (a pause inside a sentence is
    not the end of it), then pieces shorter than `min_speech_ms` are dropped (a door
    click is not an utterance). The bridging replaces the hangover, which is switched off
    here so that end times mark where speech stops, not where the hangover runs out.
    Offline we can afford to look ahead, so the floor starts at the 10th percentile of
    all frame levels instead of the first frame: a recording that starts mid-word still
    gets a sensible floor.
    """
    settings = replace(settings, hangover_frames=0)
    n = settings.frame_len(rate)
    levels = frame_levels_dbfs(signal, n)
    if levels.size == 0:
        return []
    trace = _decide(levels, n, rate, settings, float(np.percentile(levels, 10)))
    starts, ends = _runs(trace.is_speech)
    if starts.size == 0:
        return []
    min_gap = math.ceil(min_silence_ms / settings.frame_ms - 1e-9)
    keep_gap = (starts[1:] - ends[:-1]) >= min_gap
    starts = starts[np.concatenate(([True], keep_gap))]
    ends = ends[np.concatenate((keep_gap, [True]))]
    min_len = math.ceil(min_speech_ms / settings.frame_ms - 1e-9)
    long_enough = (ends - starts) >= min_len
    return [
        (float(s * n / rate), float(e * n / rate))
        for s, e in zip(starts[long_enough], ends[long_enough], strict=True)
    ]


class StreamingVad:
    """Frame-at-a-time VAD for live audio: `process(frame)` -> speech or not.

    Feed it consecutive mono frames of `frame_len` samples (int16 bytes as they come
    from a capture stream, an int16 array, or floats in [-1, 1]; a (frames, 1) block
    from sounddevice is fine too). Each call costs a few
    microseconds: int16 frames are converted into one preallocated float32 buffer and
    reduced with a single BLAS dot product, and the state update is scalar Python math.

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
        self._buf = np.empty(self.frame_len, dtype=np.float32)
        self._floor_power = 10.0 ** (FLOOR_DBFS / 10.0)
        self._apply(settings)
        self.reset()

    def _apply(self, settings: VadSettings) -> None:
        self.settings = settings
        self._rise_db = settings.rise_per_frame_db
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
        self._floor: float | None = (
            None if noise_floor_dbfs is None else max(noise_floor_dbfs, self._floor_min)
        )
        self._since_speech = self._hangover + 1
        self.level_dbfs = FLOOR_DBFS
        self.in_speech = False

    @property
    def noise_floor_dbfs(self) -> float | None:
        """Current floor estimate, None before the first frame."""
        return self._floor

    @property
    def threshold_dbfs(self) -> float:
        """The level a frame must exceed to be speech against the current floor."""
        floor = self._floor if self._floor is not None else self._floor_min
        return max(floor + self._threshold_db, self._min_level)

    def process(
        self, frame: bytes | bytearray | memoryview | np.ndarray, adapt: bool = True
    ) -> bool:
        """Update with one frame and return whether it is (still) speech.

        `adapt=False` judges the frame against the floor as it is and leaves the floor
        alone, for a caller that knows the frame belongs to an utterance (the local
        server during a turn), so a pause inside it cannot drag the floor down.
        """
        if isinstance(frame, bytes | bytearray | memoryview):
            frame = np.frombuffer(frame, dtype="<i2")
        elif frame.ndim != 1:
            if frame.ndim != 2 or frame.shape[1] != 1:
                raise ValueError(f"expected a mono frame, got shape {frame.shape}")
            frame = frame[:, 0]
        n = frame.shape[0]
        if n == 0:
            return self.in_speech
        if frame.dtype == np.int16:
            buf = self._buf if n == self.frame_len else np.empty(n, dtype=np.float32)
            np.copyto(buf, frame)
            power = float(np.dot(buf, buf)) * _INT16_POWER_SCALE / n
        elif frame.dtype.kind == "f":
            power = float(np.dot(frame, frame)) / n
        else:
            raise ValueError(f"unsupported frame type {frame.dtype}; use int16 or float")
        level = 10.0 * math.log10(power) if power > self._floor_power else FLOOR_DBFS
        self.level_dbfs = level

        clamped = level if level > self._floor_min else self._floor_min
        if self._floor is None:
            floor = clamped
        elif adapt:
            risen = self._floor + self._rise_db
            floor = clamped if clamped < risen else risen
        else:
            floor = self._floor
        self._floor = floor

        if level > floor + self._threshold_db and level > self._min_level:
            self._since_speech = 0
        elif self._since_speech <= self._hangover:
            self._since_speech += 1
        self.in_speech = self._since_speech <= self._hangover
        return self.in_speech
