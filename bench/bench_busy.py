"""Self-interruptions, underruns and residual echo of `pivoicectl run` on a busy machine.

Run: .venv/bin/python bench/bench_busy.py [--rounds 6] [--conditions quiet,busy,busy-rt]
     [--same-room] [--spinners 2] [--local] [-- RUN OPTIONS]

Why: a Pi running other services is often busy, and with other jobs on both cores the
barge-in integration test once heard the assistant interrupt itself early in an answer.
This bench runs the barge-in scenario in the simulated room (after `setup`, so through
source_ec) against the repeater server in its own `pivoicectl local-server` process
(`--local`: inside run's process, as the integration test has it), under each condition
in turn, each in a new room unless `--same-room` (then what an earlier condition did to
the echo canceller carries over: graph xruns without realtime leave it cancelling worse
until PipeWire restarts):

* quiet: nothing else runs; the room's PipeWire daemons as they start;
* busy: two processes (`--spinners`) spin on the CPU at normal priority, and the room's PipeWire,
  WirePlumber and pipewire-pulse run with no realtime priority at all (every thread
  SCHED_OTHER, nice 0: a Pi with neither rtkit nor rtprio limits for the user);
* busy-rt: the same load, with the daemons' data-loop threads at SCHED_FIFO and the
  main threads at nice -11, what libpipewire-module-rt gives them when it may (88 for
  pipewire, 83 for the others, its defaults);
* busy-nice: the same load and realtime daemons, the client `run` at nice -11 too.

Per round a simulated person asks for `--question-s` seconds, talks over the answer
`--barge-after-s` into it for 1 s, and the repeater answers that too: two answers a
round, one interrupted by the person, one heard out. Figures per condition:

* self-interruptions: answers interrupted (speech_started or a local barge-in) while
  the person was not talking, of all answers; and spurious turns (speech_started with
  nobody talking, whether or not an answer was playing);
* underruns, overruns and mic blocks dropped, from run's --json summary; graph xruns,
  the ERR count pw-top shows per node (the graph, echo canceller included, not done in
  time);
* residual echo in source_ec while the assistant talks and nobody else does (20 ms
  frames of a recording of source_ec, where a recording of sim_speaker.monitor is loud
  and the person is silent): median and 99th percentile in dBFS, the loudest 60 ms
  (what the repeater's VAD needs to start a turn: `vad_min_speech_ms` above
  `vad_min_level_dbfs`) and the longest run above that level, for the first 0.3 s of
  every answer (which the client sends as silence, `onset_mute_ms`), 0.3-1 s, and the
  rest.

The room's daemons are set with sched_setscheduler on their threads (pids from the
room's instance.json), which needs CAP_SYS_NICE (root, as on the development VM).

`--quick` is a smoke run (one round, the busy-rt condition): what
tests/integration/test_benches.py runs. Its figures say nothing beyond "the bench still
works".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_guard import Room
from bench.bench_run import StampedRecorder
from pivoicectl.dsp.levels import frame_levels_dbfs
from pivoicectl.realtime.edges.trace_file import read_trace
from pivoicectl.sim import instance
from pivoicectl.sim.room import RoomSettings
from pivoicectl.standin.settings import DEFAULT_SETTINGS
from pivoicectl.system.scheduling import thread_scheduling
from tests.integration.test_run import RunProcess, voiced_wav

RATE = 48_000
FRAME_S = 0.020
WINDOWS = (("first 0.3 s", 0.0, 0.3), ("0.3-1 s", 0.3, 1.0), ("after 1 s", 1.0, 1e9))
"""Spans of an answer the residual is reported for: the first 0.3 s is what the client
sends as silence (`onset_mute_ms`); the canceller's leak after a quiet spell fades in
the next."""
SPINNER = "while True: pass"

CONDITIONS = {
    "quiet": (0, None, 0),
    "busy": (2, False, 0),
    "busy-rt": (2, True, 0),
    "busy-nice": (2, True, -11),
}
"""name -> (spinning processes, daemons realtime (None: as they start), nice of run)."""

RT_PRIO = {"pipewire": 88, "wireplumber": 83, "pipewire-pulse": 83}
"""libpipewire-module-rt's defaults for the daemons' data loops (pipewire.conf and
pipewire-pulse.conf of PipeWire 1.4; WirePlumber takes the client default)."""
RT_NICE = -11


def set_daemons_realtime(paths: instance.SimPaths, on: bool) -> None:
    """Every thread of the room's daemons: data loops SCHED_FIFO at module-rt's priority
    and the others at nice -11 (`on`), or all SCHED_OTHER at nice 0 (off)."""
    pids = instance.read_instance(paths).get("pids", {})
    for name, pid in pids.items():
        for t in thread_scheduling(pid):
            # A data loop: "data-loop.0" from PipeWire 1.0 on; in 0.3 the one thread
            # besides the main one that carries the daemon's own name.
            data_loop = t.name.startswith("data-loop") or (t.tid != pid and t.name == name)
            with contextlib.suppress(ProcessLookupError):
                if on and data_loop:
                    os.sched_setscheduler(t.tid, os.SCHED_FIFO, os.sched_param(RT_PRIO[name]))
                else:
                    os.sched_setscheduler(t.tid, os.SCHED_OTHER, os.sched_param(0))
                    os.setpriority(os.PRIO_PROCESS, t.tid, RT_NICE if on else 0)


def daemons_scheduling(paths: instance.SimPaths) -> str:
    """How the room's daemons are scheduled, e.g. 'pipewire data-loop.0 FIFO 88'."""
    parts = []
    for name, pid in instance.read_instance(paths).get("pids", {}).items():
        rt = [t for t in thread_scheduling(pid) if t.realtime]
        nice = {t.nice for t in thread_scheduling(pid) if not t.realtime}
        what = ", ".join(f"{t.name} {t.policy.removeprefix('SCHED_')} {t.rt_priority}" for t in rt)
        parts.append(f"{name} {what or 'no realtime thread'} (others nice {min(nice, default=0)})")
    return "; ".join(parts)


