"""Echo metrics: how loud the echo is, and how much of it the canceller removes.

Vocabulary (ITU-T G.168): the *reference* is what the speaker plays (far end), the
*mic* is the raw capture (echo + room + near-end talker), the *output* is what the echo
canceller passes on. ERL is the loss from reference to echo in the mic (speaker volume,
distance, mic gain); ERLE is what the canceller adds on top; together they are how far
below the speaker's level the assistant hears itself.

All functions take mono numpy arrays (int16 or float in [-1, 1]) and return plain
Python numbers, so results go straight into JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pivoicectl.dsp.delay import align, estimate_delay, next_fast_len
from pivoicectl.dsp.levels import FLOOR_DBFS, as_float, frame_powers, power_to_dbfs
from pivoicectl.errors import UserError

DEFAULT_FLOOR_DBFS = -90.0
"""Quietest canceller output we trust as a measurement, just above 16-bit quantization
noise (-101 dBFS RMS, -96 with dither): an output of exact zeros then yields "ERLE at
least mic level + 90 dB", not the +200 dB a -inf level would suggest."""

_CAPPED_MARGIN_DB = 3.0  # output within 3 dB of the floor is at least half floor power
_TALKER_TAIL_MS = 200.0  # near-end reverberation keeps the mic busy after the talker stops


@dataclass(frozen=True)
class ErlEstimate:
    """Echo return loss of an aligned reference/mic pair.

    `erl_db` is the reported figure and is power-based: reference level minus echo
    level, where the echo level is the mic level minus the mic's own noise when that is
    known. It counts everything the canceller has to remove: direct sound, room
    reverberation and speaker distortion. `direct_erl_db` comes from the least-squares
    gain of the aligned reference in the mic; uncorrelated noise or a near-end talker
    cannot bias it, but it sees only the direct path, so in a reverberant room it reads
    high. A large gap between the two therefore says "lots of reverb or distortion".
    """

    erl_db: float
    direct_erl_db: float
    delay_ms: float
    noise_corrected: bool


@dataclass(frozen=True)
class ErleEstimate:
    """Echo return loss enhancement: mic level minus canceller-output level.

    When the output is below, or less than 3 dB above, the measurement floor (digital
    silence, or the output's own noise), the true residual echo is unmeasurable; `erle_db` is then
    computed against the floor, i.e. it is a lower bound, and `capped` is True.
    """

    erle_db: float
    capped: bool
    mic_dbfs: float
    output_dbfs: float
    floor_dbfs: float


@dataclass(frozen=True)
class EchoMetrics:
    """What `measure` reports; `dataclasses.asdict` of it is valid JSON input.

    `convergence_s` is None when the output never stayed converged to the end, and
    `double_talk_retention_db` is None without a known near-end talker.
    """

    erl_db: float
    erle_db: float
    erle_capped: bool
    echo_delay_ms: float
    convergence_s: float | None
    double_talk_retention_db: float | None


def _mono(signal: np.ndarray, name: str) -> np.ndarray:
    x = as_float(signal)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (mono), got shape {x.shape}")
    return x


def _ls_gain(target: np.ndarray, source: np.ndarray) -> float | None:
    """g minimising |target - g*source|^2; anything uncorrelated with `source` drops out."""
    energy = float(np.dot(source, source))
    if energy <= 0.0:
        return None
    return float(np.dot(target, source)) / energy


def _gain_db(gain: float) -> float:
    return 20.0 * math.log10(max(abs(gain), 1e-6))


