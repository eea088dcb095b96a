"""The mic path's settings: local barge-in, the echo guard and the onset mute.

Why a module of their own: `run`'s settings (and so `pivoicectl run --help`) take their
defaults and checks from these dataclasses, and must not import numpy or the Silero
model to do so; the detectors that use them (`barge_in`, `echo_guard`, `mic_path`) do.
Those modules re-export their settings, so either import works. Each range and choice
is declared once, on its field (`pivoicectl.core.setting_checks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pivoicectl.core.setting_checks import SettingError, check_fields, checked

if TYPE_CHECKING:
    from pivoicectl.dsp.vad import VadSettings

BARGE_IN_CHOICES = ("server", "local", "off")
"""`--barge-in` values: who decides the person interrupts (the service, the device) or
nobody (the assistant always finishes)."""

VAD_ENGINE_CHOICES = ("energy", "silero")
"""`--barge-in-vad` values: the numpy energy VAD, or the Silero model (an extra)."""

ECHO_GUARD_CHOICES = ("off", "gate", "vad-gate")
"""`--echo-guard` values; see `pivoicectl.realtime.mic.echo_guard`."""


@dataclass(frozen=True)
class BargeInSettings:
    """Who decides the person interrupts (`mode`), and the tuning of the local detector.

    The defaults trigger after 60 ms of speech (2 of the last 5 frames of 30 ms): in the
    simulated room that is 121 ms median from speech onset at the mic to silence at the
    speaker (3 frames gave 152 ms, over the 150 ms goal). Raise `threshold_frames` and
    `lockout_s` if noise interrupts the assistant (e.g. 15 of 24 frames).
    `vad_engine="silero"` (the `silero` extra) decides speech by a neural model instead
    of energy, in 32 ms frames (`frame_ms` and the `vad_*` levels then do not apply).
    """

    mode: str = checked("server", choices=BARGE_IN_CHOICES)
    frame_ms: int = checked(30, lo=10, hi=200)
    threshold_frames: int = 2
    window_frames: int = checked(5, lo=1)
    lockout_s: float = checked(0.5, lo=0)
    grace_period_s: float = checked(1.0, lo=0)
    vad_threshold_db: float = 9.0
    vad_min_level_dbfs: float = -50.0
    vad_engine: str = checked("energy", choices=VAD_ENGINE_CHOICES)
    silero_threshold: float = checked(0.5, lo=0, hi=1, lo_open=True, hi_open=True)

    def __post_init__(self) -> None:
        check_fields(self)
        if not 1 <= self.threshold_frames <= self.window_frames:
            raise SettingError(
                "threshold_frames",
                self.threshold_frames,
                "is out of range",
                f"1 to the window size ({self.window_frames} frames)",
            )

    def vad_settings(self) -> VadSettings:
        """The energy VAD's settings for these frames."""
        from pivoicectl.dsp.vad import VadSettings

        return VadSettings(
            frame_ms=float(self.frame_ms),
            threshold_db=self.vad_threshold_db,
            min_level_dbfs=self.vad_min_level_dbfs,
            hangover_frames=0,
        )

    def check_engine(self) -> None:
        """A UserError now (not when the first answer plays) if the engine cannot load."""
        if self.vad_engine == "silero":
            from pivoicectl.realtime.mic.neural_vad import load_silero

            load_silero()


@dataclass(frozen=True)
class EchoGuardSettings:
    """Tuning of the echo guard; units in the names."""

    mode: str = checked("off", choices=ECHO_GUARD_CHOICES)
    tail_ms: int = checked(300, lo=0, hi=5000)
    pre_roll_ms: int = 300
    reference_window_ms: int = 400
    erl_db: float | None = None
    default_erl_db: float = 6.0
    margin_db: float = 6.0
    min_level_dbfs: float = -50.0
    double_talk_blocks: int = checked(3, lo=1)
    erl_history_blocks: int = 150
    erl_min_observations: int = 25
    erl_percentile: float = 10.0

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class OnsetMuteSettings:
    """Silence sent in place of the mic when an answer turns loud after a quiet spell.

    Why: in the simulated room a canceller that has heard nothing from the speaker for a
    while lets the first moments of the next answer through (about -45 dBFS), and in
    about one run in six on PipeWire 1.4.2 and 0.3.65 that was enough for the parrot's
    VAD to take the assistant's own voice for the user: it interrupted itself 0.5 s
    into its answer. Sending silence for `mute_ms` from the loud onset hides that
    transient; the cost is that speech in that window does not reach the service.

    A new answer (another response id) is an onset too, however short the quiet: on
    PipeWire 0.3.65 an answer that followed an interruption 0.6 s after it was cut off
    interrupted itself 120 ms in (the canceller had just heard the person talk over the
    previous answer).
    """

    mute_ms: int = checked(300, lo=0, hi=2000)
    quiet_before_s: float = 1.0
    """The answer must follow this long without loud playback (a new answer)."""
    loud_dbfs: float = -40.0

    def __post_init__(self) -> None:
        check_fields(self)
