"""Utterances in a live stream, and whether one is the assistant hearing itself. Pure.

`parrot` (and later `run`) need two decisions per capture: where an utterance starts
and ends (the VAD gives speech per frame; an utterance adds pre-roll, a minimum length
and a maximum), and whether a captured utterance is a *self-trigger*: it started while,
or within a short grace after, our own playback, AND its sound matches what we played.
Timing alone would blame a person who talks over the assistant; correlation alone would
blame a person repeating the assistant's words a minute later.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from pivoicectl.dsp.delay import estimate_delay
from pivoicectl.dsp.vad import StreamingVad, VadSettings


@dataclass(frozen=True)
class Utterance:
    """One detected utterance: start/end in seconds of the capture clock, and its samples."""

    start_s: float
    end_s: float
    samples: np.ndarray  # int16, includes the pre-roll
    speech_start_s: float = 0.0
    """The first frame the VAD called speech (start_s is earlier by the pre-roll)."""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class UtteranceDetector:
    """Feed consecutive int16 frames; `feed` returns an Utterance when one has ended.

    Time is counted in frames fed, so it is the capture's own clock (no wall time).
    """

    def __init__(
        self,
        rate: int,
        settings: VadSettings | None = None,
        preroll_ms: float = 200.0,
        min_speech_ms: float = 200.0,
        max_utterance_s: float = 15.0,
    ) -> None:
        self.rate = rate
        self.vad = StreamingVad(rate, settings or VadSettings())
        self.frame_len = self.vad.frame_len
        self.frame_s = self.frame_len / rate
        self._preroll: deque[np.ndarray] = deque(
            maxlen=max(0, round(preroll_ms / 1000 / self.frame_s))
        )
        self._min_frames = max(1, round(min_speech_ms / 1000 / self.frame_s))
        self._max_frames = max(1, round(max_utterance_s / self.frame_s))
        self.frames_seen = 0
        self._current: list[np.ndarray] | None = None
        self._start_frame = 0
        self._speech_frame = 0
        self._speech_frames = 0

    @property
    def now_s(self) -> float:
        """Capture time at the end of the last frame fed."""
        return self.frames_seen * self.frame_s

    @property
    def in_utterance(self) -> bool:
        return self._current is not None

    def feed(self, frame: bytes | np.ndarray) -> Utterance | None:
        pcm = np.frombuffer(frame, dtype="<i2") if isinstance(frame, bytes | bytearray) else frame
        speech = self.vad.process(pcm)
        index = self.frames_seen
        self.frames_seen += 1
        if self._current is None:
            if not speech:
                self._preroll.append(pcm)
                return None
            self._current = list(self._preroll)
            self._start_frame = index - len(self._preroll)
            self._speech_frame = index
            self._preroll.clear()
            self._speech_frames = 0
        self._current.append(pcm)
        if speech:
            self._speech_frames += 1
        if speech and len(self._current) < self._max_frames:
            return None
        return self._finish()

    def _finish(self) -> Utterance | None:
        frames, self._current = self._current or [], None
        if self._speech_frames < self._min_frames:
            return None  # a click, not an utterance
        start = self._start_frame * self.frame_s
        end = start + len(frames) * self.frame_s
        speech_start = self._speech_frame * self.frame_s
        return Utterance(start, end, np.concatenate(frames), speech_start)


@dataclass(frozen=True)
class SelfTriggerCheck:
    """Why a capture was, or was not, judged to be our own playback coming back."""

    self_trigger: bool
    during_playback: bool
    correlates: bool
    match_peak_to_noise_db: float


def check_self_trigger(
    captured: np.ndarray,
    captured_start_s: float,
    played: np.ndarray,
    played_start_s: float,
    rate: int,
    grace_s: float = 0.5,
    max_latency_ms: float = 1000.0,
) -> SelfTriggerCheck:
    """Is `captured` (starting at `captured_start_s`) our `played` audio coming back?

    During playback = it started between the playback start and its end plus `grace_s`
    (output buffering and room reverberation keep the echo alive after the last
    sample). Correlates = GCC-PHAT finds `played` inside `captured` with a reliable
    peak, at any offset from the captured start back to the whole played length, and
    up to `max_latency_ms` of playback latency the other way.
    """
    played_end_s = played_start_s + played.size / rate
    during = played_start_s <= captured_start_s <= played_end_s + grace_s
    played_ms = 1000.0 * played.size / rate
    if captured.size == 0 or played.size == 0 or not np.any(captured) or not np.any(played):
        return SelfTriggerCheck(False, during, False, 0.0)
    est = estimate_delay(
        played.astype(np.float64),
        captured.astype(np.float64),
        rate,
        max_delay_ms=max_latency_ms,
        min_delay_ms=-played_ms,
    )
    correlates = est.reliable and not est.inverted
    return SelfTriggerCheck(during and correlates, during, correlates, est.peak_to_noise_db)