def erl_db(
    reference: np.ndarray,
    mic: np.ndarray,
    rate: int,
    *,
    delay_samples: float | None = None,
    mic_noise_dbfs: float | None = None,
    max_delay_ms: float = 500.0,
) -> ErlEstimate:
    """ERL over a far-end-only stretch (no near-end talker in `mic`).

    The delay is estimated with GCC-PHAT unless given (pass 0.0 for signals that are
    already aligned). The noise correction subtracts `mic_noise_dbfs` (the mic's level
    with the speaker silent) from the mic power, but only when the mic is at least 3 dB
    above it; closer than that the difference is mostly estimation error.
    """
    ref = _mono(reference, "reference")
    sig = _mono(mic, "mic")
    if delay_samples is None:
        delay_samples = estimate_delay(ref, sig, rate, max_delay_ms).delay_samples
    ref_al, mic_al = align(ref, sig, delay_samples)
    if ref_al.size == 0:
        raise ValueError("reference and mic do not overlap at this delay")
    ref_power = float(np.dot(ref_al, ref_al)) / ref_al.size
    echo_power = float(np.dot(mic_al, mic_al)) / mic_al.size
    corrected = False
    if mic_noise_dbfs is not None:
        noise_power = 10.0 ** (mic_noise_dbfs / 10.0)
        if echo_power > 2.0 * noise_power:
            echo_power -= noise_power
            corrected = True
    gain = _ls_gain(mic_al, ref_al)
    return ErlEstimate(
        erl_db=float(power_to_dbfs(ref_power) - power_to_dbfs(echo_power)),
        direct_erl_db=-_gain_db(gain) if gain is not None else -FLOOR_DBFS,
        delay_ms=1000.0 * float(delay_samples) / rate,
        noise_corrected=corrected,
    )


def erle_db(
    mic: np.ndarray,
    output: np.ndarray,
    floor_dbfs: float = DEFAULT_FLOOR_DBFS,
    *,
    noise_dbfs: float | None = None,
) -> ErleEstimate:
    """ERLE over the same (far-end-only, converged) stretch of mic and output.

    The floor is the higher of `floor_dbfs` and `noise_dbfs` (the output's level when
    nobody talks): once the canceller has pushed the echo into its own noise, the
    output level no longer tells how much echo is left, only that it is at most that
    much, so the result is a lower bound and marked capped.
    """
    sig = _mono(mic, "mic")
    out = _mono(output, "output")
    n = min(sig.size, out.size)
    if n == 0:
        raise ValueError("mic and output must not be empty")
    mic_level = float(power_to_dbfs(np.dot(sig[:n], sig[:n]) / n))
    out_level = float(power_to_dbfs(np.dot(out[:n], out[:n]) / n))
    floor = floor_dbfs if noise_dbfs is None else max(floor_dbfs, noise_dbfs)
    capped = out_level < floor + _CAPPED_MARGIN_DB
    return ErleEstimate(
        erle_db=mic_level - max(out_level, floor),
        capped=capped,
        mic_dbfs=mic_level,
        output_dbfs=out_level,
        floor_dbfs=floor,
    )


def _block_mask(sample_mask: np.ndarray, block_len: int, n_blocks: int) -> np.ndarray:
    """Blocks whose samples are mostly True."""
    m = np.asarray(sample_mask, dtype=np.float64)[: n_blocks * block_len]
    m = np.pad(m, (0, n_blocks * block_len - m.size))
    return m.reshape(n_blocks, block_len).mean(axis=1) >= 0.5


def _sample_mask(block_mask: np.ndarray, block_len: int, n_samples: int) -> np.ndarray:
    m = np.repeat(block_mask, block_len)[:n_samples]
    return np.pad(m, (0, n_samples - m.size))


def _convergence_blocks(
    attenuation_db: np.ndarray, active: np.ndarray, threshold_db: float, block_s: float
) -> float | None:
    bad = active & (attenuation_db < threshold_db)
    active_idx = np.flatnonzero(active)
    if active_idx.size == 0:
        return None
    bad_idx = np.flatnonzero(bad)
    if bad_idx.size == 0:
        return 0.0
    if bad_idx[-1] == active_idx[-1]:
        return None  # still not converged at the last block that could show it
    return float((bad_idx[-1] + 1) * block_s)


