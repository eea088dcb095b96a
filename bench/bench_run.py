"""Barge-in and playback latency and client CPU of `pivoicectl run`, in the simulated room.

Run: .venv/bin/python bench/bench_run.py [--rounds 3] [--audio-backend portaudio]

Starts a private room, `pivoicectl setup`, the repeater server as a separate `pivoicectl
local-server` process (so the client's CPU figure is the client's alone), and `pivoicectl
run --url ... --trace` as another process. Each round a simulated person asks for 4 s,
then talks over the answer 2 s into it; the repeater answers that too.

Figures (with their goals):
* interrupt latency, speech_started received -> speaker silent (goal <= 25 ms):
  - client: the callback time of the first block after the flush plus the output
    latency PortAudio reports for it (what `run` prints);
  - speaker: the end of the answer in a recording of sim_speaker.monitor, on the same
    CLOCK_MONOTONIC as the client's trace (parec chunks are stamped on arrival and the
    earliest-arriving chunk anchors the time line, so this still includes parec's own
    minimum delivery delay: an upper bound);
* first-audio latency, first delta received -> first sample audible (goal <= 50 ms):
  client-side (callback time + reported output latency);
* client CPU per second of duplex audio (goal <= 1% of one core): CPU time of all of
  `run`'s threads from session.created to the end over that wall time (the mic streams
  throughout, so all of it is duplex time), also per thread; next to it, in the same
  run, what the machine charges for a wakeup and the CPU of the least client these
  packages allow (FLOOR_CLIENT), so the ratio survives a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pivoicectl.commands.run import BENCH_UPLINK_VAR
from pivoicectl.realtime.session import uplink
from pivoicectl.sim import instance
from pivoicectl.sim.room import RoomSettings
from tests.conftest import clean_env, run_cli
from tests.integration.test_run import (
    PREFIX_MS,
    RunProcess,
    heard_and_gaps_ms,
    loud_segments,
    voiced_wav,
)

RATE = 48_000


class StampedRecorder:
    """parec of a node into memory, each chunk stamped with time.monotonic() on arrival."""

    def __init__(self, env: dict[str, str], device: str) -> None:
        self.proc = subprocess.Popen(
            [
                "parec",
                "-d",
                device,
                "--rate=48000",
                "--channels=1",
                "--format=float32le",
                "--raw",
                "--latency-msec=5",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        self.chunks: list[tuple[float, bytes]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            data = self.proc.stdout.read(4096)
            if not data:
                return
            self.chunks.append((time.monotonic(), data))

    def stop(self) -> tuple[np.ndarray, float]:
        """The samples and the monotonic time of sample 0 (lower-envelope anchor)."""
        self.proc.terminate()
        self.thread.join(5)
        raw = b"".join(c for _, c in self.chunks)
        x = np.frombuffer(raw[: len(raw) // 4 * 4], dtype=np.float32)
        t0, n = float("inf"), 0
        for arrived, data in self.chunks:
            n += len(data) // 4
            t0 = min(t0, arrived - n / RATE)  # the last sample of this chunk was at <= arrived
        return x, t0


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a live process, from /proc: the event loop is the main
    thread; the others are PortAudio's, the audio server client's and the output control
    thread. The scheduler's own run time (schedstat, in ns) where the kernel keeps it:
    user + system time comes in 10 ms ticks, too coarse for a 10 s window at 1 %."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = "main" if task.name == str(pid) else f"thread {task.name}"
        try:
            out[name] = int((task / "schedstat").read_text().split()[0]) / 1e9
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def context_switches(pid: int) -> int:
    """Times the process's threads gave up the CPU, voluntarily (to wait: one wakeup
    each) or not: the unit most of the client's CPU on a VM is made of."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


