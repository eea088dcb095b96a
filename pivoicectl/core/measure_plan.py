"""What `pivoicectl measure` will do, decided before anything plays: its options and
their ranges, which nodes it uses, and the verdict rule.

Pure and free of numpy, so the command line can take its defaults from here without
paying for the DSP imports on `--help`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pivoicectl.errors import UserError

RATE = 48000
DEFAULT_DURATION_S = 6.0
MIN_DURATION_S = 2.0
MAX_DURATION_S = 60.0
DEFAULT_LEVEL_DBFS = -20.0
DEFAULT_MIN_ERLE_DB = 25.0
"""Shipped threshold. In the simulated room the shipped defaults reach 35-60 dB (often
capped by the output's digital silence) and untuned PipeWire 25-45 dB; 25 dB is where
an echo 12 dB below the speaker ends up under the VAD's -50 dBFS speech floor at
ordinary playback levels, i.e. where the assistant stops triggering on itself."""
DEFAULT_MIN_RETENTION_DB = -10.0
"""A near-end talker losing more than 10 dB while the assistant speaks is hard to hear
for a server VAD: barge-in becomes unreliable."""
CONVERGENCE_THRESHOLD_DB = 20.0
"""Converged = the output stays this far under the mic. 10 dB (the DSP's default) is
passed within 0.2 s by webrtc, while blocks still leak 11-13 dB; counting those as
steady state dragged a fresh canceller's ERLE from 60 dB down to 29 dB here."""


@dataclass(frozen=True)
class MeasureOptions:
    duration_s: float = DEFAULT_DURATION_S
    signal: str = "noise"
    level_dbfs: float = DEFAULT_LEVEL_DBFS
    mic: str | None = None
    speaker: str | None = None
    talker_file: Path | None = None
    talker_sink: str | None = None
    min_erle_db: float = DEFAULT_MIN_ERLE_DB
    min_retention_db: float = DEFAULT_MIN_RETENTION_DB
    plot: Path | None = None


@dataclass(frozen=True)
class Nodes:
    """The nodes one measurement uses."""

    speaker: str
    """Sink whose monitor is the reference (what really leaves the speaker)."""
    playback_sink: str
    """Where the test signal is played: sink_ec on PipeWire 0.3 setups, else the speaker."""
    mic: str
    """The canceller's capture device (raw mic)."""
    output: str
    """The echo-cancelled source."""


def validate(opts: MeasureOptions) -> None:
    """Bad input as one UserError (exit 2), before anything plays."""
    from pivoicectl.dsp.signals import SIGNAL_KINDS

    if not MIN_DURATION_S <= opts.duration_s <= MAX_DURATION_S:
        raise UserError(
            f"--duration {opts.duration_s:g} s is out of range",
            f"use {MIN_DURATION_S:g} to {MAX_DURATION_S:g} seconds",
        )
    if opts.signal not in SIGNAL_KINDS:
        raise UserError(f"--signal {opts.signal!r} is unknown", "use " + "|".join(SIGNAL_KINDS))
    if not -60.0 <= opts.level_dbfs <= -3.0:
        raise UserError(f"--level {opts.level_dbfs:g} dBFS is out of range", "use -60 to -3")
    if (opts.talker_file is None) != (opts.talker_sink is None):
        raise UserError(
            "--talker-file and --talker-sink go together",
            "e.g. --talker-file question.wav --talker-sink sim_air",
        )
    if opts.plot is not None and opts.plot.suffix.lower() != ".png":
        raise UserError(f"--plot {opts.plot} is not a .png path", "e.g. --plot echo.png")


def choose_nodes(
    opts: MeasureOptions,
    sources: dict[str, bool],
    sinks: set[str],
    default_sink: str,
    pinned: tuple[str, str] | None,
    ec_capture_from: str | None,
) -> Nodes:
    """Pick the nodes from what exists. `sources` maps name -> is a monitor.

    The mic is the one the canceller really captures (what the running module reads,
    else the config's pin) unless --mic says otherwise; the speaker likewise.
    """
    from pivoicectl.core.echo_config import SINK_NAME, SOURCE_NAME

    hint = "list them with `pivoicectl devices`"
    if SOURCE_NAME not in sources:
        raise UserError(
            f"there is no {SOURCE_NAME}: echo cancellation is not running",
            "run `pivoicectl setup` (then `pivoicectl doctor` if it still lacks)",
        )
    mic = opts.mic or ec_capture_from or (pinned[0] if pinned else None)
    if mic is None:
        raise UserError("cannot tell which microphone the canceller uses", "pass --mic NODE")
    if mic not in sources:
        raise UserError(f"no source named {mic!r}", hint)
    if mic == SOURCE_NAME or sources[mic]:
        raise UserError(f"{mic!r} is not a raw microphone", "pass --mic with the real mic")
    speaker = opts.speaker or (pinned[1] if pinned else None)
    if speaker is None:
        speaker = default_sink if default_sink != SINK_NAME else ""
    if not speaker:
        raise UserError("cannot tell which speaker to measure", "pass --speaker NODE")
    if speaker not in sinks:
        raise UserError(f"no sink named {speaker!r}", hint)
    if opts.talker_sink is not None and opts.talker_sink not in sinks:
        raise UserError(f"no sink named {opts.talker_sink!r} for --talker-sink", hint)
    playback = SINK_NAME if SINK_NAME in sinks and speaker != SINK_NAME else speaker
    return Nodes(speaker=speaker, playback_sink=playback, mic=mic, output=SOURCE_NAME)


def judge(
    erle_db: float,
    erle_capped: bool,
    convergence_s: float | None,
    retention_db: float | None,
    min_erle_db: float,
    min_retention_db: float,
) -> tuple[str, list[str]]:
    """The verdict and why, from the metrics and the thresholds."""
    reasons: list[str] = []
    if erle_db < min_erle_db:
        if erle_capped:
            reasons.append(
                f"ERLE is at least {erle_db:.1f} dB but that cannot show {min_erle_db:g} dB: "
                "the echo is too quiet to measure; raise --level or the speaker volume"
            )
        else:
            reasons.append(f"ERLE {erle_db:.1f} dB is below {min_erle_db:g} dB")
    if convergence_s is None:
        reasons.append(
            f"the canceller never stayed converged ({CONVERGENCE_THRESHOLD_DB:g} dB) until the end"
        )
    if retention_db is not None and retention_db < min_retention_db:
        reasons.append(
            f"the near-end talker loses {-retention_db:.1f} dB during double talk "
            f"(limit {-min_retention_db:g} dB): barge-in will be unreliable"
        )
    return ("fail" if reasons else "pass"), reasons
