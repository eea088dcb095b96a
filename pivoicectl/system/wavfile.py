"""WAV files in and out as float32 numpy arrays in [-1, 1].

The standard library's `wave` module reads and writes only integer PCM, which is all
the sound tools around us (sox, espeak-ng, parec, pw-record) need; float arrays are what
the DSP works in, so the conversion lives here once.
"""

from __future__ import annotations

import os
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pivoicectl.errors import UserError


@dataclass(frozen=True)
class Wav:
    """Samples shaped (frames, channels), float32 in [-1, 1], and their rate in Hz."""

    samples: np.ndarray
    rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.rate

    def mono(self) -> np.ndarray:
        """Mean of the channels: what a mono consumer hears."""
        return self.samples.mean(axis=1)


_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}


def read_wav(path: str | os.PathLike[str]) -> Wav:
    """Read an 8/16/32-bit integer PCM WAV; a bad file is a UserError, not a traceback."""
    p = Path(path)
    try:
        with wave.open(str(p), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except FileNotFoundError as e:
        raise UserError(f"{p}: no such file", "give the path of a WAV file") from e
    except (wave.Error, EOFError) as e:
        raise UserError(
            f"{p}: not a PCM WAV file ({e})",
            "convert it first, e.g. `sox in.mp3 -b 16 out.wav`",
        ) from e
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        ints = (
            b[:, 0].astype(np.int32)
            | (b[:, 1].astype(np.int32) << 8)
            | (b[:, 2].astype(np.int32) << 16)
        )
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        data = ints.astype(np.float32) / float(1 << 23)
    elif width in _DTYPES:
        ints = np.frombuffer(raw, _DTYPES[width])
        if width == 1:
            data = (ints.astype(np.float32) - 128.0) / 128.0
        else:
            data = ints.astype(np.float32) / float(2 ** (8 * width - 1))
    else:
        raise UserError(f"{p}: unsupported sample width {width} bytes", "use 16-bit PCM")
    return Wav(data.reshape(-1, channels), rate)


def to_pcm16(samples: np.ndarray) -> bytes:
    """Clip to [-1, 1] and convert to little-endian 16-bit PCM bytes."""
    clipped = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    return (np.round(clipped * 32767.0)).astype("<i2").tobytes()


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, rate: int) -> Path:
    """Write 16-bit PCM atomically (temp file + rename), so a reader never sees half a file."""
    p = Path(path)
    arr = np.asarray(samples, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f, wave.open(f, "wb") as w:
            w.setnchannels(arr.shape[1])
            w.setsampwidth(2)
            w.setframerate(int(rate))
            w.writeframes(to_pcm16(arr))
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
