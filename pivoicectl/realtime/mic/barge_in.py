"""Local barge-in: decide on the device that the person talks over the assistant.

Why local: with server VAD the speaker only falls silent after the mic audio has
travelled to the service, its VAD has decided, and `speech_started` has come back (a
network round trip plus the VAD's own delay). A VAD on the device stops playback as
soon as enough speech frames are heard, then tells the service (`response.cancel` and
the truncate); the audio keeps flowing, so the service still hears the whole turn.

The decision is counted in frames of `frame_ms`:

* a frame is speech by the energy VAD of `pivoicectl.dsp.vad` (no hangover: every
  frame counts on its own), or with `vad_engine="silero"` by the Silero model of
  `pivoicectl.realtime.mic.neural_vad` (probability >= `silero_threshold`; frames are then
  the model's 32 ms whatever `frame_ms` says, and the model only runs while the
  detector listens: during an answer and its grace period);
* the detector is armed only while the assistant's audio plays, and for
  `grace_period_seconds` after the last of it (the echo tail, and a person who starts
  just as the answer ends);
* for `lockout_seconds` after the assistant starts speaking it never triggers (the
  echo canceller's worst moment, and the person's "mm-hm" at the answer's start);
* it triggers when at least `threshold` of the last `window_size` frames are speech,
  at most once per assistant episode.

Pure apart from numpy (and the optional model): PCM and the caller's monotonic clock in,
a bool out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from pivoicectl.dsp.vad import StreamingVad, VadSettings
from pivoicectl.errors import UserError
from pivoicectl.realtime.mic.neural_vad import SileroFrameVad, load_silero
from pivoicectl.realtime.protocol.events import BYTES_PER_SAMPLE, SAMPLE_RATE_HZ

BARGE_IN_CHOICES = ("server", "local", "off")
"""`--barge-in` values: who decides the person interrupts (the service, the device) or
nobody (the assistant always finishes)."""

VAD_ENGINE_CHOICES = ("energy", "silero")
"""`--barge-in-vad` values: the numpy energy VAD, or the Silero model (an extra)."""


@dataclass(frozen=True)
class BargeInSettings:
    """Tuning of the local barge-in detector.

    The defaults trigger after 60 ms of speech (2 of the last 5 frames of 30 ms): in the
    simulated room that is 121 ms median from speech onset at the mic to silence at the
    speaker (3 frames gave 152 ms, over the 150 ms goal). Raise `threshold` and
    `lockout_seconds` if noise interrupts the assistant (e.g. 15 of 24 frames).
    `vad_engine="silero"` (the `silero` extra) decides speech by a neural model instead
    of energy, in 32 ms frames (`frame_ms` and the `vad_*` levels then do not apply).
    """

    frame_ms: int = 30
    threshold: int = 2
    window_size: int = 5
    lockout_seconds: float = 0.5
    grace_period_seconds: float = 1.0
    vad_threshold_db: float = 9.0
    vad_min_level_dbfs: float = -50.0
    vad_engine: str = "energy"
    silero_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.vad_engine not in VAD_ENGINE_CHOICES:
            raise UserError(
                f"unknown --barge-in-vad {self.vad_engine!r}",
                hint="use one of: " + ", ".join(VAD_ENGINE_CHOICES),
            )
        if not 0.0 < self.silero_threshold < 1.0:
            raise UserError(
                f"barge-in silero_threshold={self.silero_threshold} is out of range",
                hint="use a probability between 0 and 1, e.g. 0.5",
            )
        if not 10 <= self.frame_ms <= 200:
            raise UserError(
                f"barge-in frame_ms={self.frame_ms} is out of range", hint="use 10 to 200"
            )
        if self.window_size < 1 or not 1 <= self.threshold <= self.window_size:
            raise UserError(
                f"barge-in threshold={self.threshold} must be between 1 and "
                f"window_size={self.window_size}",
                hint="e.g. threshold 3, window_size 5",
            )
        if self.lockout_seconds < 0 or self.grace_period_seconds < 0:
            raise UserError(
                "barge-in lockout_seconds and grace_period_seconds must not be negative"
            )

    def vad_settings(self) -> VadSettings:
        return VadSettings(
            frame_ms=float(self.frame_ms),
            threshold_db=self.vad_threshold_db,
            min_level_dbfs=self.vad_min_level_dbfs,
            hangover_frames=0,
        )

    def check_engine(self) -> None:
        """A UserError now (not when the first answer plays) if the engine cannot load."""
        if self.vad_engine == "silero":
            load_silero()


class BargeInDetector:
    """Feed every mic block with whether the assistant is audible; True = interrupt now.

    `feed(pcm, now_s, assistant_playing)`: `assistant_playing` is whether assistant
    audio is queued or being played at `now_s` (the client reads it from the playback
    queue). Mic blocks of any size are cut into frames of `frame_ms`; a remainder waits
    for the next block.
    """

    def __init__(self, settings: BargeInSettings = BargeInSettings()) -> None:
        self.settings = settings
        self.vad: StreamingVad | SileroFrameVad
        if settings.vad_engine == "silero":
            self.vad = SileroFrameVad(settings.silero_threshold)
        else:
            self.vad = StreamingVad(SAMPLE_RATE_HZ, settings.vad_settings())
        self._frame_bytes = self.vad.frame_len * BYTES_PER_SAMPLE
        self._pending = bytearray()
        self._window: deque[bool] = deque(maxlen=settings.window_size)
        self._playing = False
        self._episode_start_s: float | None = None
        self._last_playing_s: float | None = None
        self._fired = False
        self.triggers = 0

    def _listening(self, now_s: float) -> bool:
        """Assistant audio plays, or played within the grace period."""
        if self._playing:
            return True
        last = self._last_playing_s
        return last is not None and now_s - last <= self.settings.grace_period_seconds

    def _armed(self, now_s: float) -> bool:
        if self._fired or self._episode_start_s is None:
            return False
        if now_s - self._episode_start_s < self.settings.lockout_seconds:
            return False
        return self._listening(now_s)

    def _track_playback(self, now_s: float, playing: bool) -> None:
        if playing and not self._playing:
            grace_over = (
                self._last_playing_s is None
                or now_s - self._last_playing_s > self.settings.grace_period_seconds
            )
            if self._episode_start_s is None or grace_over:
                # A new answer (not a gap between deltas): new lockout, may fire again.
                self._episode_start_s = now_s
                self._fired = False
                self._window.clear()
        if playing:
            self._last_playing_s = now_s
        self._playing = playing

    def feed(self, pcm: bytes, now_s: float, assistant_playing: bool) -> bool:
        """Process one mic block; True exactly once when the person barges in."""
        self._track_playback(now_s, assistant_playing)
        self._pending += pcm
        fire = False
        # The energy VAD needs every frame (its noise floor); the model only when it counts.
        idle_model = (
            self.vad
            if isinstance(self.vad, SileroFrameVad) and not self._listening(now_s)
            else None
        )
        while len(self._pending) >= self._frame_bytes:
            frame = bytes(self._pending[: self._frame_bytes])
            del self._pending[: self._frame_bytes]
            if idle_model is not None:
                idle_model.skip(frame)
                self._window.clear()
                continue
            speech = self.vad.process(frame)
            if not self._armed(now_s):
                self._window.clear()
                continue
            self._window.append(speech)
            if sum(self._window) >= self.settings.threshold:
                fire = True
        if fire:
            self._fired = True
            self._window.clear()
            self.triggers += 1
        return fire
