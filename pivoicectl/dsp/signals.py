"""Test signals for `measure` and `parrot`, and resampling. Pure numpy, no I/O.

Why three kinds: white noise excites every frequency evenly, so the power-based ERL
equals the echo path's energy gain and the canceller converges fastest; a sweep shows
the same path one frequency at a time (robust to a noisy room); speech is what the
canceller meets in real use, with pauses during which it must not diverge. Speech is
made by espeak-ng when installed (an edge, in `pivoicectl.system.recorder`); `speech_like`
here is the fallback: a deterministic voiced signal with formants, pitch movement and
syllable rhythm, close enough in spectrum and envelope for echo measurements.
"""

from __future__ import annotations

import math

import numpy as np

SIGNAL_KINDS = ("noise", "sweep", "speech")
_FADE_S = 0.01


def scale_to_dbfs(signal: np.ndarray, level_dbfs: float) -> np.ndarray:
    """Scale to an RMS of `level_dbfs` over the active (non-silent) part, clipped to +-1.

    Active part = samples within 40 dB of the peak envelope, so the pauses of speech do
    not make the talking parts louder than asked.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.size == 0 or not np.any(x):
        return x.copy()
    active = np.abs(x) > np.max(np.abs(x)) * 1e-2
    power = float(np.mean(x[active] ** 2))
    gain = 10.0 ** (level_dbfs / 20.0) / math.sqrt(power)
    return np.clip(x * gain, -1.0, 1.0)


def _fade(x: np.ndarray, rate: int) -> np.ndarray:
    """Short raised-cosine fades: a hard start is a click that rings in every filter."""
    n = min(round(_FADE_S * rate), x.size // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def white_noise(duration_s: float, rate: int, level_dbfs: float, seed: int = 7) -> np.ndarray:
    """Gaussian white noise at `level_dbfs` RMS (reproducible: seeded)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(max(1, round(duration_s * rate)))
    return _fade(scale_to_dbfs(x, level_dbfs), rate)


def log_sweep(
    duration_s: float,
    rate: int,
    level_dbfs: float,
    f_start_hz: float = 100.0,
    f_stop_hz: float = 8000.0,
) -> np.ndarray:
    """Exponential sine sweep from `f_start_hz` to `f_stop_hz` (Farina)."""
    n = max(2, round(duration_s * rate))
    t = np.arange(n) / rate
    k = math.log(f_stop_hz / f_start_hz)
    phase = 2 * math.pi * f_start_hz * duration_s / k * (np.exp(t * k / duration_s) - 1.0)
    return _fade(scale_to_dbfs(np.sin(phase), level_dbfs), rate)


def speech_like(duration_s: float, rate: int, level_dbfs: float, seed: int = 11) -> np.ndarray:
    """Synthetic voiced speech: glottal pulses with gliding pitch, shaped by formants,
    gated into 150-350 ms syllables with short pauses and a longer one every few."""
    rng = np.random.default_rng(seed)
    n = max(1, round(duration_s * rate))
    t = np.arange(n) / rate
    f0 = 140.0 + 40.0 * np.sin(2 * math.pi * 0.7 * t) + 15.0 * np.sin(2 * math.pi * 3.1 * t)
    phase = np.cumsum(f0) / rate
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one unit impulse per pitch period
    source = pulses + 0.03 * rng.standard_normal(n)  # a little breath noise
    # Formants: a spectral envelope applied in one FFT (vowel-ish /a/ + /e/ blend).
    spec = np.fft.rfft(source)
    f = np.fft.rfftfreq(n, 1.0 / rate)
    envelope = np.zeros_like(f)
    for centre, width, gain in ((600, 120, 1.0), (1300, 150, 0.6), (2500, 250, 0.3)):
        envelope += gain * np.exp(-0.5 * ((f - centre) / width) ** 2)
    envelope += 0.05 / (1.0 + (f / 4000.0) ** 2)
    voiced = np.fft.irfft(spec * envelope, n)
    # Syllables: random lengths and gaps, a longer pause every 3-5 syllables.
    gate = np.zeros(n)
    pos = round(0.05 * rate)
    count = 0
    while pos < n:
        length = round(rng.uniform(0.15, 0.35) * rate)
        seg = np.sin(np.pi * np.arange(length) / length) ** 0.5
        end = min(n, pos + length)
        gate[pos:end] = seg[: end - pos]
        count += 1
        pause = rng.uniform(0.25, 0.45) if count % 4 == 0 else rng.uniform(0.03, 0.08)
        pos = end + round(pause * rate)
    return _fade(scale_to_dbfs(voiced * gate, level_dbfs), rate)


def make_signal(kind: str, duration_s: float, rate: int, level_dbfs: float) -> np.ndarray:
    """One of SIGNAL_KINDS, `duration_s` long; ValueError for an unknown kind."""
    if kind == "noise":
        return white_noise(duration_s, rate, level_dbfs)
    if kind == "sweep":
        return log_sweep(duration_s, rate, level_dbfs)
    if kind == "speech":
        return speech_like(duration_s, rate, level_dbfs)
    raise ValueError(f"unknown signal {kind!r}; one of {', '.join(SIGNAL_KINDS)}")


def fit_length(signal: np.ndarray, n_samples: int) -> np.ndarray:
    """Loop or cut `signal` to exactly `n_samples` (e.g. a short TTS clip to the duration)."""
    x = np.asarray(signal, dtype=np.float64)
    if x.size == 0:
        return np.zeros(n_samples)
    reps = -(-n_samples // x.size)
    return np.tile(x, reps)[:n_samples]


def resample(signal: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling by zero-padding or truncating the spectrum (one FFT pair).

    Good enough for test material and reference signals (espeak-ng writes 22050 Hz, the
    room runs at 48000 Hz); not a streaming resampler.
    """
    x = np.asarray(signal, dtype=np.float64)
    if rate_in == rate_out or x.size == 0:
        return x.copy()
    n_out = max(1, round(x.size * rate_out / rate_in))
    spec = np.fft.rfft(x)
    bins = n_out // 2 + 1
    out_spec = np.zeros(bins, dtype=complex)
    keep = min(bins, spec.size)
    out_spec[:keep] = spec[:keep]
    return np.fft.irfft(out_spec, n_out) * (n_out / x.size)
