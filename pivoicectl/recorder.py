"""The recording and playback edge: sample-aligned multi-node capture, parec, paplay.

Why a combine-stream client: two recorders started separately (two `parec`) have an
unknown offset of tens of milliseconds, which ruins a delay measurement and smears an
ERLE computed sample by sample. PipeWire's `libpipewire-module-combine-stream`, loaded in
a small standalone client process (`pipewire -c FILE`), captures several nodes (a sink's
monitor, the raw mic, source_ec) into ONE multi-channel source whose channels share one
clock and one start; recording that single source with parec gives sample-aligned
channels (DESIGN-NOTES section 3).

parec gotchas measured here: it buffers about 2 s by default and drops what is buffered
when it is killed, so it always runs with `--latency-msec=20` and is stopped with SIGINT;
and its stdout must be drained while it records (a full 64 KiB pipe stalls it after
0.1 s of 3-channel audio), so it writes to a file instead.

Everything here is process and file plumbing; the signal analysis is in pivoicectl.dsp.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pivoicectl.errors import UserError

_POSITIONS = ("FL", "FR", "FC", "LFE", "RL", "RR")
_PULSE_MAP = {
    "FL": "front-left",
    "FR": "front-right",
    "FC": "front-center",
    "LFE": "lfe",
    "RL": "rear-left",
    "RR": "rear-right",
}
PULSE_TOOLS_HINT = "sudo apt-get install pulseaudio-utils"


@dataclass(frozen=True)
class CaptureChannel:
    """One node to capture into one channel of the combined source."""

    node: str
    monitor_of_sink: bool = False
    """True for a sink: capture what it plays (its monitor), not a source."""


def require_tools(*names: str) -> None:
    """UserError naming the first missing program (parec, paplay, pacat, pipewire)."""
    for name in names:
        if shutil.which(name) is None:
            hint = PULSE_TOOLS_HINT if name.startswith("pa") else "sudo apt-get install pipewire"
            raise UserError(f"{name} is not installed", hint)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def combine_config(name: str, channels: list[CaptureChannel] | tuple[CaptureChannel, ...]) -> str:
    """The client config that makes `name`, one source with a channel per captured node.

    Pure text. Each node gets its own stream rule (matched by node.name) mapped to one
    position; `stream.dont-remix` keeps PipeWire from mixing a mono node into several
    channels; latency compensation is off because we want the raw, shared time base.
    """
    if not 1 <= len(channels) <= len(_POSITIONS):
        raise ValueError(f"1 to {len(_POSITIONS)} channels, got {len(channels)}")
    positions = " ".join(_POSITIONS[: len(channels)])
    rules = []
    for pos, ch in zip(_POSITIONS, channels, strict=False):
        extra = " stream.capture.sink = true" if ch.monitor_of_sink else ""
        rules.append(
            f"        {{ matches = [ {{ node.name = {_quote(ch.node)} }} ]\n"
            f"          actions = {{ create-stream = {{ combine.audio.position = [ {pos} ] "
            f"audio.position = [ MONO ]{extra} }} }} }}"
        )
    rules_text = "\n".join(rules)
    return f"""# pivoicectl: a temporary client that records several nodes on one clock.
context.properties = {{
  log.level = 2
}}
context.spa-libs = {{
  audio.convert.* = audioconvert/libspa-audioconvert
  support.*       = support/libspa-support
}}
context.modules = [
  {{ name = libpipewire-module-protocol-native }}
  {{ name = libpipewire-module-client-node }}
  {{ name = libpipewire-module-adapter }}
  {{ name = libpipewire-module-combine-stream
    args = {{
      combine.mode = source
      node.name = {_quote(name)}
      node.description = "pivoicectl aligned capture"
      combine.latency-compensate = false
      combine.props = {{
        audio.position = [ {positions} ]
        node.virtual = true
        session.suspend-timeout-seconds = 0
      }}
      stream.props = {{
        stream.dont-remix = true
        node.dont-reconnect = true
      }}
      stream.rules = [
{rules_text}
      ]
    }}
  }}
]
"""


def pulse_channel_map(n_channels: int) -> str:
    """The parec --channel-map matching `combine_config`'s positions."""
    return ",".join(_PULSE_MAP[p] for p in _POSITIONS[:n_channels])


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout_s: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


