"""Signal levels in dBFS, whole-signal and frame by frame.

Convention: dBFS here is the RMS relative to a full-scale amplitude of 1.0, so a
full-scale square wave is 0 dBFS and a full-scale sine is -3.01 dBFS (AES17 would call
that sine 0 dBFS; we do not add the +3 dB because every comparison we make is between
two levels measured the same way, where the offset cancels).

Levels never go to -inf: digital silence is common in our recordings (the echo
canceller's output becomes exact zeros once it has converged), and a -inf would poison
every difference and mean computed downstream. Anything quieter than the floor reads as
the floor instead.
"""

from __future__ import annotations

import math
import warnings
from types import ModuleType

import numpy as np

FLOOR_DBFS = -120.0
"""Lowest level ever reported; well under 16-bit quantization noise (-101 dBFS RMS)."""

_INT_FULL_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}

_audioop: ModuleType | None
try:  # the standard library's C RMS (deprecated in 3.11, gone in 3.13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop as _audioop
except ImportError:  # pragma: no cover - Python 3.13+
    _audioop = None
"""Why: `run` takes the level of every mic block and of every block it plays. Right
after a wakeup, with cold caches, numpy's version cost 11 us a block and `audioop.rms`
2.5 us; `py-spy` put numpy's at 14 % of the client's busy time."""

_PCM16_BYTES = 2
_PCM16_FULL_SCALE = 32768.0


def pcm16_dbfs(pcm: bytes | bytearray | memoryview | np.ndarray) -> float:
    """RMS level of one block of PCM16 in dBFS, `FLOOR_DBFS` for silence or nothing.

    For the per-block live paths (every mic block and every played block of `run`, each
    frame of the energy VAD): raw capture bytes or an int16 array. The RMS is counted in
    whole 16-bit steps, rounded down, as `audioop.rms` counts it, so a level reads up to
    0.1 dB low above -50 dBFS and up to 0.8 dB low at -70 dBFS, and anything under one
    step RMS (-90.3 dBFS) reads as the floor. Where Python has no `audioop` (3.13 on,
    as on Raspberry Pi OS trixie) numpy counts the same steps bit for bit: with exact
    levels there, the energy VAD's edges moved against bookworm's on the same audio,
    and the thresholds would mean different things on the two. A trailing odd byte is
    ignored.
    """
    if type(pcm) is bytes:  # what the edges deliver: the one check on the hot path
        n = len(pcm) >> 1
        if len(pcm) & 1:
            pcm = pcm[:-1]
    elif isinstance(pcm, np.ndarray):
        if pcm.dtype != np.int16:
            raise ValueError(f"expected int16 PCM, got {pcm.dtype}")
        if not pcm.flags.c_contiguous:
            pcm = np.ascontiguousarray(pcm)
        n = pcm.size
    else:
        view = memoryview(pcm).cast("B")
        n = view.nbytes >> 1
        pcm = view[: n * _PCM16_BYTES]
    if n == 0:
        return FLOOR_DBFS
    if _audioop is not None:
        steps = _audioop.rms(pcm, _PCM16_BYTES)
    else:
        # audioop's formula: the sum of squares in a double (exact here: integers under
        # 2**53 up to 8 million samples), divided by n, square root, truncated.
        x = np.frombuffer(pcm, dtype=np.int16, count=n).astype(np.float64)
        steps = math.floor(math.sqrt(float(np.dot(x, x)) / n))
    return 20.0 * math.log10(steps / _PCM16_FULL_SCALE) if steps else FLOOR_DBFS


def as_float(signal: np.ndarray) -> np.ndarray:
    """Float64 samples with full scale 1.0, whatever PCM type they came in.

    int16 and int32 are divided by 2**15 and 2**31, matching `pivoicectl.system.wavfile`, so a
    level measured on raw capture bytes and on a WAV read back agree.
    """
    arr = np.asarray(signal)
    scale = _INT_FULL_SCALE.get(arr.dtype)
    if scale is not None:
        return arr.astype(np.float64) / scale
    if arr.dtype.kind in "iu":
        raise ValueError(f"unsupported integer sample type {arr.dtype}; use int16 or int32")
    return arr.astype(np.float64, copy=False)


def power_to_dbfs(power: np.ndarray | float, floor_dbfs: float = FLOOR_DBFS) -> np.ndarray:
    """Mean-square power to dBFS, clamped at `floor_dbfs` (zero power reads as the floor)."""
    p = np.asarray(power, dtype=np.float64)
    floor_power = 10.0 ** (floor_dbfs / 10.0)
    return 10.0 * np.log10(np.maximum(p, floor_power))


def mean_square(signal: np.ndarray) -> float:
    """Mean-square power; accumulated in float64 so long float32 recordings stay exact."""
    x = as_float(signal).ravel()
    if x.size == 0:
        return 0.0
    return float(np.dot(x, x) / x.size)


def rms(signal: np.ndarray) -> float:
    """Root-mean-square amplitude (0.0 for an empty signal)."""
    return float(np.sqrt(mean_square(signal)))


def dbfs(signal: np.ndarray, floor_dbfs: float = FLOOR_DBFS) -> float:
    """RMS level in dBFS, never below `floor_dbfs`."""
    return float(power_to_dbfs(mean_square(signal), floor_dbfs))


def frame_signal(signal: np.ndarray, frame_len: int, hop: int | None = None) -> np.ndarray:
    """View a 1-D signal as (n_frames, frame_len) rows; the partial last frame is dropped.

    With hop == frame_len (the default) and a contiguous input this is a plain reshape,
    i.e. a writable view; overlapping hops give a read-only strided view. Neither copies,
    which matters for minutes-long 48 kHz recordings framed at 10 ms.
    """
    x = np.asarray(signal)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {x.shape}")
    if frame_len <= 0:
        raise ValueError("frame_len must be positive")
    hop = frame_len if hop is None else hop
    if hop <= 0:
        raise ValueError("hop must be positive")
    if x.size < frame_len:
        return x[:0].reshape(0, frame_len)
    n_frames = 1 + (x.size - frame_len) // hop
    if hop == frame_len and x.flags.c_contiguous:
        return x[: n_frames * frame_len].reshape(n_frames, frame_len)
    return np.lib.stride_tricks.sliding_window_view(x, frame_len)[::hop][:n_frames]


def frame_powers(signal: np.ndarray, frame_len: int, hop: int | None = None) -> np.ndarray:
    """Mean-square power of each frame (float64), without materialising the squares."""
    frames = frame_signal(as_float(signal), frame_len, hop)
    return np.einsum("ij,ij->i", frames, frames) / frame_len


def frame_levels_dbfs(
    signal: np.ndarray,
    frame_len: int,
    hop: int | None = None,
    floor_dbfs: float = FLOOR_DBFS,
) -> np.ndarray:
    """RMS level of each frame in dBFS, clamped at `floor_dbfs`."""
    return power_to_dbfs(frame_powers(signal, frame_len, hop), floor_dbfs)
