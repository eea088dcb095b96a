"""Recording and playing in the room with the stock Pulse tools (parec, paplay), and
which source and sink a process's streams really connect to."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pivoicectl.system.audio_server import AudioServer


@dataclass
class Recording:
    proc: subprocess.Popen[bytes]
    path: Path


def start_record(env: dict[str, str], device: str) -> Recording:
    """parec into a file: a pipe nobody drains fills after 64 KiB (0.34 s of mono float)
    and then parec stalls, which made recordings come back short and silent."""
    fd, name = tempfile.mkstemp(prefix="pv-rec-", suffix=".raw")
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(
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
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
    return Recording(proc, Path(name))


def stop_record(rec: Recording) -> np.ndarray:
    rec.proc.send_signal(signal.SIGINT)
    try:
        rec.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rec.proc.kill()
        rec.proc.wait(timeout=10)
    data = rec.path.read_bytes()
    rec.path.unlink(missing_ok=True)
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
    from pivoicectl.system.wavfile import write_wav

    rng = np.random.default_rng(seed)
    write_wav(path, rng.standard_normal(int(48000 * seconds)) * level, 48000)
    return path


def streams_of(env: Mapping[str, str], pid: int) -> dict[str, list[str]]:
    """The sources process `pid` records from and the sinks it plays to."""
    with AudioServer.connect(env=env) as server:
        pulse = server._pulse
        sources = {s.index: s.name for s in pulse.source_list()}
        sinks = {s.index: s.name for s in pulse.sink_list()}

        def mine(stream) -> bool:
            return stream.proplist.get("application.process.id") == str(pid)

        return {
            "sources": [sources.get(o.source, "?") for o in pulse.source_output_list() if mine(o)],
            "sinks": [sinks.get(o.sink, "?") for o in pulse.sink_input_list() if mine(o)],
        }