def convergence_s(
    mic: np.ndarray,
    output: np.ndarray,
    rate: int,
    threshold_db: float = 10.0,
    block_ms: float = 50.0,
    *,
    active: np.ndarray | None = None,
) -> float | None:
    """Seconds until the output stays `threshold_db` below the mic for good.

    Only blocks with echo to cancel count: by default those within 30 dB of the mic's
    loud level (in a pause both signals are room noise and no canceller can show
    anything), or those marked in `active`, a per-sample boolean mask that should also
    leave out double talk. Returns None when the last such block is still above the
    threshold. 10 dB marks where cancellation becomes useful, not where it peaks.
    """
    sig = _mono(mic, "mic")
    out = _mono(output, "output")
    block = max(1, round(rate * block_ms / 1000.0))
    n = min(sig.size, out.size) // block
    if n == 0:
        return None
    mic_db = power_to_dbfs(frame_powers(sig[: n * block], block))
    out_db = power_to_dbfs(frame_powers(out[: n * block], block))
    if active is None:
        blocks = mic_db >= np.percentile(mic_db, 95) - 30.0
    else:
        blocks = _block_mask(active, block, n)
    return _convergence_blocks(mic_db - out_db, blocks, threshold_db, block / rate)


def double_talk_retention_db(
    talker_clean: np.ndarray,
    output: np.ndarray,
    rate: int,
    *,
    mic: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    max_delay_ms: float = 500.0,
) -> float | None:
    """How much of a known near-end talker survives the canceller, in dB (0 = all).

    Least-squares gain of the clean talker, delay-matched with GCC-PHAT, within the
    output: residual echo is uncorrelated with the talker, so it adds nothing to the
    projection however loud it is, where a level comparison would count it as talker.
    With `mic`, the result is relative to the talker's gain in the raw mic, so the room's
    own loss on the talker does not count against the canceller (`mic` and `output`
    must share one time base and length). `mask` (per output sample, True where to
    measure, e.g. while the far end plays) restricts the fit.
    Returns None when the talker has no energy where the mask allows, or (with `mic`)
    cannot be found in either signal.
    """
    talker = _mono(talker_clean, "talker_clean")
    out = _mono(output, "output")
    for name, other in (("mask", mask), ("mic", mic)):
        if other is not None and len(other) != out.size:
            raise ValueError(f"{name} must have one entry per output sample")
    in_out = estimate_delay(talker, out, rate, max_delay_ms)
    if mic is None:
        g = _masked_gain(talker, out, in_out.delay_samples, mask)
        return None if g is None else _gain_db(g)
    sig = _mono(mic, "mic")
    in_mic = estimate_delay(talker, sig, rate, max_delay_ms)
    # Mic and output share a time base, so a talker found in one is where to look in
    # the other: in the output when the canceller removed it (retention then reads very
    # low, as it should), in the mic when loud echo hides it there.
    if not in_out.reliable and not in_mic.reliable:
        return None
    out_delay = in_out.delay_samples if in_out.reliable else in_mic.delay_samples
    mic_delay = in_mic.delay_samples if in_mic.reliable else in_out.delay_samples
    g_mic = _masked_gain(talker, sig, mic_delay, mask)
    g_out = _masked_gain(talker, out, out_delay, mask)
    if g_mic is None or g_out is None or g_mic == 0.0:
        return None
    return _gain_db(g_out) - _gain_db(g_mic)


def _masked_gain(
    talker: np.ndarray, signal: np.ndarray, delay: float, mask: np.ndarray | None
) -> float | None:
    t_al, s_al = align(talker, signal, delay)
    if mask is not None:
        m_al = align(np.zeros(talker.size), np.asarray(mask, np.float64), delay, False)[1]
        keep = m_al > 0.5
        t_al, s_al = t_al[keep], s_al[keep]
    return _ls_gain(s_al, t_al)


