"""Echo guard: keep the assistant from hearing itself where no echo canceller works.

Why: without a working canceller (a loud speaker next to the mic, a speakerphone, a
bridge that loops the agent's audio back digitally) the service's VAD takes
the assistant's own voice for the person and the assistant interrupts itself. Three
modes:

* `off`: every mic block is sent (the canceller does the job);
* `gate`: no mic audio is sent while the assistant's audio plays and for `tail_ms`
  after it (the echo path and the room's reverberation); half duplex, nobody can
  interrupt;
* `vad-gate`: the same gate, but a double-talk detector may open it. The assistant's
  voice is speech too, so a plain VAD would open the gate on the echo; this uses what
  the client itself plays as the reference, Geigel-style: the person is talking when
  the mic level exceeds the loudest recent playback level minus the echo return loss
  (ERL) by `margin_db`. The ERL comes from `measure` (`erl_db`) or is estimated while
  only the assistant talks (a low percentile of playback-minus-mic levels, so a few
  frames of the person's speech do not move it). When the detector fires the gate
  opens, the caller cancels the answer, and the mic audio since a little before the
  speech began (`pre_roll_ms`) is sent first, so the service hears the first syllable.

Pure: levels and PCM with the caller's monotonic clock in, what to send out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from pivoicectl.dsp.levels import FLOOR_DBFS, pcm16_dbfs
from pivoicectl.realtime.mic.settings import ECHO_GUARD_CHOICES, EchoGuardSettings
from pivoicectl.realtime.protocol.events import BYTES_PER_SAMPLE, SAMPLE_RATE_HZ

__all__ = ["ECHO_GUARD_CHOICES", "EchoGuard", "EchoGuardSettings", "GuardDecision"]
"""`EchoGuardSettings` lives in `pivoicectl.realtime.mic.settings` (no numpy there, so
`run --help` can take its defaults) and is re-exported here."""


@dataclass(frozen=True)
class GuardDecision:
    """What to do with one mic block: the blocks to send (maybe none, maybe the
    pre-roll too) and whether the person just interrupted the assistant."""

    send: tuple[bytes, ...]
    interrupt: bool = False


class EchoGuard:
    """`reference(audible_s, level)` for what the speaker plays, `feed(pcm, now_s,
    playing)` per mic block."""

    def __init__(self, settings: EchoGuardSettings = EchoGuardSettings()) -> None:  # noqa: B008
        self.settings = settings
        self._ref: deque[tuple[float, float]] = deque()
        self._pre_roll: deque[bytes] = deque()
        self._pre_roll_bytes = 0
        self._max_pre_roll_bytes = (
            int(SAMPLE_RATE_HZ * settings.pre_roll_ms / 1000) * BYTES_PER_SAMPLE
        )
        self._erl_obs: deque[float] = deque(maxlen=settings.erl_history_blocks)
        self._last_playing_s: float | None = None
        self._playing = False
        self._forced_open = False
        self._double_talk = 0
        self.blocks_gated = 0
        self.openings = 0

    # --- inputs -------------------------------------------------------------------------

    def reference(self, audible_s: float, level_dbfs: float) -> None:
        """The speaker plays audio of `level_dbfs` from `audible_s` on."""
        self._ref.append((audible_s, level_dbfs))
        horizon = audible_s - 2 * self.settings.reference_window_ms / 1000
        while self._ref and self._ref[0][0] < horizon:
            self._ref.popleft()

    @property
    def erl_db(self) -> float:
        """The echo return loss in use (given, estimated, or the default)."""
        s = self.settings
        if s.erl_db is not None:
            return s.erl_db
        if len(self._erl_obs) < s.erl_min_observations:
            return s.default_erl_db
        return float(np.percentile(np.fromiter(self._erl_obs, float), s.erl_percentile))

    def reference_level_dbfs(self, now_s: float) -> float:
        """The loudest playback level audible within the reference window before now."""
        start = now_s - self.settings.reference_window_ms / 1000
        levels = [lvl for t, lvl in self._ref if start <= t <= now_s]
        return max(levels, default=FLOOR_DBFS)

    def is_closed(self, now_s: float) -> bool:
        if self.settings.mode == "off" or self._forced_open:
            return False
        if self._playing:
            return True
        last = self._last_playing_s
        return last is not None and (now_s - last) * 1000 <= self.settings.tail_ms

    def feed(self, pcm: bytes, now_s: float, playing: bool) -> GuardDecision:
        """Decide about one mic block captured up to `now_s`."""
        s = self.settings
        if s.mode == "off":
            return GuardDecision((pcm,))
        if playing and not self._playing:
            self._forced_open = False  # a new answer: the gate guards it again
        self._playing = playing
        if playing:
            self._last_playing_s = now_s
        if not self.is_closed(now_s):
            self._clear_pre_roll()
            self._double_talk = 0
            return GuardDecision((pcm,))
        self.blocks_gated += 1
        self._keep(pcm)
        if s.mode != "vad-gate":
            return GuardDecision(())
        if self._person_talks(pcm, now_s):
            self._forced_open = True
            self.openings += 1
            self._double_talk = 0
            blocks = tuple(self._pre_roll)
            self._clear_pre_roll()
            return GuardDecision(blocks, interrupt=True)
        return GuardDecision(())

    # --- internals ------------------------------------------------------------------------

    def _person_talks(self, pcm: bytes, now_s: float) -> bool:
        s = self.settings
        mic = pcm16_dbfs(pcm)
        ref = self.reference_level_dbfs(now_s)
        expected_echo = ref - self.erl_db
        talking = mic > s.min_level_dbfs and mic > expected_echo + s.margin_db
        if talking:
            self._double_talk += 1
        else:
            self._double_talk = 0
            if ref > s.min_level_dbfs and mic > FLOOR_DBFS:
                self._erl_obs.append(ref - mic)  # only the assistant: learn the echo loss
        return self._double_talk >= s.double_talk_blocks

    def _keep(self, pcm: bytes) -> None:
        self._pre_roll.append(pcm)
        self._pre_roll_bytes += len(pcm)
        while self._pre_roll_bytes > self._max_pre_roll_bytes and len(self._pre_roll) > 1:
            self._pre_roll_bytes -= len(self._pre_roll.popleft())

    def _clear_pre_roll(self) -> None:
        self._pre_roll.clear()
        self._pre_roll_bytes = 0