def graph_errors(env: dict[str, str]) -> dict[str, int]:
    """Per node of the room's graph, the ERR count pw-top shows: the cycles it was not
    ready in time (an xrun), i.e. the graph, echo canceller included, falling behind."""
    out = subprocess.run(
        ["pw-top", "-b", "-n", "2"], env=env, capture_output=True, text=True, timeout=20
    ).stdout
    errors: dict[str, int] = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 10 or not fields[1].isdigit() or not fields[8].isdigit():
            continue
        errors[fields[-1]] = int(fields[8])  # the second listing overwrites the first
    return errors


@dataclass
class Result:
    condition: str
    answers: int = 0
    expected_answers: int = 0
    self_interruptions: int = 0
    spurious_turns: int = 0
    person_barge_ins: int = 0
    underflows: int = 0
    overflows: int = 0
    mic_blocks_dropped: int = 0
    residual: dict[str, dict[str, float]] = field(default_factory=dict)
    scheduling: str = ""
    run_nice: int = 0
    self_at_s: list[float] = field(default_factory=list)
    """How far into its answer each self-interruption came (s)."""
    xruns: dict[str, int] = field(default_factory=dict)
    """Graph nodes that fell behind during the condition, and how often."""


def _talking(t: float, person: list[tuple[float, float]], after_s: float = 1.0) -> bool:
    """Whether a turn event at `t` can be the person's: from their first sound to
    `after_s` after their last (the server's verdict comes that much later at most)."""
    return any(a - 0.05 <= t <= b + after_s for a, b in person)


def _longest_loud_ms(levels: np.ndarray, mask: np.ndarray, floor_dbfs: float) -> float:
    """The longest run of consecutive masked frames above `floor_dbfs`, in ms."""
    best = run = 0
    for loud in (levels > floor_dbfs) & mask:
        run = run + 1 if loud else 0
        best = max(best, run)
    return best * FRAME_S * 1000