def impulse_response(
    reference: np.ndarray,
    mic: np.ndarray,
    rate: int,
    length_ms: float = 200.0,
    regularization: float = 1e-3,
) -> np.ndarray:
    """Echo path impulse response (first `length_ms`, delay included), for plotting.

    Regularized deconvolution over the whole recording, H = Y X* / (|X|^2 + eps), with
    eps = `regularization` times the mean reference power: without it the frequencies a
    speech or music reference barely contains would divide noise by almost zero and
    bury the plot in ringing. The recording stops before the echo of the last reference
    samples has arrived, which would leave a ~5 % error on a 2 s recording; a second pass
    appends the echo the first estimate predicts for that missing stretch and
    deconvolves again, cutting the error about fourfold.
    """
    ref = _mono(reference, "reference")
    sig = _mono(mic, "mic")
    length = max(1, round(rate * length_ms / 1000.0))
    full = ref.size + length
    n = next_fast_len(max(full, sig.size))
    spec_ref = np.fft.rfft(ref, n)
    power = spec_ref.real**2 + spec_ref.imag**2
    eps = regularization * float(power.mean())
    if eps <= 0.0:
        return np.zeros(length)
    inverse = np.conj(spec_ref) / (power + eps)
    h = np.fft.irfft(np.fft.rfft(sig, n) * inverse, n)[:length]
    if sig.size < full:
        predicted = np.fft.irfft(spec_ref * np.fft.rfft(h, n), n)
        completed = np.concatenate([sig, predicted[sig.size : full]])
        h = np.fft.irfft(np.fft.rfft(completed, n) * inverse, n)[:length]
    return h


def compute_echo_metrics(
    reference: np.ndarray,
    mic: np.ndarray,
    output: np.ndarray,
    rate: int,
    talker: np.ndarray | None = None,
    *,
    max_delay_ms: float = 500.0,
    block_ms: float = 50.0,
    active_range_db: float = 30.0,
    convergence_threshold_db: float = 10.0,
    floor_dbfs: float = DEFAULT_FLOOR_DBFS,
) -> EchoMetrics:
    """All echo metrics of one recording session, each over the stretches it is defined on.

    `mic` and `output` are captured together (same clock, same start); `reference` is
    what was played, `talker` (optional) the clean near-end speech played into the room.
    Signals are cut into `block_ms` blocks and each block is classified:

    - far-end active: the delay-matched reference is within `active_range_db` of its
      loud level; near-end active: likewise for the delay-matched talker, widened by a
      block before and 200 ms of room tail after;
    - far-end-only (active far, no near) blocks give ERL and convergence;
    - the far-end-only blocks after convergence (steady state) give ERLE; without
      convergence, those in the second half;
    - idle blocks (neither, nor far-end tail) give the noise levels of mic and output
      used to correct ERL and to floor ERLE;
    - retention is fitted over far-end-active blocks after convergence.
    """
    ref = _mono(reference, "reference")
    sig = _mono(mic, "mic")
    out = _mono(output, "output")
    n_samples = min(sig.size, out.size)
    sig, out = sig[:n_samples], out[:n_samples]
    block = max(1, round(rate * block_ms / 1000.0))
    n_blocks = n_samples // block
    if n_blocks < 4:
        raise UserError(
            f"recording too short to measure ({n_samples / rate:.2f} s)",
            "record at least a few seconds of far-end audio",
        )
    if not np.any(ref):
        raise UserError("the reference signal is silent", "play a test signal while recording")

    delay = estimate_delay(ref, sig, rate, max_delay_ms)
    if not delay.reliable:
        raise UserError(
            f"no echo of the reference found in the mic within {max_delay_ms:g} ms",
            "check that the speaker plays and the mic records, and raise the volume",
        )
    ref_m = _shift_to(ref, delay.delay_samples, n_samples)
    ref_db = _block_levels(ref_m, block, n_blocks)
    mic_db = _block_levels(sig, block, n_blocks)
    out_db = _block_levels(out, block, n_blocks)

    far = _loud_blocks(ref_db, active_range_db)
    tail_blocks = math.ceil(_TALKER_TAIL_MS / block_ms)
    near = np.zeros(n_blocks, dtype=bool)
    if talker is not None:
        talk = _mono(talker, "talker")
        talk_delay = estimate_delay(talk, sig, rate, max_delay_ms).delay_samples
        talk_db = _block_levels(_shift_to(talk, talk_delay, n_samples), block, n_blocks)
        near = _widen(_loud_blocks(talk_db, active_range_db), 1, tail_blocks)
    far_only = far & ~near
    idle = ~_widen(far, 0, tail_blocks) & ~near
    if not np.any(far_only):
        raise UserError(
            "no stretch with only the far end playing",
            "leave gaps in the near-end talk so the echo can be measured alone",
        )

    mic_noise = _mean_level(mic_db, idle)
    out_noise = _mean_level(out_db, idle)
    block_s = block / rate
    conv = _convergence_blocks(mic_db - out_db, far_only, convergence_threshold_db, block_s)

    start_block = math.ceil(conv / block_s) if conv is not None else n_blocks // 2
    after = np.arange(n_blocks) >= start_block
    steady = far_only & after
    if not np.any(steady):
        steady = far_only

    erl = erl_db(
        _select(ref_m, far_only, block),
        _select(sig, far_only, block),
        rate,
        delay_samples=0.0,
        mic_noise_dbfs=mic_noise,
    )
    erle = erle_db(
        _select(sig, steady, block),
        _select(out, steady, block),
        floor_dbfs,
        noise_dbfs=out_noise,
    )
    retention = None
    if talker is not None:
        window = far & after if np.any(far & after) else far
        retention = double_talk_retention_db(
            talker,
            out,
            rate,
            mic=sig,
            mask=_sample_mask(window, block, n_samples),
            max_delay_ms=max_delay_ms,
        )
    return EchoMetrics(
        erl_db=float(erl.erl_db),
        erle_db=float(erle.erle_db),
        erle_capped=bool(erle.capped),
        echo_delay_ms=float(delay.delay_ms),
        convergence_s=None if conv is None else float(conv),
        double_talk_retention_db=None if retention is None else float(retention),
    )