class ThreadSampler:
    """The last CPU figure seen for each thread, sampled every 0.2 s (threads that end
    before the process, like the audio threads, would otherwise vanish from /proc)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu: dict[str, float] = {}
        self.at_mark: dict[str, float] = {}
        self.switches = 0
        self.switches_at_mark = 0
        self.mark_s = 0.0
        self.last_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.cpu.update(thread_cpu(self.pid))
                self.switches = context_switches(self.pid)
            except OSError:
                return
            self.last_s = time.monotonic()

    def mark(self) -> None:
        """Remember the figures now: `since_mark` reports CPU used after this."""
        self.cpu.update(thread_cpu(self.pid))
        self.switches = self.switches_at_mark = context_switches(self.pid)
        self.at_mark = dict(self.cpu)
        self.mark_s = self.last_s = time.monotonic()

    @property
    def wall_since_mark(self) -> float:
        """Wall time from the mark to the last successful sample."""
        return self.last_s - self.mark_s

    def switches_per_s(self) -> float:
        """Context switches a second from the mark to the last sample."""
        return (self.switches - self.switches_at_mark) / max(self.wall_since_mark, 1e-9)

    def since_mark(self) -> dict[str, float]:
        return {k: v - self.at_mark.get(k, 0.0) for k, v in self.cpu.items()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def wakeup_cost_percent(seconds: float = 3.0, hz: float = 50.0) -> float:
    """CPU share of an asyncio loop that only wakes `hz` times a second: what the machine
    charges for a wakeup, the unit most of the client's CPU is made of."""
    import asyncio

    async def tick() -> float:
        cpu0, wall0 = time.process_time(), time.monotonic()
        for _ in range(int(seconds * hz)):
            await asyncio.sleep(1 / hz)
        return 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)

    return asyncio.run(tick())


