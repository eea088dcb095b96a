"""The numbers of one `pivoicectl measure` recording: where the test signal starts, and
the echo metrics of the aligned (reference, mic, output) channels.

Pure DSP on arrays (the recording is the caller's I/O), unit-tested on synthetic rooms.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

from pivoicectl.core.measure_plan import CONVERGENCE_THRESHOLD_DB
from pivoicectl.errors import UserError

if TYPE_CHECKING:
    from pivoicectl.dsp.echo import EchoMetrics

_TALKER_EARLY_S = 0.2  # place the clean talker this early: the delay search looks forward


def signal_onset(reference: np.ndarray, rate: int, block_ms: float = 10.0) -> int | None:
    """First sample of the first block within 40 dB of the reference's loud level."""
    from pivoicectl.dsp.levels import frame_levels_dbfs

    block = max(1, round(rate * block_ms / 1000.0))
    levels = frame_levels_dbfs(reference, block)
    if levels.size == 0 or levels.max() <= -100.0:
        return None
    top = float(np.percentile(levels, 95))
    loud = np.flatnonzero(levels >= top - 40.0)
    return int(loud[0] * block) if loud.size else None


def place_talker(talker: np.ndarray, offset_samples: int, n_samples: int) -> np.ndarray:
    """The clean talker on the recording's time line (zeros elsewhere)."""
    track = np.zeros(n_samples)
    start = max(0, offset_samples)
    skip = start - offset_samples
    part = talker[skip : skip + max(0, n_samples - start)]
    track[start : start + part.size] = part
    return track


def analyze(
    recording: np.ndarray,
    rate: int,
    talker: np.ndarray | None = None,
    talker_offset_s: float = 0.0,
) -> tuple[EchoMetrics, dict[str, float], np.ndarray]:
    """Metrics of an aligned (reference, mic, output) recording.

    The recording is cut to start where the reference does (so convergence counts from
    the first sound); `talker_offset_s` is when the talker started, in seconds after
    the reference did. Returns (EchoMetrics, levels in dBFS, trimmed recording).
    """
    from pivoicectl.dsp.echo import compute_echo_metrics
    from pivoicectl.dsp.levels import dbfs

    onset = signal_onset(recording[:, 0], rate)
    if onset is None:
        raise UserError(
            "the speaker's monitor stayed silent: nothing was played",
            "check the speaker with `pivoicectl devices`; is another app holding it?",
            exit_code=1,
        )
    rec = recording[onset:].astype(np.float64)
    ref, mic, out = rec[:, 0], rec[:, 1], rec[:, 2]
    track = None
    if talker is not None:
        offset = round((talker_offset_s - _TALKER_EARLY_S) * rate)
        track = place_talker(talker, offset, ref.size)
    try:
        metrics = compute_echo_metrics(
            ref, mic, out, rate, track, convergence_threshold_db=CONVERGENCE_THRESHOLD_DB
        )
    except UserError as e:  # a measurement that found nothing is a failed check, not bad input
        raise UserError(e.message, e.hint, exit_code=1) from e
    loud = ref != 0
    levels = {
        "reference": dbfs(ref[loud]),
        "mic": dbfs(mic[loud]),
        "output": dbfs(out[loud]),
    }
    return metrics, levels, rec


def reported_metrics(metrics: EchoMetrics) -> EchoMetrics:
    """The metrics at the precision `measure` reports and stores."""
    return dataclasses.replace(
        metrics,
        erl_db=round(metrics.erl_db, 2),
        erle_db=round(metrics.erle_db, 2),
        echo_delay_ms=round(metrics.echo_delay_ms, 3),
        double_talk_retention_db=_round(metrics.double_talk_retention_db),
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)