def residual_echo(
    ec: np.ndarray,
    ec_t0: float,
    speaker: np.ndarray,
    speaker_t0: float,
    person: list[tuple[float, float]],
    answer_starts: list[float],
) -> dict[str, float]:
    """Levels of source_ec in 20 ms frames where only the assistant sounds (see the
    module docstring), per span of WINDOWS: {span: {frames, median, p99, max60 (the
    loudest 60 ms run's quietest frame), above_vad_ms (the longest run above the
    repeater's least start level)}}."""
    n = int(RATE * FRAME_S)
    ec_db = frame_levels_dbfs(ec, n)
    spk_db = frame_levels_dbfs(speaker, n)
    times = ec_t0 + np.arange(len(ec_db)) * FRAME_S  # each ec frame's start
    delay_s = RoomSettings().delay_ms / 1000
    # The speaker frame whose sound reaches the mic in this ec frame (and its neighbours,
    # so the echo of an answer's last frame is not taken for silence).
    idx = np.round((times - delay_s - speaker_t0) / FRAME_S).astype(int)
    loud = np.zeros(len(ec_db), dtype=bool)
    for shift in (-1, 0, 1):
        j = np.clip(idx + shift, 0, len(spk_db) - 1)
        ok = (idx + shift >= 0) & (idx + shift < len(spk_db))
        loud |= ok & (spk_db[j] > -45.0)
    quiet_person = np.ones(len(ec_db), dtype=bool)
    for a, b in person:
        quiet_person &= ~((times >= a - 0.1) & (times <= b + 0.4))
    only_assistant = loud & quiet_person
    # Time since the latest answer onset, for every frame.
    since = np.full(len(ec_db), np.inf)
    for s in sorted(answer_starts):
        since = np.where(times >= s, times - s, since)
    floor = DEFAULT_SETTINGS.vad_min_level_dbfs
    out: dict[str, dict[str, float]] = {}
    for span, lo, hi in WINDOWS:
        mask = only_assistant & (since >= lo) & (since < hi)
        levels = ec_db[mask]
        r = out[span] = {"frames": float(len(levels))}
        if len(levels) == 0:
            continue
        r["median"] = float(np.median(levels))
        r["p99"] = float(np.percentile(levels, 99))
        runs = np.lib.stride_tricks.sliding_window_view(np.where(mask, ec_db, -200.0), 3)
        r["max60"] = float(np.max(np.min(runs, axis=1)))
        r["above_vad_ms"] = _longest_loud_ms(ec_db, mask, floor)
    return out


def answer_onsets(speaker: np.ndarray, speaker_t0: float, after: list[float]) -> list[float]:
    """Per time in `after` (a response_created seen by the bench): when the speaker first
    turned loud after it, on the recordings' clock, plus the room's delay to the mic."""
    n = int(RATE * FRAME_S)
    loud = frame_levels_dbfs(speaker, n) > -45.0
    delay_s = RoomSettings().delay_ms / 1000
    out = []
    for t in after:
        i0 = max(0, int((t - 0.5 - speaker_t0) / FRAME_S))
        hits = np.flatnonzero(loud[i0:])
        if len(hits):
            out.append(speaker_t0 + (i0 + hits[0]) * FRAME_S + delay_s)
    return out


class Spinners:
    """`count` processes spinning on the CPU at normal priority, stopped by their pids."""

    def __init__(self, count: int) -> None:
        self.procs = [
            subprocess.Popen([sys.executable, "-c", SPINNER], stdin=subprocess.DEVNULL)
            for _ in range(count)
        ]

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(10)


