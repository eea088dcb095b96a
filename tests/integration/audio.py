"""Recording and playing in the room with the stock Pulse tools (parec, paplay)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np


def start_record(env: dict[str, str], device: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "parec",
            "-d",
            device,
            "--rate=48000",
            "--channels=1",
            "--format=float32le",
            "--raw",
            "--latency-msec=20",  # else data sits in a large buffer and is lost at exit
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def stop_record(proc: subprocess.Popen[bytes]) -> np.ndarray:
    proc.terminate()
    data, _ = proc.communicate(timeout=10)
    return np.frombuffer(data[: len(data) // 4 * 4], dtype=np.float32)


def play(env: dict[str, str], device: str, wav: Path) -> None:
    subprocess.run(["paplay", "-d", device, str(wav)], env=env, check=True, timeout=60)


def record_while(env: dict[str, str], device: str, action, settle_s: float = 0.3) -> np.ndarray:
    rec = start_record(env, device)
    time.sleep(settle_s)
    action()
    time.sleep(settle_s)
    return stop_record(rec)


def dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))


def active_dbfs(x: np.ndarray, rate: int = 48000, block_s: float = 0.1) -> float:
    """Level over the blocks that carry sound (ignores the silent lead-in and tail)."""
    n = int(rate * block_s)
    blocks = x[: len(x) // n * n].reshape(-1, n)
    levels = 10 * np.log10(np.mean(np.square(blocks, dtype=np.float64), axis=1) + 1e-20)
    loud = levels[levels > levels.max() - 10]
    return float(10 * np.log10(np.mean(10 ** (loud / 10))))


def noise_wav(path: Path, seconds: float, level: float = 0.1, seed: int = 3) -> Path:
    from pivoicectl.wavfile import write_wav

    rng = np.random.default_rng(seed)
    write_wav(path, rng.standard_normal(int(48000 * seconds)) * level, 48000)
    return path