FLOOR_CLIENT = r"""
import asyncio, base64, json, sys, time
import sounddevice as sd
from websockets.asyncio.client import connect

async def main(url, seconds):
    loop = asyncio.get_running_loop()
    async with connect(url, additional_headers={"Authorization": "Bearer x"}, proxy=None) as ws:
        await ws.recv()  # session.created
        queue = asyncio.Queue()

        def on_input(indata, frames, time_info, status):
            loop.call_soon_threadsafe(queue.put_nowait, bytes(indata))

        async def send():
            while True:
                pcm = await queue.get()
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(pcm).decode()}))

        sender = asyncio.create_task(send())
        with sd.RawInputStream(samplerate=24000, channels=1, dtype="int16", blocksize=480,
                               latency="low", device="pulse", callback=on_input):
            await asyncio.sleep(1.0)
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            print(100 * (time.process_time() - cpu0) / (time.monotonic() - wall0))
        sender.cancel()

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""
"""The least a Python client with these packages can do: a 20 ms PortAudio mic stream
whose blocks go to the WebSocket as input_audio_buffer.append, nothing else."""


def floor_client_percent(env: dict[str, str], url: str, seconds: float = 10.0) -> float:
    """CPU share of FLOOR_CLIENT in the same room, against the same server."""
    out = subprocess.run(
        [sys.executable, "-c", FLOOR_CLIENT, url, str(seconds)],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--audio-backend", choices=("pulse", "portaudio"), default="pulse")
    # The batching is fixed for users (uplink.RUN_UPLINK); the bench alone may vary it.
    batch = "mic batches, ms (run's own by default; the bench passes them in {})"
    batch = batch.format(BENCH_UPLINK_VAR)
    ap.add_argument("--uplink-batch-ms", type=int, default=uplink.QUIET_BATCH_MS, help=batch)
    ap.add_argument("--speech-batch-ms", type=int, default=uplink.SPEECH_BATCH_MS)
    ap.add_argument(
        "--talk-batch-ms", type=int, default=uplink.TALK_BATCH_MS, help="speech, nothing plays"
    )
    ap.add_argument(
        "--idle-batch-ms", type=int, default=uplink.IDLE_BATCH_MS, help="quiet, nothing plays"
    )
    ap.add_argument("--block-ms", type=int, default=20, help="mic block and tick period")
    ap.add_argument("--idle-s", type=float, default=10.0, help="listening to a quiet room")
    args = ap.parse_args()
    wakeup_cost = wakeup_cost_percent()
    root = Path(tempfile.mkdtemp(prefix="pvsim-bench-", dir="/tmp"))
    paths = instance.SimPaths(root)
    instance.up(paths, RoomSettings())
    env = clean_env(**instance.environment(paths), OPENAI_API_KEY="bench-key")
    tmp = Path(tempfile.mkdtemp(prefix="pv-bench-run-"))
    server = None
    try:
        run_cli("setup", "--json", env=env, check=True)
        question = voiced_wav(tmp / "q.wav", 4.0, f0=140)
        interruption = voiced_wav(tmp / "i.wav", 1.0, f0=200)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "pivoicectl", "local-server", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert server.stdout is not None
        server.stdout.readline()  # "local Realtime server on ..."
        floor = floor_client_percent(env, f"ws://127.0.0.1:{port}/v1/realtime")
        recorder = StampedRecorder(env, "sim_speaker.monitor")
        run = RunProcess(
            {
                **env,
                BENCH_UPLINK_VAR: ",".join(
                    str(ms)
                    for ms in (
                        args.uplink_batch_ms,
                        args.speech_batch_ms,
                        args.idle_batch_ms,
                        args.talk_batch_ms,
                    )
                ),
                "PIVOICECTL_INPUT_BLOCK_MS": str(args.block_ms),
            },
            tmp / "trace.jsonl",
            "--url",
            f"ws://127.0.0.1:{port}/v1/realtime",
            "--max-turns",
            str(2 * args.rounds),
            "--duration",
            str(20 * args.rounds + 20),
            "--audio-backend",
            args.audio_backend,
        )
        sampler = ThreadSampler(run.proc.pid)
        run.wait_for(lambda r: r["type"] == "session", 20, "session")
        time.sleep(1.0)  # past the ready sound
        sampler.mark()
        time.sleep(args.idle_s)  # nobody talks: what an always-on assistant mostly does
        idle_s = sum(sampler.since_mark().values())
        idle = 100.0 * idle_s / max(sampler.wall_since_mark, 1e-9)
        idle_wall = sampler.wall_since_mark
        idle_switches = sampler.switches_per_s()
        sampler.mark()
        time.sleep(0.5)
        question_ends, interruption_starts = [], []
        for k in range(args.rounds):
            subprocess.run(["paplay", "-d", "sim_air", str(question)], env=env, check=True)
            question_ends.append(time.monotonic())  # paplay returns once it has played out
            run.wait_for_answers(2 * k + 1, 10)
            time.sleep(2.0)
            interruption_starts.append(time.monotonic())
            subprocess.run(["paplay", "-d", "sim_air", str(interruption)], env=env, check=True)
            run.wait_for(lambda r, k=k: r["type"] == "turn" and r["turn"] == 2 * k + 2, 15, "turn")
            time.sleep(0.5)
        summary = run.finish(timeout_s=30)
        sampler.stop()
        audio, t0 = recorder.stop()
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        instance.down(paths, remove=False)
        shutil.rmtree(root, ignore_errors=True)

    records = [json.loads(line) for line in (tmp / "trace.jsonl").read_text().splitlines()]
    interruptions = [r for r in records if r["type"] == "interruption"]
    heard = loud_segments(audio)  # seconds into the recording
    segments = [(t0 + a, t0 + b) for a, b in heard]
    # Silence inside what the speaker played (the chime and the answers): where it ran
    # dry, whatever the underrun counter (whose notices come late) says.
    gaps_ms = sum(heard_and_gaps_ms(audio, s)[1] for s in heard)
    speaker_ms = []
    for r in interruptions:
        # The answer that was playing when speech_started arrived: its segment ends after.
        ends = [b for a, b in segments if a < r["at_s"] < b + 0.2]
        if ends:
            speaker_ms.append((ends[0] - r["at_s"]) * 1000)
    turns = summary["turns"]
    # The person stops talking -> the answer starts at the speaker: what the user waits
    # for, batching and the service's VAD silence included (the repeater's answer opens with
    # the prefix padding's quiet, so its first loud sample is that much after its start).
    voice_to_voice = []
    for end in question_ends:
        onsets = [a for a, _ in segments if a > end]
        if onsets:
            voice_to_voice.append((onsets[0] - end) * 1000 - PREFIX_MS)
    # The person starts talking over the answer -> the answer stops at the speaker: the
    # whole barge-in (paplay's own start-up, batching and the service's VAD included).
    barge_in = []
    for start in interruption_starts:
        ends = [b for a, b in segments if a < start < b]
        if ends:
            barge_in.append((ends[0] - start) * 1000)
    client_int = [t["interrupt_latency_ms"] for t in turns if t["interrupt_latency_ms"]]
    first = [t["first_audio_latency_ms"] for t in turns if t["first_audio_latency_ms"]]
    cpu = 100.0 * summary["cpu_s"] / summary["elapsed_s"]
    used = sorted(sampler.since_mark().items(), key=lambda x: -x[1])
    duplex_s = sum(v for _, v in used)
    duplex = 100.0 * duplex_s / sampler.wall_since_mark
    duplex_switches = sampler.switches_per_s()

    def fmt(xs: list[float]) -> str:
        if not xs:
            return "n/a"
        return f"median {statistics.median(xs):.1f} ms, max {max(xs):.1f} ms (n={len(xs)})"

    print(
        f"rounds: {args.rounds}; backend {summary['audio_backend']}; {args.block_ms} ms blocks; "
        f"uplink batches {args.uplink_batch_ms} ms quiet ({args.idle_batch_ms} ms idle), "
        f"{args.speech_batch_ms} ms speech ({args.talk_batch_ms} ms talking alone) "
        f"({summary['mic_blocks_sent']} mic blocks in "
        f"{summary['mic_messages_sent']} sends); "
        f"output latency reported: {summary['output_latency_ms']} ms"
    )
    print(f"interrupt latency, client-side (goal <= 25 ms): {fmt(client_int)}")
    print(f"interrupt latency, at the speaker, upper bound: {fmt(speaker_ms)}")
    print(f"first-audio latency, client-side (goal <= 50 ms): {fmt(first)}")
    print(
        f"barge-in at the speaker (the person's first sound, as paplay starts, to the "
        f"answer's end): {fmt(barge_in)}"
    )
    print(
        f"voice to voice at the speaker (question's end to the answer's first audio, the "
        f"service's 500 ms of VAD silence included): {fmt(voice_to_voice)}"
    )
    print(
        f"client CPU per second of duplex audio (all threads, the conversation rounds): "
        f"{duplex_s:.3f} s over {sampler.wall_since_mark:.1f} s = {duplex:.2f}% of one core "
        f"(goal <= 1%); {duplex_switches:.0f} context switches a second"
    )
    print(
        f"client CPU listening to a quiet room (nobody talks, nothing plays): "
        f"{idle_s:.3f} s over {idle_wall:.1f} s = {idle:.2f}% of one core; "
        f"{idle_switches:.0f} context switches a second"
    )
    print(
        f"client CPU of the whole run (chime and connection included): "
        f"{summary['cpu_s']:.3f} s over {summary['elapsed_s']:.1f} s = {cpu:.2f}%"
    )
    print(f"this machine: an asyncio loop woken 50 times a second uses {wakeup_cost:.2f}%")
    print(
        f"floor: a bare 20 ms mic -> WebSocket client (sounddevice + websockets, no "
        f"playback, no processing) uses {floor:.2f}%; the client is {duplex / floor:.1f}x that"
    )
    by_thread = ", ".join(f"{k} {v:.2f} s" for k, v in used if v > 0)
    print(f"client CPU by thread from session.created on: {by_thread}")
    print(
        f"silence inside what the speaker played: {gaps_ms:.0f} ms in all; "
        f"underruns {summary['underflows']}, overruns {summary['overflows']}, "
        f"mic blocks dropped {summary['mic_blocks_dropped']}"
    )
    shutil.rmtree(tmp, ignore_errors=True)
    os.sys.stdout.flush()


if __name__ == "__main__":
    main()
