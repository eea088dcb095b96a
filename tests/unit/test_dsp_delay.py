"""GCC-PHAT echo delay: fractional delays, reverb, bounded search, alignment."""

from __future__ import annotations

import numpy as np
import pytest

from pivoicectl.dsp.delay import (
    align,
    delay_signal,
    estimate_delay,
    gcc_phat,
    next_fast_len,
)

RATE = 48000
DELAY_MS = 17.3
DELAY = DELAY_MS * RATE / 1000  # 830.4 samples


def white(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(RATE * seconds)) * 0.1


def pink(seconds: float, seed: int = 0) -> np.ndarray:
    """1/f power from 30 Hz up, about -20 dBFS."""
    n = int(RATE * seconds)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec[f < 30] = 0
    x = np.fft.irfft(spec / np.sqrt(np.maximum(f, 30)), n)
    return x / np.std(x) * 0.1


def frac_delay(x: np.ndarray, delay: float, taps: int = 255) -> np.ndarray:
    """Blackman-windowed sinc delay: built independently of the FFT code under test."""
    k = int(np.floor(delay))
    n = np.arange(taps) - taps // 2
    h = np.sinc(n - (delay - k)) * np.blackman(taps)
    y = np.convolve(x, h)[taps // 2 : taps // 2 + x.size]
    out = np.zeros_like(x)
    out[k:] = y[: x.size - k]
    return out


def reverb_tail(seed: int = 9, rel_db: float = -10.0) -> np.ndarray:
    """50 ms of exponentially decaying noise (10 ms time constant), `rel_db` re 0.25**2."""
    t = np.arange(int(0.05 * RATE)) / RATE
    tail = np.random.default_rng(seed).standard_normal(t.size) * np.exp(-t / 0.01)
    return tail * np.sqrt(0.25**2 * 10 ** (rel_db / 10) / np.sum(tail**2))


def add_noise(x: np.ndarray, level_dbfs: float, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return x + rng.standard_normal(x.size) * 10 ** (level_dbfs / 20)


@pytest.mark.parametrize("source", [white, pink])
def test_fractional_echo_delay_is_found_to_a_fraction_of_a_sample(source):
    ref = source(3.0)
    mic = add_noise(0.25 * frac_delay(ref, DELAY), -70.0)
    est = estimate_delay(ref, mic, RATE)
    assert est.delay_ms == pytest.approx(DELAY_MS, abs=0.5)  # acceptance criterion
    assert est.delay_samples == pytest.approx(DELAY, abs=0.05)  # what it really does
    assert est.reliable
    assert est.peak > 0.9
    assert not est.inverted


@pytest.mark.parametrize("frac", [0.0, 0.25, 0.5, 0.75])
def test_sub_sample_part_is_not_biased_towards_whole_samples(frac):
    ref = white(1.0, seed=3)
    est = estimate_delay(ref, frac_delay(ref, 200 + frac), RATE)
    assert est.delay_samples == pytest.approx(200 + frac, abs=0.02)


def test_delay_with_a_reverb_tail_is_the_direct_path():
    ref = pink(3.0, seed=1)
    direct = 0.25 * frac_delay(ref, DELAY)
    tail = np.convolve(frac_delay(ref, DELAY + 24), reverb_tail(rel_db=-3.0))[: ref.size]
    est = estimate_delay(ref, add_noise(direct + tail, -70.0), RATE)
    assert est.delay_ms == pytest.approx(DELAY_MS, abs=0.5)
    assert est.delay_samples == pytest.approx(DELAY, abs=0.2)
    assert est.reliable


def test_search_is_bounded():
    ref = white(3.0, seed=2)
    late = 0.9 * frac_delay(ref, 0.625 * RATE)  # louder match 625 ms late
    mic = 0.25 * frac_delay(ref, DELAY) + late
    assert estimate_delay(ref, mic, RATE, max_delay_ms=500).delay_ms == pytest.approx(
        DELAY_MS, abs=0.05
    )
    assert estimate_delay(ref, mic, RATE, max_delay_ms=700).delay_ms == pytest.approx(
        625.0, abs=0.05
    )


def test_negative_delay_only_when_asked_for():
    ref = white(2.0, seed=4)
    early = np.concatenate([ref[480:], np.zeros(480)])  # "mic" 10 ms ahead
    assert estimate_delay(ref, early, RATE, min_delay_ms=-50).delay_ms == pytest.approx(
        -10.0, abs=0.01
    )
    assert not estimate_delay(ref, early, RATE).reliable


def test_polarity_and_garbage():
    ref = white(2.0, seed=5)
    inv = estimate_delay(ref, -0.3 * frac_delay(ref, 100.3), RATE)
    assert inv.inverted
    assert inv.delay_samples == pytest.approx(100.3, abs=0.05)
    unrelated = estimate_delay(ref, white(2.0, seed=6), RATE)
    assert not unrelated.reliable
    assert unrelated.peak < 0.05
    silent = estimate_delay(np.zeros(RATE), white(1.0), RATE)
    assert silent.peak == 0.0
    assert not silent.reliable


def test_gcc_phat_window_and_peak():
    ref = white(1.0, seed=8)
    lags, cc = gcc_phat(ref, frac_delay(ref, 40.0), -10, 100)
    assert lags[0] == -10
    assert lags[-1] == 100
    assert lags[np.argmax(cc)] == 40
    assert cc.max() == pytest.approx(1.0, abs=0.02)


def test_delay_signal_whole_and_fractional():
    x = white(0.2, seed=10)
    np.testing.assert_allclose(
        delay_signal(x, 5), np.concatenate([np.zeros(5), x[:-5]]), atol=1e-12
    )
    np.testing.assert_allclose(delay_signal(x, -5)[:-5], x[5:], atol=1e-12)
    t = np.arange(4800)
    slow = np.sin(2 * np.pi * 0.01 * t)
    shifted = delay_signal(slow, 2.3)
    expected = np.sin(2 * np.pi * 0.01 * (t - 2.3))
    np.testing.assert_allclose(shifted[500:-500], expected[500:-500], atol=1e-3)


def test_align_makes_equal_length_matching_arrays():
    ref = white(2.0, seed=11)
    mic = 0.25 * frac_delay(ref, DELAY)
    r, m = align(ref, mic, DELAY)
    assert r.size == m.size == ref.size - 830
    gain = np.dot(m, r) / np.dot(r, r)
    assert gain == pytest.approx(0.25, rel=0.01)
    r_int, m_int = align(ref, mic, DELAY, fractional=False)
    loss = np.dot(m_int, r_int) / np.dot(r_int, r_int)
    assert loss < 0.2  # 0.4 sample off costs white noise sinc(0.4) = -2.4 dB
    r_neg, m_neg = align(mic, ref, -DELAY)
    assert r_neg.size == m_neg.size
    assert np.dot(m_neg, r_neg) / np.dot(r_neg, r_neg) == pytest.approx(4.0, rel=0.02)


def test_next_fast_len():
    assert [next_fast_len(n) for n in (1, 7, 17, 97, 1001)] == [1, 8, 18, 100, 1024]
    n = next_fast_len(480_001)
    assert n >= 480_001
    m = n
    for p in (2, 3, 5):
        while m % p == 0:
            m //= p
    assert m == 1