def run_condition(
    room: Room, name: str, rounds: int, args: argparse.Namespace, tmp: Path
) -> Result:
    spinners_n, realtime, run_nice = CONDITIONS[name]
    if spinners_n and args.spinners is not None:
        spinners_n = args.spinners
    result = Result(name, expected_answers=2 * rounds, run_nice=run_nice)
    if realtime is not None:
        set_daemons_realtime(room.paths, realtime)
    result.scheduling = daemons_scheduling(room.paths)
    question = voiced_wav(tmp / "q.wav", args.question_s, f0=140)
    interruption = voiced_wav(tmp / "i.wav", 1.0, f0=200)
    trace = tmp / f"trace-{name}.jsonl"
    errors_before = graph_errors(room.env)
    spinners = Spinners(spinners_n)
    ec = StampedRecorder(room.env, "source_ec")
    speaker = StampedRecorder(room.env, "sim_speaker.monitor")
    server = ["--local"] if args.local else ["--url", room.url]
    run = RunProcess(
        room.env,
        trace,
        *server,
        "--duration",
        str(rounds * (args.question_s + args.barge_after_s + 12) + 30),
        *args.run_args,
    )
    if run_nice:
        os.setpriority(os.PRIO_PROCESS, run.proc.pid, run_nice)
    person: list[tuple[float, float]] = []
    created_seen: list[float] = []

    def play(wav: Path) -> None:
        start = time.monotonic()
        room.play(wav)
        person.append((start, time.monotonic()))

    def created() -> int:
        return sum(r["type"] == "response_created" for r in run.records())

    def next_answer(after: int, timeout_s: float) -> None:
        """Until more than `after` answers were created; note when the bench saw it.
        (One read of the trace a poll: the bench competes for the same CPUs.)"""
        deadline = time.monotonic() + timeout_s
        while created() <= after:
            if time.monotonic() > deadline or run.proc.poll() is not None:
                raise RuntimeError(f"[{name}] no answer {after + 1} within {timeout_s:g} s")
            time.sleep(0.05)
        created_seen.append(time.monotonic())

    summary: dict = {}
    try:
        run.wait_for(lambda r: r["type"] == "session", 20, "session")
        time.sleep(1.0)  # past the ready chime
        for _ in range(rounds):
            before = created()
            play(question)
            next_answer(before, 15)
            time.sleep(args.barge_after_s)
            before = created()
            play(interruption)
            next_answer(before, 15)
            # The answer to the interruption (1 s) plays out; then a pause.
            time.sleep(1.0 + 0.3 + 1.5)
        errors_after = graph_errors(room.env)  # while run's own streams still exist
        run.proc.terminate()
        out, err = run.proc.communicate(timeout=30)
        if run.proc.returncode != 0 or "Traceback" in err:
            raise RuntimeError(f"run failed ({run.proc.returncode}):\n{err[-2000:]}")
        summary = json.loads(out)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.communicate(timeout=10)
        ec_audio, ec_t0 = ec.stop()
        speaker_audio, speaker_t0 = speaker.stop()
        spinners.stop()
    result.xruns = {
        node: n - errors_before.get(node, 0)
        for node, n in errors_after.items()
        if n > errors_before.get(node, 0)
    }
    records = read_trace(trace)
    starts = answer_onsets(speaker_audio, speaker_t0, created_seen)
    result.answers = sum(r["type"] == "response_created" for r in records)
    for r in records:
        at = r.get("at_s")
        if r["type"] == "speech_started" and not _talking(at, person):
            result.spurious_turns += 1
        # Every barge-in while an answer plays makes an interruption record (server or
        # device-side); between sessions a local one is only a local_barge_in.
        if r["type"] == "interruption" or (r["type"] == "local_barge_in" and "session" in r):
            if _talking(at, person):
                result.person_barge_ins += 1
            else:
                result.self_interruptions += 1
                began = [s for s in starts if s <= at]
                result.self_at_s.append(round(at - began[-1], 2) if began else float("nan"))
    result.underflows = summary.get("underflows", 0)
    result.overflows = summary.get("overflows", 0)
    result.mic_blocks_dropped = summary.get("mic_blocks_dropped", 0)
    result.residual = residual_echo(ec_audio, ec_t0, speaker_audio, speaker_t0, person, starts)
    return result


