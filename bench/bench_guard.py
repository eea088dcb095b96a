"""Local barge-in latency and echo-guard false interrupts of `pivoicectl run`, in the
simulated room.

Run: .venv/bin/python bench/bench_guard.py [--rounds 3] [--speech-s 60]

Part 1, barge-in latency (room with `setup`, so source_ec): the repeater answers on
loopback, where its VAD's verdict comes back at once, so it is also reached through a
relay adding `--rtt-ms` of network round trip (default 80 ms, a good home line to a
cloud region); per round a simulated
person asks for 3 s, then talks over the repeater's answer 1.5 s into it. The latency is
from the person's speech onset in the simulated microphone (a stamped recording of
sim_mic) to the speaker falling silent (a stamped recording of sim_speaker.monitor),
both on CLOCK_MONOTONIC (each recorder's anchor is an upper bound, see bench_run.py),
for `--barge-in local` next to the default server VAD. Goal for local: <= 150 ms.

Part 2, false interrupts (room without `setup`: no echo canceller, the raw mic): the
person asks for `--speech-s` seconds in total and the repeater says it back; every
interruption of an answer nobody talked over is false. Counted for `--echo-guard off`,
`gate` and `vad-gate`.

`--barge-in-threshold N` tries another local trigger; PV_BENCH_DUMP=/tmp/x saves the
latency recordings as /tmp/x-<mode>.npz for a look at the signals.

`--quick` is a smoke run of both parts (what tests/integration/test_benches.py runs):
one round of local barge-in over the relay, and one 4 s question with `--echo-guard
gate`. Its figures say nothing beyond "the bench still works".
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_run import StampedRecorder, free_port
from pivoicectl.realtime.edges.trace_file import read_trace
from pivoicectl.sim import instance
from pivoicectl.sim.room import RoomSettings
from tests.conftest import clean_env, run_cli
from tests.integration.relay import DelayRelay
from tests.integration.test_run import RunProcess, loud_segments, voiced_wav

RATE = 48_000


class Room:
    """A private simulated room with the repeater server as its own process."""

    def __init__(self, aec: bool) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pvsim-guard-", dir="/tmp"))
        self.paths = instance.SimPaths(self.root)
        instance.up(self.paths, RoomSettings())
        self.env = clean_env(**instance.environment(self.paths), OPENAI_API_KEY="bench-key")
        if aec:
            run_cli("setup", "--json", env=self.env, check=True)
        self.port = free_port()
        self.server = subprocess.Popen(
            [sys.executable, "-m", "pivoicectl", "local-server", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.server.stdout is not None
        self.server.stdout.readline()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def play(self, wav: Path) -> None:
        subprocess.run(["paplay", "-d", "sim_air", str(wav)], env=self.env, check=True)

    def close(self) -> None:
        self.server.terminate()
        self.server.wait(10)
        instance.down(self.paths, remove=False)
        shutil.rmtree(self.root, ignore_errors=True)


def align_mic(speaker: np.ndarray, s0: float, mic: np.ndarray, m0: float) -> float:
    """The mic recording's start time on the speaker recording's clock: the lag (within
    +-1.5 s of what the anchors say) that best lines the mic's echo up with the speaker,
    minus the room's speaker-to-mic delay."""
    delay_s = RoomSettings().delay_ms / 1000
    n = 1 << int(np.ceil(np.log2(len(speaker) + len(mic))))
    corr = np.fft.irfft(np.fft.rfft(mic, n) * np.conj(np.fft.rfft(speaker, n)), n)
    guess = round((s0 + delay_s - m0) * RATE)  # mic index of speaker index 0
    span = int(1.5 * RATE)
    lags = np.arange(guess - span, guess + span)
    best = int(lags[np.argmax(corr[lags % n])])
    return s0 + delay_s - best / RATE


