"""Levels in dBFS: known answers for sines, squares, silence and PCM integers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pivoicectl.dsp.levels import (
    FLOOR_DBFS,
    as_float,
    dbfs,
    frame_levels_dbfs,
    frame_powers,
    frame_signal,
    pcm16_dbfs,
    power_to_dbfs,
    rms,
)

RATE = 16000


def sine(amplitude: float, freq: float = 1000.0, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return amplitude * np.sin(2 * np.pi * freq * t)


def test_full_scale_sine_is_minus_3_dbfs_and_square_is_0():
    assert dbfs(sine(1.0)) == pytest.approx(-3.0103, abs=1e-3)
    assert dbfs(np.sign(sine(1.0) + 1e-12)) == pytest.approx(0.0, abs=1e-9)
    assert dbfs(sine(0.1)) == pytest.approx(-23.0103, abs=1e-3)
    assert rms(np.full(100, 0.5)) == pytest.approx(0.5)


def test_silence_reads_as_the_floor_not_minus_infinity():
    assert dbfs(np.zeros(1000)) == FLOOR_DBFS
    assert dbfs(np.zeros(1000), floor_dbfs=-90.0) == -90.0
    assert dbfs(np.array([])) == FLOOR_DBFS
    assert math.isfinite(float(power_to_dbfs(0.0)))
    assert np.all(np.isfinite(frame_levels_dbfs(np.zeros(3200), 320)))


def test_int16_and_float_give_the_same_level():
    x = sine(0.5)
    pcm = np.round(x * 32767).astype(np.int16)
    assert dbfs(pcm) == pytest.approx(dbfs(x), abs=0.01)
    assert as_float(np.array([-32768], dtype=np.int16))[0] == -1.0
    assert as_float(np.array([1 << 30], dtype=np.int32))[0] == 0.5
    with pytest.raises(ValueError, match="int8"):
        as_float(np.zeros(4, dtype=np.int8))


def test_float32_is_accumulated_in_float64():
    x = np.full(1_000_000, 1e-3, dtype=np.float32)
    assert dbfs(x) == pytest.approx(-60.0, abs=1e-4)


def test_frame_signal_is_a_view_and_drops_the_partial_frame():
    x = np.arange(10.0)
    frames = frame_signal(x, 4)
    assert frames.shape == (2, 4)
    assert np.shares_memory(frames, x)
    assert frames[1].tolist() == [4.0, 5.0, 6.0, 7.0]
    frames[0, 0] = 99.0  # hop == frame_len on a contiguous array: a writable view
    assert x[0] == 99.0


def test_frame_signal_with_overlap_and_short_input():
    x = np.arange(10.0)
    frames = frame_signal(x, 4, hop=2)
    assert frames.shape == (4, 4)
    assert frames[:, 0].tolist() == [0.0, 2.0, 4.0, 6.0]
    assert np.shares_memory(frames, x)
    assert frame_signal(x, 20).shape == (0, 20)
    strided = frame_signal(x[::2], 2)  # non-contiguous input still frames correctly
    assert strided.tolist() == [[0.0, 2.0], [4.0, 6.0]]
    with pytest.raises(ValueError):
        frame_signal(np.zeros((4, 2)), 2)


def test_frame_levels_follow_each_part_of_the_signal():
    quiet, loud = sine(0.01, seconds=0.5), sine(0.5, seconds=0.5)
    x = np.concatenate([quiet, np.zeros(RATE // 2), loud])
    levels = frame_levels_dbfs(x, 320)
    assert levels.shape == (75,)
    np.testing.assert_allclose(levels[:25], -43.01, atol=0.01)
    np.testing.assert_allclose(levels[25:50], FLOOR_DBFS)
    np.testing.assert_allclose(levels[50:], -9.03, atol=0.01)
    np.testing.assert_allclose(frame_powers(loud, 320), 0.125, rtol=1e-6)


def pcm16_noise(level_dbfs: float, n: int = 480, seed: int = 0) -> np.ndarray:
    """White noise of `n` int16 samples whose RMS is `level_dbfs`."""
    x = np.random.default_rng(seed).standard_normal(n)
    x *= 32768.0 * 10 ** (level_dbfs / 20) / np.sqrt(np.mean(x * x))
    return np.round(x).astype(np.int16)


def test_pcm16_level_of_bytes_and_of_int16_arrays_agree_with_the_whole_signal_level():
    for level in (-20.0, -33.0, -45.0):
        block = pcm16_noise(level)
        assert pcm16_dbfs(block) == pytest.approx(level, abs=0.1)
        assert pcm16_dbfs(block.tobytes()) == pcm16_dbfs(block)
        assert pcm16_dbfs(bytearray(block.tobytes())) == pcm16_dbfs(block)
        assert pcm16_dbfs(memoryview(block)) == pcm16_dbfs(block)
        assert pcm16_dbfs(block) == pytest.approx(dbfs(block), abs=0.1)
    stereo = np.stack([pcm16_noise(-20.0), np.zeros(480, np.int16)], axis=1)
    assert pcm16_dbfs(stereo[:, 0]) == pcm16_dbfs(pcm16_noise(-20.0))  # a strided column


def test_pcm16_silence_nothing_and_a_lone_odd_byte_read_as_the_floor():
    assert pcm16_dbfs(np.zeros(480, np.int16).tobytes()) == FLOOR_DBFS
    assert pcm16_dbfs(b"") == FLOOR_DBFS
    assert pcm16_dbfs(b"\x7f") == FLOOR_DBFS
    assert pcm16_dbfs(np.zeros(0, np.int16)) == FLOOR_DBFS
    block = pcm16_noise(-30.0).tobytes()
    assert pcm16_dbfs(block + b"\x7f") == pcm16_dbfs(block)  # the odd byte is ignored


def test_pcm16_level_rejects_samples_that_are_not_int16():
    with pytest.raises(ValueError, match="int16"):
        pcm16_dbfs(np.zeros(480, np.float32))


def test_pcm16_level_is_the_same_with_and_without_audioop(monkeypatch):
    """audioop where Python has it, numpy where it does not (3.13 on): the same whole
    RMS steps, bit for bit, so a threshold means the same on bookworm and trixie."""
    from pivoicectl.dsp import levels

    rng = np.random.default_rng(3)
    blocks = [np.zeros(480, np.int16)] + [pcm16_noise(d) for d in (-70.0, -45.0, -20.0, -33.0)]
    blocks += [rng.integers(-40, 40, 480, dtype=np.int16) for _ in range(200)]
    blocks += [np.full(480, -32768, np.int16), np.full(7, 1, np.int16)]

    def reference(block: np.ndarray) -> float:
        """audioop.rms in Python: truncated sqrt of the mean square, in whole steps."""
        steps = int(math.sqrt(sum(int(v) * int(v) for v in block) / block.size))
        return 20.0 * math.log10(steps / 32768.0) if steps else FLOOR_DBFS

    want = [reference(b) for b in blocks]
    assert [pcm16_dbfs(b.tobytes()) for b in blocks] == want
    monkeypatch.setattr(levels, "_audioop", None)
    assert [pcm16_dbfs(b.tobytes()) for b in blocks] == want
    assert want[0] == FLOOR_DBFS and want[-2] == 0.0
    assert want[1:5] == pytest.approx([-70.0, -45.0, -20.0, -33.0], abs=0.8)
