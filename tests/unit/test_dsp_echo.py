"""Echo metrics on synthetic echo paths whose ERL, ERLE and retention are known."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from pivoicectl.dsp.echo import (
    EchoMetrics,
    compute_echo_metrics,
    convergence_s,
    double_talk_retention_db,
    erl_db,
    erle_db,
    impulse_response,
)
from pivoicectl.dsp.levels import dbfs
from pivoicectl.errors import UserError

RATE = 48000
DELAY_MS = 17.3
DELAY = DELAY_MS * RATE / 1000  # 830.4 samples
GAIN = 0.25
ERL_DIRECT = -20 * math.log10(GAIN)  # 12.04 dB


def white(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(rate * seconds)) * 0.1


def pink(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """1/f power from 30 Hz up, about -20 dBFS."""
    n = int(rate * seconds)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spec[f < 30] = 0
    x = np.fft.irfft(spec / np.sqrt(np.maximum(f, 30)), n)
    return x / np.std(x) * 0.1


def speechlike(seconds: float, seed: int = 1, rate: int = RATE) -> np.ndarray:
    """200-3500 Hz noise with a 4 Hz syllable rhythm, about -20 dBFS."""
    n = int(rate * seconds)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spec[(f < 200) | (f > 3500)] = 0
    x = np.fft.irfft(spec, n) * (0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * np.arange(n) / rate))
    return x / np.std(x) * 0.1


def frac_delay(x: np.ndarray, delay: float, taps: int = 255) -> np.ndarray:
    """Blackman-windowed sinc delay, independent of the FFT code under test."""
    k = int(np.floor(delay))
    n = np.arange(taps) - taps // 2
    h = np.sinc(n - (delay - k)) * np.blackman(taps)
    y = np.convolve(x, h)[taps // 2 : taps // 2 + x.size]
    out = np.zeros_like(x)
    out[k:] = y[: x.size - k]
    return out


def reverb_tail(rel_db: float, seed: int = 9) -> np.ndarray:
    """50 ms of exponentially decaying noise (10 ms time constant), `rel_db` re GAIN**2."""
    t = np.arange(int(0.05 * RATE)) / RATE
    tail = np.random.default_rng(seed).standard_normal(t.size) * np.exp(-t / 0.01)
    return tail * np.sqrt(GAIN**2 * 10 ** (rel_db / 10) / np.sum(tail**2))


def noise_like(x: np.ndarray, level_dbfs: float, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(x.size) * 10 ** (level_dbfs / 20)


def echo_of(ref: np.ndarray, tail_rel_db: float | None = None) -> np.ndarray:
    echo = GAIN * frac_delay(ref, DELAY)
    if tail_rel_db is not None:
        late = frac_delay(ref, DELAY + 24)  # tail starts 0.5 ms after the direct sound
        echo = echo + np.convolve(late, reverb_tail(tail_rel_db))[: ref.size]
    return echo


# ---------------------------------------------------------------- ERL


@pytest.mark.parametrize("source", [white, pink])
def test_erl_of_a_delayed_scaled_echo(source):
    ref = source(3.0)
    mic = echo_of(ref) + noise_like(ref, -75.0)
    est = erl_db(ref, mic, RATE)
    assert est.erl_db == pytest.approx(ERL_DIRECT, abs=0.5)  # acceptance: 12.04 dB
    assert est.direct_erl_db == pytest.approx(ERL_DIRECT, abs=0.5)
    assert est.erl_db == pytest.approx(ERL_DIRECT, abs=0.1)  # what it actually achieves
    assert est.delay_ms == pytest.approx(DELAY_MS, abs=0.5)


@pytest.mark.parametrize("source", [white, pink])
def test_erl_with_a_reverb_tail_counts_the_tail(source):
    # A tail only 3 dB under the direct sound: total echo is 1.76 dB louder than the
    # direct path alone, so reporting the direct-path ERL would miss by 1.76 dB.
    ref = source(3.0, seed=2)
    echo = echo_of(ref, tail_rel_db=-3.0)
    mic = echo + noise_like(ref, -75.0)
    true_erl = dbfs(ref) - dbfs(echo)
    assert true_erl < ERL_DIRECT - 1.0
    est = erl_db(ref, mic, RATE)
    assert est.erl_db == pytest.approx(true_erl, abs=0.5)
    assert est.delay_ms == pytest.approx(DELAY_MS, abs=0.5)
    if source is white:  # uncorrelated samples: direct and tail powers simply add,
        assert true_erl == pytest.approx(ERL_DIRECT - 1.76, abs=0.3)
        # and the LS gain of the aligned reference sees the direct path only.
        assert est.direct_erl_db == pytest.approx(ERL_DIRECT, abs=0.5)


def test_erl_noise_correction():
    ref = white(3.0, seed=3) * 0.1  # echo at -52 dBFS, room noise at -58 dBFS
    noise = noise_like(ref, -58.0)
    mic = echo_of(ref) + noise
    raw = erl_db(ref, mic, RATE)
    corrected = erl_db(ref, mic, RATE, mic_noise_dbfs=dbfs(noise))
    assert raw.erl_db == pytest.approx(ERL_DIRECT - 0.97, abs=0.2)  # noise counted as echo
    assert not raw.noise_corrected
    assert corrected.noise_corrected
    assert corrected.erl_db == pytest.approx(ERL_DIRECT, abs=0.3)
    assert corrected.direct_erl_db == pytest.approx(ERL_DIRECT, abs=0.3)


# ---------------------------------------------------------------- ERLE


def test_erle_of_a_known_residual():
    mic = echo_of(pink(2.0, seed=4)) + noise_like(np.zeros(2 * RATE), -80.0)
    output = mic * 10 ** (-35 / 20) + noise_like(mic, -85.0, seed=8)
    est = erle_db(mic, output)
    assert est.erle_db == pytest.approx(35.0, abs=1.0)
    assert not est.capped
    assert est.mic_dbfs - est.output_dbfs == pytest.approx(est.erle_db)


def test_erle_of_digital_silence_is_capped_at_the_floor():
    mic = echo_of(pink(2.0, seed=5))
    est = erle_db(mic, np.zeros_like(mic))
    assert est.capped
    assert est.output_dbfs == -120.0
    assert est.erle_db == pytest.approx(dbfs(mic) + 90.0)
    assert est.erle_db < 70.0  # not the absurd mic - (-120) = 90+ dB


def test_erle_down_in_the_output_noise_is_capped():
    mic = echo_of(pink(2.0, seed=6))
    out_noise = noise_like(mic, -70.0)
    est = erle_db(mic, out_noise + mic * 10 ** (-60 / 20), noise_dbfs=-70.0)
    assert est.capped
    assert est.floor_dbfs == -70.0
    assert est.erle_db == pytest.approx(dbfs(mic) + 70.0, abs=0.5)


# ---------------------------------------------------------------- convergence

CONV_RATE = 16000


def converging(seconds: float = 5.0, at_s: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    mic = pink(seconds, seed=10, rate=CONV_RATE) * GAIN
    t = np.arange(mic.size) / CONV_RATE
    return mic, mic * np.where(t < at_s, 1.0, 10 ** (-30 / 20))


def test_convergence_time_of_a_step():
    mic, out = converging()
    assert convergence_s(mic, out, CONV_RATE) == pytest.approx(1.5, abs=0.05)
    assert convergence_s(mic, mic, CONV_RATE) is None
    assert convergence_s(mic, np.zeros_like(mic), CONV_RATE) == 0.0


def test_convergence_ignores_pauses_but_not_relapses():
    mic, out = converging()
    paused_mic, paused_out = mic.copy(), out.copy()
    pause = slice(int(2.5 * CONV_RATE), int(3.0 * CONV_RATE))
    paused_mic[pause] = noise_like(paused_mic[pause], -90.0)
    paused_out[pause] = paused_mic[pause]  # nothing to cancel: 0 dB, must not count
    assert convergence_s(paused_mic, paused_out, CONV_RATE) == pytest.approx(1.5, abs=0.05)
    relapse = out.copy()
    relapse[int(3.2 * CONV_RATE) : int(3.4 * CONV_RATE)] *= 10 ** (24 / 20)  # 6 dB under
    assert convergence_s(mic, relapse, CONV_RATE) == pytest.approx(3.4, abs=0.05)
    active = np.ones(mic.size, dtype=bool)
    active[int(3.1 * CONV_RATE) : int(3.5 * CONV_RATE)] = False  # e.g. double talk
    assert convergence_s(mic, relapse, CONV_RATE, active=active) == pytest.approx(1.5, abs=0.05)


# ---------------------------------------------------------------- double talk


def double_talk(talker_gain: float, echo_over_talker_db: float = 6.0):
    talker = speechlike(3.0, seed=11)
    in_room = frac_delay(talker, 123.4)
    residual = pink(3.0, seed=12)
    residual *= 10 ** ((dbfs(in_room) + echo_over_talker_db - dbfs(residual)) / 20)
    return talker, in_room, residual, talker_gain * in_room + residual


def test_retention_is_0_db_when_the_talker_survives_under_louder_echo():
    talker, in_room, _, output = double_talk(1.0)
    assert dbfs(output) - dbfs(in_room) > 6.5  # a level comparison would say +7 dB
    assert double_talk_retention_db(talker, output, RATE) == pytest.approx(0.0, abs=0.3)


def test_retention_of_an_attenuated_talker():
    talker, _, _, output = double_talk(10 ** (-10 / 20))
    assert double_talk_retention_db(talker, output, RATE) == pytest.approx(-10.0, abs=0.3)
    talker, _, _, output = double_talk(10 ** (-10 / 20), echo_over_talker_db=16.0)
    assert double_talk_retention_db(talker, output, RATE) == pytest.approx(-10.0, abs=0.5)


def test_retention_relative_to_the_mic_and_within_a_mask():
    talker, in_room, residual, _ = double_talk(1.0)
    mic = 0.5 * in_room + 3 * residual  # the room loses 6 dB; echo is 21 dB over the talker
    output = 0.5 * in_room * 10 ** (-3 / 20) + residual
    got = double_talk_retention_db(talker, output, RATE, mic=mic)
    assert got == pytest.approx(-3.0, abs=0.3)
    half = np.arange(output.size) >= output.size // 2
    output_2 = np.where(half, 10 ** (-12 / 20), 1.0) * 0.5 * in_room + residual
    masked = double_talk_retention_db(talker, output_2, RATE, mic=mic, mask=half)
    assert masked == pytest.approx(-12.0, abs=0.5)
    assert double_talk_retention_db(np.zeros(RATE), output[:RATE], RATE) is None


def test_retention_of_a_removed_talker_is_very_low():
    talker, in_room, residual, _ = double_talk(1.0)
    got = double_talk_retention_db(talker, residual, RATE, mic=in_room + residual)
    assert got < -25.0


# ---------------------------------------------------------------- impulse response


def test_impulse_response_recovers_a_known_path():
    ref = white(2.0, seed=13)
    h = np.zeros(int(0.1 * RATE))
    h[830] = GAIN
    tail = reverb_tail(-6.0)
    h[854 : 854 + tail.size] += tail
    mic = np.convolve(ref, h)[: ref.size] + noise_like(ref, -80.0)
    est = impulse_response(ref, mic, RATE, length_ms=100.0)
    assert est.shape == (4800,)
    assert int(np.argmax(np.abs(est))) == 830
    assert est[830] == pytest.approx(GAIN, rel=0.03)
    assert np.linalg.norm(est - h) / np.linalg.norm(h) < 0.03


# ---------------------------------------------------------------- all together


def session(output_after_convergence: str = "residual"):
    """6 s: far end pink noise with a pause; a talker at 4.0-5.5 s; AEC converges at 1 s."""
    seconds = 6.0
    ref = pink(seconds, seed=20)
    t = np.arange(ref.size) / RATE
    ref[(t >= 2.5) & (t < 3.0)] = 0.0
    echo = echo_of(ref, tail_rel_db=-10.0)
    talker = speechlike(seconds, seed=21) * 0.5
    talker[(t < 4.0) | (t >= 5.5)] = 0.0
    talker_in_room = frac_delay(talker, 100.0)
    mic_noise = noise_like(ref, -90.0, seed=22)
    mic = echo + talker_in_room + mic_noise
    if output_after_convergence == "residual":
        after = echo * 10 ** (-35 / 20) + mic_noise + talker_in_room * 10 ** (-6 / 20)
    else:
        after = np.zeros_like(mic)
    output = np.where(t < 1.0, mic, after)
    return ref, echo, talker, mic, output


def test_compute_echo_metrics_end_to_end():
    ref, echo, talker, mic, output = session()
    m = compute_echo_metrics(ref, mic, output, RATE, talker=talker)
    assert isinstance(m, EchoMetrics)
    assert m.erl_db == pytest.approx(dbfs(ref) - dbfs(echo), abs=0.5)
    assert m.echo_delay_ms == pytest.approx(DELAY_MS, abs=0.5)
    assert m.erle_db == pytest.approx(35.0, abs=1.0)
    assert not m.erle_capped
    assert m.convergence_s == pytest.approx(1.0, abs=0.05)
    assert m.double_talk_retention_db == pytest.approx(-6.0, abs=0.5)
    data = dataclasses.asdict(m)
    assert all(type(v) in (float, bool) for v in data.values()), data
    assert json.loads(json.dumps(data)) == data


def test_compute_echo_metrics_with_digital_silence_after_convergence():
    ref, _, _, mic, output = session("zeros")
    m = compute_echo_metrics(ref, mic, output, RATE)
    assert m.erle_capped
    assert m.erle_db < 70.0
    assert m.double_talk_retention_db is None
    assert m.convergence_s == pytest.approx(1.0, abs=0.05)
    assert json.loads(json.dumps(dataclasses.asdict(m)))["double_talk_retention_db"] is None


def test_compute_echo_metrics_refuses_what_cannot_be_measured():
    ref, _, _, mic, output = session()
    with pytest.raises(UserError, match="silent"):
        compute_echo_metrics(np.zeros_like(ref), mic, output, RATE)
    with pytest.raises(UserError, match="no echo"):
        unrelated = white(6.0, seed=30)
        compute_echo_metrics(ref, unrelated, unrelated, RATE)
    with pytest.raises(UserError, match="too short"):
        compute_echo_metrics(ref[:1000], mic[:1000], output[:1000], RATE)
