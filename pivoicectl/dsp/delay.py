"""How late the echo arrives: GCC-PHAT delay estimation and alignment.

Why GCC-PHAT rather than plain cross-correlation: speech and music references are
dominated by their low frequencies, whose autocorrelation is broad, so a plain
correlation peak is wide and easily pulled sideways by room reverberation. The PHAT
weighting keeps only the phase of the cross-spectrum, which whitens both signals and
turns a pure delay into a single spike of height 1. Bins where the reference carries no
energy at all (e.g. above 8 kHz in 16 kHz speech played at 48 kHz) are left out instead
of whitened, because their phase is pure noise.

The correlation is computed once over the whole recording with one FFT pair; the FFT
is only as long as the bounded lag window requires, not twice the signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pivoicectl.dsp.levels import as_float

RELIABLE_PEAK_TO_NOISE_DB = 20.0
"""Below this the peak may be the largest of many noise bumps (about 13 dB is typical
for the maximum of pure noise over a 500 ms window at 48 kHz)."""

_MASK_BELOW_MEAN_POWER = 1e-8  # -80 dB re the mean reference power spectrum


@dataclass(frozen=True)
class DelayEstimate:
    """Where `mic` best matches `reference`: mic[t] ~ g * reference[t - delay_samples]."""

    delay_samples: float
    delay_ms: float
    peak: float
    """Height of the PHAT correlation peak: 1.0 for a clean pure delay, lower with noise,
    reverberation or uncorrelated sound on top; near 0 when nothing matched."""
    peak_to_noise_db: float
    """Peak over the RMS of the correlation elsewhere in the search window."""
    inverted: bool
    """True when the best match has negative polarity (e.g. a speaker wired backwards)."""

    @property
    def reliable(self) -> bool:
        return self.peak_to_noise_db >= RELIABLE_PEAK_TO_NOISE_DB


def next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: FFT sizes numpy's pocketfft handles fastest."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = -(-n // p35)
            cand = p35 * (1 << (q - 1).bit_length())
            best = min(best, cand)
            p35 *= 3
        p5 *= 5
    return best


def _mono(signal: np.ndarray, name: str) -> np.ndarray:
    x = as_float(signal)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (mono), got shape {x.shape}")
    return x


def _phat_spectrum(
    reference: np.ndarray, mic: np.ndarray, min_lag: int, max_lag: int
) -> tuple[np.ndarray, int]:
    """PHAT-weighted cross-spectrum (rfft bins) and the FFT length it belongs to."""
    ref = _mono(reference, "reference")
    sig = _mono(mic, "mic")
    if max_lag < min_lag:
        raise ValueError("max_lag must be >= min_lag")
    # No circular wrap-around for any lag in the window: ref[t] meets mic[t + lag] only
    # while t + lag stays inside [0, n).
    n = next_fast_len(max(ref.size + max(max_lag, 0), sig.size + max(-min_lag, 0)) + 1)
    spec_ref = np.fft.rfft(ref, n)
    cross = np.fft.rfft(sig, n) * np.conj(spec_ref)
    ref_power = spec_ref.real**2 + spec_ref.imag**2
    mag = np.abs(cross)
    usable = (ref_power > _MASK_BELOW_MEAN_POWER * ref_power.mean()) & (mag > 0)
    weighted = np.zeros_like(cross)
    np.divide(cross, mag, out=weighted, where=usable)
    return weighted, n


def gcc_phat(
    reference: np.ndarray, mic: np.ndarray, min_lag: int, max_lag: int
) -> tuple[np.ndarray, np.ndarray]:
    """PHAT-weighted cross-correlation for lags min_lag..max_lag (inclusive).

    Returns (lags, correlation); a positive lag means the mic is late. Useful on its own
    for plotting the echo-delay peak.
    """
    weighted, n = _phat_spectrum(reference, mic, min_lag, max_lag)
    cc = np.fft.irfft(weighted, n)
    lags = np.arange(min_lag, max_lag + 1)
    return lags, cc[lags % n]


def _polish_peak(weighted: np.ndarray, n: int, lag: float, steps: int = 2) -> tuple[float, float]:
    """Newton steps towards the exact extremum of the band-limited correlation.

    The whitened peak is sinc-shaped, and a parabola through three samples of a sinc
    lands up to ~0.1 sample short of its top (e.g. 0.29 for a true offset of 0.40).
    The correlation between the samples is known exactly from the spectrum, so its
    derivatives are too; two Newton steps from the parabola's answer settle it.
    Returns (lag, correlation value there).
    """
    k = np.arange(weighted.size, dtype=np.float64)
    omega = 2.0 * np.pi * k / n
    # Each interior rfft bin stands for itself and its mirror image.
    twice = np.full(weighted.size, 2.0)
    twice[0] = 1.0
    if n % 2 == 0:
        twice[-1] = 1.0
    w = weighted * twice / n
    start = lag
    value = 0.0
    for step in range(steps + 1):
        rot = w * np.exp(1j * omega * lag)
        value = float(np.sum(rot.real))
        if step == steps:
            break
        slope = float(-np.dot(rot.imag, omega))
        curvature = float(-np.dot(rot.real, omega * omega))
        if curvature == 0.0:
            break
        lag = float(np.clip(lag - slope / curvature, start - 0.5, start + 0.5))
    return lag, value


def estimate_delay(
    reference: np.ndarray,
    mic: np.ndarray,
    rate: int,
    max_delay_ms: float = 500.0,
    min_delay_ms: float = 0.0,
) -> DelayEstimate:
    """Echo delay of `mic` behind `reference`, to a fraction of a sample.

    The search is bounded to [min_delay_ms, max_delay_ms]: an echo cannot precede its
    source, and a bounded window keeps a strong periodicity (music, a held vowel) from
    matching a whole period away. Pass a negative `min_delay_ms` to diagnose a
    reference that was captured late. The sub-sample part comes from a parabola through
    the peak and its two neighbours, polished with Newton steps (see `_polish_peak`).
    """
    lo = math.floor(min_delay_ms * rate / 1000.0)
    hi = math.ceil(max_delay_ms * rate / 1000.0)
    # One extra lag each side so the parabola has neighbours at the window edges.
    weighted, n = _phat_spectrum(reference, mic, lo - 1, hi + 1)
    lags = np.arange(lo - 1, hi + 2)
    cc = np.fft.irfft(weighted, n)[lags % n]
    window = cc[1:-1]
    i = int(np.argmax(np.abs(window))) + 1
    sign = 1.0 if cc[i] >= 0 else -1.0
    y_m, y_0, y_p = sign * cc[i - 1], sign * cc[i], sign * cc[i + 1]
    curvature = y_m - 2.0 * y_0 + y_p
    if y_0 <= 0.0:  # nothing correlated at all (e.g. a silent reference)
        return DelayEstimate(float(lags[i]), 1000.0 * float(lags[i]) / rate, 0.0, 0.0, False)
    offset = 0.0
    if curvature < 0:
        offset = float(np.clip(0.5 * (y_m - y_p) / curvature, -0.5, 0.5))
    delay, value = _polish_peak(weighted, n, float(lags[i]) + offset)
    peak = sign * value

    guard = max(2, round(rate / 1000.0))
    others = np.abs(window)[np.abs(lags[1:-1] - lags[i]) > guard]
    noise = float(np.sqrt(np.mean(others**2))) if others.size else 0.0
    ratio_db = 20.0 * math.log10(max(peak, 1e-12) / max(noise, 1e-12))
    return DelayEstimate(
        delay_samples=delay,
        delay_ms=1000.0 * delay / rate,
        peak=max(peak, 0.0),
        peak_to_noise_db=ratio_db,
        inverted=sign < 0,
    )


def delay_signal(signal: np.ndarray, delay_samples: float) -> np.ndarray:
    """Delay by any real number of samples (band-limited, FFT phase ramp), same length.

    Negative delays advance the signal. Samples shifted in from outside are zeros; the
    FFT is padded beyond the shift so nothing wraps around from the other end.
    """
    x = _mono(signal, "signal")
    d = float(delay_samples)
    if x.size == 0 or d == 0.0:
        return x.copy()
    n = next_fast_len(x.size + math.ceil(abs(d)) + 64)
    spec = np.fft.rfft(x, n)
    spec *= np.exp(-2j * np.pi * d * np.arange(spec.size) / n)
    if n % 2 == 0:
        spec[-1] = spec[-1].real  # a real signal's Nyquist bin cannot carry a phase
    return np.fft.irfft(spec, n)[: x.size]


def align(
    reference: np.ndarray,
    mic: np.ndarray,
    delay_samples: float,
    fractional: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut both signals so that sample i of each refers to the same moment.

    `delay_samples` is how late the mic is (as from `estimate_delay`). The mic is
    shifted by whole samples only; the fractional rest is applied to the reference,
    because a least-squares gain between signals half a sample apart loses up to 4 dB on
    broadband sound. Returns equal-length float64 arrays (possibly empty).
    """
    ref = _mono(reference, "reference")
    sig = _mono(mic, "mic")
    k = round(delay_samples)
    frac = float(delay_samples) - k
    if fractional and abs(frac) > 1e-6:
        ref = delay_signal(ref, frac)
    if k >= 0:
        length = max(0, min(ref.size, sig.size - k))
        return ref[:length], sig[k : k + length]
    length = max(0, min(ref.size + k, sig.size))
    return ref[-k : -k + length], sig[:length]
