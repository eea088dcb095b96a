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
  `grace_period_s` after the last of it (the echo tail, and a person who starts
  just as the answer ends);
* for `lockout_s` after the assistant starts speaking it never triggers (the
  echo canceller's worst moment, and the person's "mm-hm" at the answer's start);
* it triggers when at least `threshold_frames` of the last `window_frames` frames are speech,
  at most once per assistant episode.

Pure apart from numpy (and the optional model): PCM and the caller's monotonic clock in,
a bool out. The settings (`BargeInSettings`, re-exported here) live in
`pivoicectl.realtime.mic.settings`, which `run --help` imports without numpy.
"""

from __future__ import annotations

from collections import deque

from pivoicectl.dsp.vad import StreamingVad
from pivoicectl.realtime.mic.neural_vad import SileroFrameVad
from pivoicectl.realtime.mic.settings import BARGE_IN_CHOICES, VAD_ENGINE_CHOICES, BargeInSettings
from pivoicectl.realtime.protocol.events import BYTES_PER_SAMPLE, SAMPLE_RATE_HZ

__all__ = ["BARGE_IN_CHOICES", "VAD_ENGINE_CHOICES", "BargeInDetector", "BargeInSettings"]


class BargeInDetector:
    """Feed every mic block with whether the assistant is audible; True = interrupt now.

    `feed(pcm, now_s, assistant_playing)`: `assistant_playing` is whether assistant
    audio is queued or being played at `now_s` (the client reads it from the playback
    queue). Mic blocks of any size are cut into frames of `frame_ms`; a remainder waits
    for the next block.
    """

    def __init__(self, settings: BargeInSettings = BargeInSettings()) -> None:  # noqa: B008 (frozen)
        self.settings = settings
        self.vad: StreamingVad | SileroFrameVad
        if settings.vad_engine == "silero":
            self.vad = SileroFrameVad(settings.silero_threshold)
        else:
            self.vad = StreamingVad(SAMPLE_RATE_HZ, settings.vad_settings())
        self._frame_bytes = self.vad.frame_len * BYTES_PER_SAMPLE
        self._pending = bytearray()
        self._window: deque[bool] = deque(maxlen=settings.window_frames)
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
        return last is not None and now_s - last <= self.settings.grace_period_s

    def _armed(self, now_s: float) -> bool:
        if self._fired or self._episode_start_s is None:
            return False
        if now_s - self._episode_start_s < self.settings.lockout_s:
            return False
        return self._listening(now_s)

    def _track_playback(self, now_s: float, playing: bool) -> None:
        if playing and not self._playing:
            grace_over = (
                self._last_playing_s is None
                or now_s - self._last_playing_s > self.settings.grace_period_s
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
            if sum(self._window) >= self.settings.threshold_frames:
                fire = True
        if fire:
            self._fired = True
            self._window.clear()
            self.triggers += 1
        return fire