class AlignedRecording:
    """A running parec of the combined source; `stop()` returns (frames, channels)."""

    def __init__(self, source: str, n_channels: int, rate: int, workdir: Path) -> None:
        require_tools("parec")
        self.rate = rate
        self.n_channels = n_channels
        self._path = workdir / "capture.raw"
        self._file = open(self._path, "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [
                "parec",
                "-d",
                source,
                f"--rate={rate}",
                f"--channels={n_channels}",
                f"--channel-map={pulse_channel_map(n_channels)}",
                "--format=float32le",
                "--raw",
                "--latency-msec=20",
            ],
            stdout=self._file,
            stderr=subprocess.PIPE,
        )

    def seconds(self) -> float:
        """Seconds recorded so far (from the file size)."""
        try:
            size = self._path.stat().st_size
        except OSError:
            return 0.0
        return size / (4 * self.n_channels * self.rate)

    def stop(self) -> np.ndarray:
        _stop(self._proc)
        self._file.close()
        if self._proc.returncode not in (0, -signal.SIGINT, 130) and self.seconds() == 0.0:
            err = (self._proc.stderr.read() if self._proc.stderr else b"").decode(errors="replace")
            raise UserError(
                f"parec failed: {err.strip()[:200] or f'exit {self._proc.returncode}'}",
                "see `pivoicectl doctor`",
                exit_code=1,
            )
        if self._proc.stderr:
            self._proc.stderr.close()
        data = self._path.read_bytes()
        frame = 4 * self.n_channels
        return np.frombuffer(data[: len(data) // frame * frame], dtype="<f4").reshape(
            -1, self.n_channels
        )


@contextmanager
def aligned_capture(
    channels: list[CaptureChannel], rate: int = 48000, timeout_s: float = 10.0
) -> Iterator[tuple[str, Path]]:
    """Run the combine-stream client; yield (source name, scratch directory).

    The client is stopped and the directory removed on exit, whatever happens.
    """
    from pivoicectl.audio_server import AudioServer

    require_tools("pipewire")
    name = f"pivoicectl_aligned_{os.getpid()}"
    workdir = Path(tempfile.mkdtemp(prefix="pivoicectl-rec-"))
    conf = workdir / "aligned-capture.conf"
    conf.write_text(combine_config(name, channels))
    log = open(workdir / "client.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "PIPEWIRE_LOG_SYSTEMD": "false"}
    proc = subprocess.Popen(
        ["pipewire", "-c", str(conf)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                log.flush()
                tail = (workdir / "client.log").read_text(errors="replace").strip()[-300:]
                raise UserError(
                    f"the aligned-capture client exited ({tail or proc.returncode})",
                    "this needs libpipewire-module-combine-stream (PipeWire 0.3.62 or later)",
                    exit_code=1,
                )
            with AudioServer.connect() as server:
                if server.find(name, "source") is not None:
                    break
            if time.monotonic() > deadline:
                raise UserError(
                    f"the aligned-capture source did not appear within {timeout_s:.0f} s",
                    "is WirePlumber running? see `pivoicectl doctor`",
                    exit_code=1,
                )
            time.sleep(0.05)
        yield name, workdir
    finally:
        _stop(proc, signal.SIGTERM)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def play_file(path: Path, device: str | None = None) -> subprocess.Popen:
    """Start paplay on `path` (into `device`, or the default sink); returns the process."""
    require_tools("paplay")
    args = ["paplay"] + (["-d", device] if device else []) + [str(path)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish_playback(proc: subprocess.Popen, timeout_s: float) -> None:
    """Wait for a paplay; a failure is a UserError with paplay's own words."""
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop(proc, signal.SIGTERM)
        raise UserError("playback did not finish in time", "is the sink running?", 1) from None
    err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace").strip()
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise UserError(f"paplay failed: {err[:200]}", "see `pivoicectl devices`", exit_code=1)


def espeak_wav(text: str, path: Path) -> bool:
    """Speak `text` into a WAV with espeak-ng; False when espeak-ng is not installed."""
    if shutil.which("espeak-ng") is None:
        return False
    result = subprocess.run(
        ["espeak-ng", "-w", str(path), text], capture_output=True, timeout=60, check=False
    )
    return result.returncode == 0 and path.exists()


class StreamCapture:
    """Live mono int16 capture of one source with parec, in fixed-size frames.

    A reader thread drains parec's stdout into a queue (parec stalls on a full pipe),
    so the consumer can take frames at its own pace. Frame counts, not wall time, are
    the clock: frame k started at k * frame_len / rate seconds of capture.
    """

    def __init__(self, source: str | None, rate: int, frame_len: int) -> None:
        require_tools("parec")
        self.rate = rate
        self.frame_len = frame_len
        self.frames: queue.Queue[bytes | None] = queue.Queue()
        args = ["parec", "--rate", str(rate), "--channels=1", "--format=s16le", "--raw"]
        args += ["--latency-msec=20"] + (["-d", source] if source else [])
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        size = 2 * self.frame_len
        stream = self._proc.stdout
        assert stream is not None
        buf = b""
        while True:
            chunk = stream.read1(size) if hasattr(stream, "read1") else stream.read(size)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= size:
                self.frames.put(buf[:size])
                buf = buf[size:]
        self.frames.put(None)

    def get(self, timeout_s: float) -> bytes | None:
        """The next frame, or None at the end of the stream or after `timeout_s`."""
        try:
            return self.frames.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def close(self) -> None:
        _stop(self._proc)
        if self._proc.stdout:
            self._proc.stdout.close()
        self._thread.join(timeout=2.0)


class StreamPlayer:
    """Play raw mono int16 audio into a sink with pacat (non-blocking start)."""

    def __init__(self, sink: str | None, rate: int) -> None:
        require_tools("pacat")
        self.rate = rate
        self.sink = sink

    def play(self, pcm: bytes) -> subprocess.Popen:
        args = ["pacat", "--playback", "--rate", str(self.rate), "--channels=1"]
        args += ["--format=s16le", "--raw", "--latency-msec=40"]
        args += ["-d", self.sink] if self.sink else []
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
        threading.Thread(target=_feed, args=(proc, pcm), daemon=True).start()
        return proc


def _feed(proc: subprocess.Popen, pcm: bytes) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.write(pcm)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