def onset_times(
    mic: np.ndarray, t0: float, after: list[float], rise_db: float = 6.0
) -> list[float]:
    """Per time in `after`: the start of the first 5 ms frame of the mic recording, from
    0.2 s before it on, that is `rise_db` above the 80th percentile of the 300 ms before
    it (the person's onset over the echo of the answer)."""
    n = int(RATE * 0.005)
    frames = mic[: len(mic) // n * n].reshape(-1, n).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    out = []
    for t in after:
        i0 = max(60, int((t - 0.2 - t0) / 0.005))
        for i in range(i0, len(level)):
            if level[i] > max(float(np.percentile(level[i - 60 : i], 80)), -70) + rise_db:
                out.append(t0 + i * 0.005)
                break
    return out


def latency_round(
    room: Room, mode: str, rounds: int, tmp: Path, url: str, misses: list[str] | None = None
) -> list[float]:
    """Onset-to-silence latencies (ms) of `rounds` interruptions with --barge-in `mode`;
    why a round gave no figure is appended to `misses`."""
    question = voiced_wav(tmp / "q.wav", 3.0, f0=140)
    interruption = voiced_wav(tmp / "i.wav", 1.0, f0=200)
    speaker = StampedRecorder(room.env, "sim_speaker.monitor")
    mic = StampedRecorder(room.env, "sim_mic")
    run = RunProcess(
        room.env,
        tmp / f"trace-{mode}-{time.monotonic_ns()}.jsonl",
        "--url",
        url,
        "--barge-in",
        mode,
        "--max-turns",
        str(2 * rounds),
        "--duration",
        str(15 * rounds + 20),
    )
    starts: list[float] = []
    try:
        run.wait_for(lambda r: r["type"] == "session", 20, "session")
        time.sleep(0.5)
        for k in range(rounds):
            room.play(question)
            run.wait_for_answers(2 * k + 1, 10)
            time.sleep(1.5)
            starts.append(time.monotonic())
            room.play(interruption)
            run.wait_for(lambda r, k=k: r["type"] == "turn" and r["turn"] == 2 * k + 2, 15, "turn")
            time.sleep(0.5)
        run.finish(timeout_s=30)
    finally:
        speaker_audio, s0 = speaker.stop()
        mic_audio, m0 = mic.stop()
    # Put the mic recording on the speaker recording's time line by the answer's echo
    # (the room's speaker-to-mic delay is exact), not by the two recorders' anchors.
    m0 = align_mic(speaker_audio, s0, mic_audio, m0)
    onsets = onset_times(mic_audio, m0, starts)
    if os.environ.get("PV_BENCH_DUMP"):
        np.savez(
            os.environ["PV_BENCH_DUMP"] + f"-{mode}.npz",
            speaker=speaker_audio,
            s0=s0,
            mic=mic_audio,
            m0=m0,
            starts=starts,
            onsets=onsets,
        )
    ends = [s0 + b for _, b in loud_segments(speaker_audio)]
    out = []
    if misses is not None and len(onsets) < len(starts):
        misses.append(
            f"{mode}: {len(starts) - len(onsets)} of {len(starts)} onsets not found in "
            f"{len(mic_audio) / RATE:.1f} s of mic recording (starts at "
            f"{', '.join(f'{t - m0:.2f}' for t in starts)} s into it)"
        )
    for onset in onsets:
        after = [e for e in ends if e > onset]
        if after and after[0] - onset < 2.0:
            out.append((after[0] - onset) * 1000)
        elif misses is not None:
            misses.append(
                f"{mode}: the speaker did not fall silent within 2 s of the onset at "
                f"{onset - s0:.2f} s ({len(speaker_audio) / RATE:.1f} s recorded; loud "
                f"segments end at {', '.join(f'{e - s0:.2f}' for e in ends[:8])} s)"
            )
    return out


def false_interrupts(
    room: Room, guard: str, speech_s: float, tmp: Path, chunk_s: float = 10.0
) -> dict:
    """Ask for `speech_s` seconds in `chunk_s` questions; count answers cut short."""
    questions = max(1, round(speech_s / chunk_s))
    question = voiced_wav(tmp / "long.wav", chunk_s, f0=140)
    trace = tmp / f"trace-{guard}.jsonl"
    run = RunProcess(
        room.env,
        trace,
        "--url",
        room.url,
        "--echo-guard",
        guard,
        "--duration",
        str(questions * (2 * chunk_s + 4) + 15),
    )
    run.wait_for(lambda r: r["type"] == "session", 20, "session")
    time.sleep(0.5)
    for _ in range(questions):
        room.play(question)
        time.sleep(chunk_s + 3.0)  # the answer (as long as the question), then a pause
    run.proc.terminate()
    run.proc.communicate(timeout=20)
    records = read_trace(trace)
    interruptions = [r for r in records if r["type"] == "interruption"]
    audio_ms = sum(r.get("audio_received_ms") or 0 for r in records if r["type"] == "turn")
    return {
        "guard": guard,
        "questions": questions,
        "answers": sum(r["type"] == "response_created" for r in records),
        "false_interrupts": len(interruptions),
        "assistant_audio_s": round(audio_ms / 1000, 1),
    }


def fmt(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    return f"median {statistics.median(xs):.0f} ms, max {max(xs):.0f} ms (n={len(xs)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--speech-s", type=float, default=60.0)
    ap.add_argument("--rtt-ms", type=float, default=80.0, help="network round trip to emulate")
    ap.add_argument("--barge-in-threshold", type=int, help="local: speech frames to trigger")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-guard", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a smoke run: one of each, short")
    args = ap.parse_args()
    modes = ["server-loopback", "server-relay", "local-relay"]
    guards = ["off", "gate", "vad-gate"]
    chunk_s = 10.0
    if args.quick:
        args.rounds, args.speech_s, chunk_s = 1, 4.0, 4.0
        modes, guards = ["local-relay"], ["gate"]
    tmp = Path(tempfile.mkdtemp(prefix="pv-bench-guard-"))
    if not args.skip_latency:
        room = Room(aec=True)
        if args.barge_in_threshold:
            room.env["PIVOICECTL_BARGE_IN_THRESHOLD"] = str(args.barge_in_threshold)
        try:
            with DelayRelay(room.url, args.rtt_ms / 2) as relay:
                for key, mode, url, where in (
                    ("server-loopback", "server", room.url, "loopback"),
                    ("server-relay", "server", relay.base_url, f"{args.rtt_ms:g} ms RTT"),
                    ("local-relay", "local", relay.base_url, f"{args.rtt_ms:g} ms RTT"),
                ):
                    if key not in modes:
                        continue
                    xs = latency_round(room, mode, args.rounds, tmp, url)
                    goal = " (goal <= 150 ms)" if mode == "local" else ""
                    print(
                        f"barge-in {mode} ({where}): speech onset -> speaker silent{goal}: "
                        f"{fmt(xs)}"
                    )
                    sys.stdout.flush()
        finally:
            room.close()
    if not args.skip_guard:
        room = Room(aec=False)
        try:
            for guard in guards:
                r = false_interrupts(room, guard, args.speech_s, tmp, chunk_s)
                print(
                    f"echo guard {guard}: {r['false_interrupts']} false interrupt(s) over "
                    f"{r['questions']} answer(s) of about {args.speech_s / r['questions']:.0f} s "
                    f"({r['answers']} answers started, {r['assistant_audio_s']} s received)"
                )
                sys.stdout.flush()
        finally:
            room.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