def _shift_to(signal: np.ndarray, delay_samples: float, n_samples: int) -> np.ndarray:
    """`signal` delayed by whole samples into the mic's time base, `n_samples` long."""
    k = round(delay_samples)
    shifted = np.zeros(n_samples)
    if k >= 0:
        part = signal[: max(0, n_samples - k)]
        shifted[k : k + part.size] = part
    else:
        part = signal[-k : -k + n_samples]
        shifted[: part.size] = part
    return shifted


def _block_levels(signal: np.ndarray, block: int, n_blocks: int) -> np.ndarray:
    return power_to_dbfs(frame_powers(signal[: n_blocks * block], block))


def _loud_blocks(levels_db: np.ndarray, range_db: float) -> np.ndarray:
    top = float(np.percentile(levels_db, 95))
    return (levels_db >= top - range_db) & (levels_db > FLOOR_DBFS)


def _widen(mask: np.ndarray, before: int, after: int) -> np.ndarray:
    """Also mark `before` blocks ahead of and `after` blocks behind each True block."""
    out = mask.copy()
    for s in range(1, before + 1):
        out[:-s] |= mask[s:]
    for s in range(1, after + 1):
        out[s:] |= mask[:-s]
    return out


def _mean_level(levels_db: np.ndarray, blocks: np.ndarray) -> float | None:
    """Power-average level of the chosen blocks (None if there are fewer than two)."""
    if np.count_nonzero(blocks) < 2:
        return None
    return float(power_to_dbfs(np.mean(10.0 ** (levels_db[blocks] / 10.0))))


def _select(signal: np.ndarray, blocks: np.ndarray, block: int) -> np.ndarray:
    n_blocks = blocks.size
    return signal[: n_blocks * block].reshape(n_blocks, block)[blocks].ravel()
