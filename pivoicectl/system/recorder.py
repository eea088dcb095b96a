"""The recording and playback edge: sample-aligned multi-node capture, parec, paplay.

Why one capture node: two recorders started separately (two `parec`) have an unknown
offset of tens of milliseconds, which ruins a delay measurement and smears an ERLE
computed sample by sample. So the captured nodes (a sink's monitor, the raw mic,
source_ec) are linked port by port into the input ports of ONE node, a private
multi-channel null sink (`support.null-audio-sink`), and parec records that sink's
monitor. PipeWire runs a node only after every node linked to its inputs has run in the
same graph cycle, so the channels are sample-aligned by construction, and they then
travel together in one buffer. Two recorders started separately were tens of ms apart.

An earlier version used `libpipewire-module-combine-stream` (combine.mode = source) in
a `pipewire -c` client. Each of its inputs is a separate stream whose buffer the combine
node takes in its own process callback, with no ordering inside a cycle, so about one
recording in 5-8 had its channels a whole number of periods apart (17.0 ms of echo
delay measured as 11.67 or 6.33 ms in the simulated room, 256-sample period).

The sink lives as long as the `pw-cli -m create-node` process that created it (a
client's objects are destroyed when it disconnects), and the links made with `pw-link`
go with the sink's ports. A node with several channels contributes its first channel
(lowest port index: FL of a stereo device), never a mix: a mono far end played into a
stereo sink is the same in FL and FR, and a sum would read 6 dB too hot.

parec gotchas measured here: it buffers about 2 s by default and drops what is buffered
when it is killed, so it always runs with `--latency-msec=20` and is stopped with SIGINT;
and its stdout must be drained while it records (a full 64 KiB pipe stalls it after
0.1 s of 3-channel audio), so it writes to a file instead.

Everything here is process and file plumbing; the signal analysis is in pivoicectl.dsp.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
PIPEWIRE_TOOLS_HINT = "sudo apt-get install pipewire-bin  (pw-cli, pw-link, pw-dump)"


@dataclass(frozen=True)
class CaptureChannel:
    """One node to capture into one channel of the aligned recording."""

    node: str
    monitor_of_sink: bool = False
    """True for a sink: capture what it plays (its monitor), not a source."""


def require_tools(*names: str) -> None:
    """UserError naming the first missing program (parec, paplay, pacat, pw-cli, ...)."""
    for name in names:
        if shutil.which(name) is None:
            hint = PULSE_TOOLS_HINT if name.startswith("pa") else PIPEWIRE_TOOLS_HINT
            raise UserError(f"{name} is not installed", hint)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def capture_sink_props(name: str, n_channels: int, rate: int) -> str:
    """The properties (`pw-cli create-node adapter PROPS`) of the private capture sink.

    Pure text, valid on PipeWire 0.3.x and 1.x alike. The lowest driver and session
    priorities keep it from driving the graph or becoming the default sink; it never
    suspends; its monitor ignores its volume (monitor.channel-volumes, also the default).
    """
    if not 1 <= n_channels <= len(_POSITIONS):
        raise ValueError(f"1 to {len(_POSITIONS)} channels, got {n_channels}")
    positions = " ".join(_POSITIONS[:n_channels])
    return (
        "{ factory.name = support.null-audio-sink"
        f" node.name = {_quote(name)}"
        ' node.description = "pivoicectl aligned capture"'
        " media.class = Audio/Sink"
        f" audio.rate = {rate} audio.channels = {n_channels}"
        f" audio.position = [ {positions} ]"
        " node.virtual = true"
        " priority.driver = 1 priority.session = 1"
        " session.suspend-timeout-seconds = 0 node.pause-on-idle = false"
        " monitor.channel-volumes = false }"
    )


def _true(value: object) -> bool:
    """A pw-dump property as a bool (1.x prints true, older tools may print "true")."""
    return value is True or str(value).lower() in ("true", "1")


def _ports(objects: Sequence[dict[str, Any]], node_name: str) -> list[dict[str, Any]] | None:
    """The audio ports (their props) of the node named `node_name`; None without one."""
    node_ids = {
        str(o.get("id"))
        for o in objects
        if str(o.get("type", "")).endswith(":Node")
        and ((o.get("info") or {}).get("props") or {}).get("node.name") == node_name
    }
    if not node_ids:
        return None
    ports = []
    for o in objects:
        if not str(o.get("type", "")).endswith(":Port"):
            continue
        info = o.get("info") or {}
        props = info.get("props") or {}
        if str(props.get("node.id")) not in node_ids:
            continue
        if "audio" not in str(props.get("format.dsp", "audio")):
            continue  # a MIDI or control port
        direction = props.get("port.direction") or {"input": "in", "output": "out"}.get(
            str(info.get("direction")), ""
        )
        ports.append({**props, "port.direction": direction, "object.id": o.get("id")})
    return sorted(ports, key=lambda p: (int(p.get("port.id", 0)), int(p["object.id"])))


def link_plan(
    objects: Sequence[dict[str, Any]], sink: str, channels: Sequence[CaptureChannel]
) -> list[tuple[int, int]]:
    """(output port id, input port id) pairs linking each channel's node into `sink`.

    Pure: reads a `pw-dump` listing. Channel k goes to the sink's input port of position
    k (FL, FR, FC, ...). A node's first output port (by port index) is used: a sink's
    first monitor port, a source's first capture port (a virtual source's capture ports
    are flagged port.monitor too, so that flag is only required of sinks). UserError
    when a node or port is missing.
    """
    sink_ports = _ports(objects, sink) or []
    inputs = {
        p.get("audio.channel"): int(p["object.id"])
        for p in sink_ports
        if p.get("port.direction") == "in"
    }
    plan = []
    for pos, ch in zip(_POSITIONS, channels, strict=False):
        if pos not in inputs:
            raise UserError(f"the capture sink {sink} has no {pos} input port", "retry", 1)
        ports = _ports(objects, ch.node)
        if ports is None:
            raise UserError(f"no PipeWire node named {ch.node}", "see `pivoicectl devices`", 1)
        outs = [
            p
            for p in ports
            if p.get("port.direction") == "out"
            and (_true(p.get("port.monitor")) or not ch.monitor_of_sink)
        ]
        if not outs:
            what = "monitor" if ch.monitor_of_sink else "capture"
            raise UserError(f"{ch.node} has no {what} port to record", "see `pivoicectl doctor`", 1)
        plan.append((int(outs[0]["object.id"]), inputs[pos]))
    return plan


def pulse_channel_map(n_channels: int) -> str:
    """The parec --channel-map matching `capture_sink_props`'s positions."""
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
            preexec_fn=_die_with_parent,
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


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies (Linux), so a killed pivoicectl
    leaves no capture sink or parec behind. Best effort; elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _pw_dump(timeout_s: float = 10.0) -> list[dict[str, Any]]:
    try:
        result = subprocess.run(
            ["pw-dump"], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise UserError("pw-dump did not answer", "see `pivoicectl doctor`", 1) from None
    if result.returncode != 0:
        raise UserError(
            f"pw-dump failed: {result.stderr.strip()[:200] or f'exit {result.returncode}'}",
            "is PipeWire running? see `pivoicectl doctor`",
            exit_code=1,
        )
    try:
        objects = json.loads(result.stdout or "[]")
    except json.JSONDecodeError as e:
        raise UserError(f"pw-dump printed no JSON ({e})", "see `pivoicectl doctor`", 1) from e
    return objects if isinstance(objects, list) else []


@contextmanager
def aligned_capture(
    channels: list[CaptureChannel], rate: int = 48000, timeout_s: float = 10.0
) -> Iterator[tuple[str, Path]]:
    """Create the capture sink, link the nodes into it; yield (source name, scratch dir).

    The source is the sink's monitor, one channel per entry of `channels`, in order.
    The sink (and with it every link into it) is destroyed and the directory removed on
    exit, whatever happens.
    """
    from pivoicectl.system.audio_server import AudioServer

    if not 1 <= len(channels) <= len(_POSITIONS):
        raise ValueError(f"1 to {len(_POSITIONS)} channels, got {len(channels)}")
    require_tools("pw-cli", "pw-link", "pw-dump")
    name = f"pv_measure_{os.getpid()}"
    source = f"{name}.monitor"
    workdir = Path(tempfile.mkdtemp(prefix="pivoicectl-rec-"))
    log = open(workdir / "client.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "PIPEWIRE_LOG_SYSTEMD": "false"}
    # -m keeps pw-cli connected after the command: the sink lives as long as it does.
    proc = subprocess.Popen(
        ["pw-cli", "-m", "create-node", "adapter", capture_sink_props(name, len(channels), rate)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        preexec_fn=_die_with_parent,
    )

    def check_alive() -> None:
        if proc.poll() is not None:
            log.flush()
            tail = (workdir / "client.log").read_text(errors="replace").strip()[-300:]
            raise UserError(
                f"pw-cli, which holds the capture sink, exited ({tail or proc.returncode})",
                "is PipeWire running? see `pivoicectl doctor`",
                exit_code=1,
            )

    try:
        deadline = time.monotonic() + timeout_s
        while True:  # the sink's input ports, then the plan
            check_alive()
            objects = _pw_dump()
            ins = [p for p in _ports(objects, name) or [] if p.get("port.direction") == "in"]
            if len(ins) >= len(channels):
                plan = link_plan(objects, name, channels)
                break
            if time.monotonic() > deadline:
                raise UserError(
                    f"the capture sink {name} did not appear within {timeout_s:.0f} s",
                    "is PipeWire running? see `pivoicectl doctor`",
                    exit_code=1,
                )
            time.sleep(0.05)
        for out_port, in_port in plan:
            try:
                result = subprocess.run(
                    ["pw-link", str(out_port), str(in_port)],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout_s,
                    check=False,
                )
                err = ""
                if result.returncode != 0:
                    err = result.stderr.strip()[:200] or f"exit {result.returncode}"
            except subprocess.TimeoutExpired:
                err = "no answer"
            if err:
                raise UserError(
                    f"pw-link {out_port} {in_port} failed: {err}",
                    "see `pivoicectl doctor`",
                    exit_code=1,
                )
        while True:  # parec needs the monitor to exist on the Pulse side
            check_alive()
            with AudioServer.connect() as server:
                if server.find(source, "source") is not None:
                    break
            if time.monotonic() > deadline:
                raise UserError(
                    f"the capture source {source} did not appear within {timeout_s:.0f} s",
                    "is pipewire-pulse running? see `pivoicectl doctor`",
                    exit_code=1,
                )
            time.sleep(0.05)
        yield source, workdir
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