def fmt_db(r: dict[str, float]) -> str:
    if not r.get("frames"):
        return "no frames"
    return (
        f"median {r['median']:.1f}, p99 {r['p99']:.1f}, loudest 60 ms {r['max60']:.1f} dBFS; "
        f"longest run above {DEFAULT_SETTINGS.vad_min_level_dbfs:.0f} dBFS "
        f"{r['above_vad_ms']:.0f} ms ({r['frames']:.0f} frames)"
    )


def report(r: Result) -> None:
    nice = f"; run at nice {r.run_nice}" if r.run_nice else ""
    print(f"[{r.condition}] daemons: {r.scheduling}{nice}")
    where = f" (at {', '.join(f'{s:.2f}' for s in r.self_at_s)} s into the answer)"
    print(
        f"[{r.condition}] self-interruptions: {r.self_interruptions} of {r.answers} answers"
        f"{where if r.self_at_s else ''}; spurious turns {r.spurious_turns}; "
        f"barge-ins by the person {r.person_barge_ins} of {r.expected_answers // 2}"
    )
    print(
        f"[{r.condition}] underruns {r.underflows}, overruns {r.overflows}, "
        f"mic blocks dropped {r.mic_blocks_dropped}; graph xruns (pw-top ERR) "
        + (", ".join(f"{k} {v}" for k, v in sorted(r.xruns.items())) or "none")
    )
    for span, _, _ in WINDOWS:
        print(f"[{r.condition}] residual echo, {span}: {fmt_db(r.residual[span])}")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6, help="two answers a round")
    ap.add_argument("--conditions", default="quiet,busy,busy-rt", help=", ".join(CONDITIONS))
    ap.add_argument("--question-s", type=float, default=4.0)
    ap.add_argument("--barge-after-s", type=float, default=2.5)
    ap.add_argument("--spinners", type=int, help="busy processes (default 2)")
    ap.add_argument(
        "--local", action="store_true", help="run --local: the repeater inside run's process"
    )
    ap.add_argument(
        "--same-room",
        action="store_true",
        help="run the conditions one after the other in one room (what an earlier "
        "condition did to the echo canceller carries over)",
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: one round, busy-rt")
    ap.add_argument(
        "run_args", nargs="*", help="more `run` options after --, e.g. -- --echo-guard gate"
    )
    args = ap.parse_args()
    names = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if args.quick:
        args.rounds, names = 1, ["busy-rt"]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        ap.error(f"unknown condition {unknown[0]}: one of {', '.join(CONDITIONS)}")
    tmp = Path(tempfile.mkdtemp(prefix="pv-bench-busy-"))
    print(
        f"barge-in scenario, {args.rounds} rounds of a {args.question_s:g} s question, "
        f"interrupted {args.barge_after_s:g} s into its answer, per condition; "
        f"{os.cpu_count()} CPUs; busy: {args.spinners or 2} spinning processes; "
        f"repeater {'inside run (--local)' if args.local else 'in its own process'}; "
        f"run options: {' '.join(args.run_args) or '(defaults)'}; "
        + ("one room for all conditions" if args.same_room else "a new room per condition")
    )
    results = []
    room = None
    try:
        for name in names:
            if room is None or not args.same_room:
                if room is not None:
                    room.close()
                room = None  # a failed start must not be closed twice
                room = Room(aec=True)
            results.append(run_condition(room, name, args.rounds, args, tmp))
            report(results[-1])
    finally:
        if room is not None:
            room.close()
        shutil.rmtree(tmp, ignore_errors=True)
    total = sum(r.self_interruptions for r in results)
    answers = sum(r.answers for r in results)
    print(
        f"self-interruptions in all: {total} of {answers} answers "
        f"(median {statistics.median([r.self_interruptions for r in results]):g} a condition)"
    )


if __name__ == "__main__":
    main()
