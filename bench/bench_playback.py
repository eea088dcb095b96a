"""The speaker side of `run`'s audio edge alone: first audio and interrupt at the speaker.

Run: .venv/bin/python bench/bench_playback.py [--rounds 10] [--audio-backend portaudio]

No server and no conversation: a private simulated room, the real audio edge (libpulse
`PulseAudioEdge` by default, or PortAudio's `SoundDeviceAudio`) and `PlaybackQueue`, and a
stamped recording of sim_speaker.monitor (see
bench_run.StampedRecorder: sample times are upper bounds, so latencies computed from
them are too). Each round, with the output stream stopped (idle for more than
`idle_stop_s`), a 1 s tone is queued at T_push and interrupted (`PlaybackQueue.interrupt`,
what a barge-in calls) at T_int = T_push + 0.6 s. Printed:

* first audio at the speaker: tone onset in the recording minus T_push (goal for first
  delta to audible: <= 50 ms), next to what the client itself estimates
  (`PlayReport.audible_s` of the first block);
* interrupt at the speaker: tone end in the recording minus T_int (goal <= 25 ms), next
  to the client's estimate (the silent report after the abort);
* the truncation error: the truncate's audio_end_ms minus the tone heard at the speaker;
* the mic timeline against the speaker's: the end of the first mic block loud with the
  tone's echo (the room has no canceller here: the raw mic is the default), on the time
  the edge says it was recorded (arrival minus its age), minus the tone's `audible_s`.
  Both timelines are right when the room's speaker-to-mic delay falls inside that block
  (end minus one block to end): the onset mute and the echo guard compare the two;

The recorder's anchor is good to a few milliseconds: it read about -2 ms for the
abort, which cannot truly be below 0. CPU is bench_run.py's business (the recorder
thread runs in this process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_run import StampedRecorder
from pivoicectl.dsp.levels import pcm16_dbfs
from pivoicectl.realtime.edges.portaudio import SoundDeviceAudio
from pivoicectl.realtime.edges.pulse import PulseAudioEdge
from pivoicectl.realtime.protocol.events import SAMPLE_RATE_HZ
from pivoicectl.realtime.session.playback import PlaybackQueue
from pivoicectl.sim import instance
from pivoicectl.sim.room import RoomSettings
from tests.conftest import clean_env
from tests.integration.test_run import heard_and_gaps_ms, loud_segments


def tone(seconds: float) -> bytes:
    t = np.arange(int(SAMPLE_RATE_HZ * seconds)) / SAMPLE_RATE_HZ
    return (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()


async def push_paced(playback: PlaybackQueue, k: int, pcm: bytes, chunk_ms: int) -> None:
    """Queue `pcm` in `chunk_ms` pieces at exactly real time, as the repeater server streams."""
    step = chunk_ms * SAMPLE_RATE_HZ // 1000 * 2
    t0 = time.monotonic()
    for i, offset in enumerate(range(0, len(pcm), step)):
        await asyncio.sleep(max(0.0, t0 + i * chunk_ms / 1000 - time.monotonic()))
        playback.push(f"item{k}", f"resp{k}", pcm[offset : offset + step])


async def rounds(
    audio: SoundDeviceAudio | PulseAudioEdge,
    playback: PlaybackQueue,
    n: int,
    play_s: float,
    chunk_ms: int = 0,
) -> list[dict]:
    out = []
    loop = asyncio.get_running_loop()
    mic_blocks: list[tuple[float, float]] = []  # (recorded until, level) per mic block

    def mic(pcm: bytes, age_s: float) -> None:
        mic_blocks.append((time.monotonic() - age_s, pcm16_dbfs(pcm)))

    audio.start(loop, mic)
    await asyncio.sleep(1.0)
    try:
        for k in range(n):
            audio.drain_reports()
            t_push = time.monotonic()
            pusher = None
            if chunk_ms:
                pusher = asyncio.create_task(push_paced(playback, k, tone(play_s + 0.4), chunk_ms))
            else:
                playback.push(f"item{k}", f"resp{k}", tone(play_s + 0.4))
            await asyncio.sleep(play_s)
            t_int = time.monotonic()
            plan = playback.interrupt()
            if pusher is not None:
                pusher.cancel()
            await asyncio.sleep(0.2)
            reports = audio.drain_reports()
            first = next((r for r in reports if r.spans), None)
            echo_end = next((t for t, level in mic_blocks if t > t_push and level > -40.0), None)
            silent = next((r for r in reports if r.callback_s >= t_int and not r.spans), None)
            out.append(
                {
                    "t_push": t_push,
                    "t_int": t_int,
                    "client_first_ms": (first.audible_s - t_push) * 1000 if first else None,
                    "client_silent_ms": (silent.audible_s - t_int) * 1000 if silent else None,
                    "handed_ms": plan.played_samples / SAMPLE_RATE_HZ * 1000 if plan else None,
                    "truncate_ms": plan.audio_end_ms if plan else None,
                    "echo_block_end_ms": (
                        (echo_end - first.audible_s) * 1000 if first and echo_end else None
                    ),
                }
            )
            await asyncio.sleep(getattr(audio, "idle_stop_s", 0.5) + 0.5)  # idle again
    finally:
        audio.stop()
    return out


def fmt(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    return f"median {statistics.median(xs):.1f} ms, max {max(xs):.1f} ms (n={len(xs)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--play-s", type=float, default=0.6, help="tone played before the interrupt")
    ap.add_argument("--output-block-ms", type=int, default=20)
    ap.add_argument("--input-block-ms", type=int, default=20)
    ap.add_argument("--audio-backend", choices=("pulse", "portaudio"), default="pulse")
    ap.add_argument(
        "--chunk-ms",
        type=int,
        default=0,
        help="queue the tone in pieces this long at real time, as the repeater sends (0: at once)",
    )
    ap.add_argument(
        "--relaxed-ms",
        type=int,
        default=0,
        help="how seldom the client lets the libpulse edge tick (100: a quiet room)",
    )
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pvsim-play-", dir="/tmp"))
    paths = instance.SimPaths(root)
    room = RoomSettings()
    instance.up(paths, room)
    env = clean_env(**instance.environment(paths))
    os.environ.update(env)  # PortAudio's pulse device finds the room's server
    try:
        recorder = StampedRecorder(env, "sim_speaker.monitor")
        time.sleep(0.5)
        playback = PlaybackQueue()
        audio: SoundDeviceAudio | PulseAudioEdge
        if args.audio_backend == "pulse":
            audio = PulseAudioEdge(playback, block_ms=args.input_block_ms)
            audio.relaxed_ms = args.relaxed_ms
        else:
            audio = SoundDeviceAudio(
                playback,
                input_block_ms=args.input_block_ms,
                output_block_ms=args.output_block_ms,
            )
        results = asyncio.run(rounds(audio, playback, args.rounds, args.play_s, args.chunk_ms))
        time.sleep(0.3)
        samples, t0 = recorder.stop()
    finally:
        instance.down(paths, remove=False)
        shutil.rmtree(root, ignore_errors=True)
    segments = loud_segments(samples, frame_ms=1.0)
    first_ms, silent_ms, unheard_ms, truncate_err, gaps = [], [], [], [], []
    for r in results:
        mine = [
            s for s in segments if r["t_push"] - 0.05 < t0 + s[0] < r["t_int"] < t0 + s[1] + 0.5
        ]
        if mine:
            first_ms.append((t0 + mine[0][0] - r["t_push"]) * 1000)
            silent_ms.append((t0 + mine[0][1] - r["t_int"]) * 1000)
            # What the speaker played of the tone: its sound, not its span (which also
            # holds any gaps where it ran dry between paced chunks).
            heard_ms, gap_ms = heard_and_gaps_ms(samples, mine[0], frame_ms=1.0)
            gaps.append(gap_ms)
            if r["handed_ms"] is not None:
                unheard_ms.append(r["handed_ms"] - heard_ms)
                truncate_err.append(r["truncate_ms"] - heard_ms)
    print(
        f"backend {args.audio_backend}; "
        f"blocks: output {args.output_block_ms} ms, input {args.input_block_ms} ms; "
        f"output latency reported {audio.output_latency_s * 1000:.1f} ms; "
        f"stream starts {audio.output_starts}, aborts {audio.output_aborts}"
    )
    print(f"first audio at the speaker (goal <= 50 ms): {fmt(first_ms)}")
    print("  each: " + " ".join(f"{x:.0f}" for x in first_ms))
    print(f"  client's estimate: {fmt([r['client_first_ms'] for r in results])}")
    print(f"interrupt at the speaker (goal <= 25 ms): {fmt(silent_ms)}")
    print(f"handed to the device but never heard at the interrupt: {fmt(unheard_ms)}")
    print("  each: " + " ".join(f"{x:.0f}" for x in unheard_ms))
    print(f"  client's estimate: {fmt([r['client_silent_ms'] for r in results])}")
    print(f"truncate minus heard (0 is exact): {fmt(truncate_err)}")
    print("  each: " + " ".join(f"{x:.0f}" for x in truncate_err))
    print(f"gaps in the tone at the speaker (silence while it ran dry): {fmt(gaps)}")
    print("  each: " + " ".join(f"{x:.0f}" for x in gaps))
    block_ms = args.input_block_ms
    echo_ends = [r["echo_block_end_ms"] for r in results if r["echo_block_end_ms"] is not None]
    inside = sum(e - block_ms <= room.delay_ms <= e for e in echo_ends)
    print(
        f"echo on the mic timeline, first loud block's end minus audible_s "
        f"(room delay {room.delay_ms:g} ms, blocks {block_ms} ms): {fmt(echo_ends)}; "
        f"the delay inside that block in {inside} of {len(echo_ends)}"
    )
    print("  each: " + " ".join(f"{x:.0f}" for x in echo_ends))
    print(f"underruns: {audio.underflows}")


if __name__ == "__main__":
    main()
