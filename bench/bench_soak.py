"""Soak of `pivoicectl run`: hundreds of turns in the simulated room, with what a
voice assistant on a shelf meets over days compressed into minutes.

Run: .venv/bin/python bench/bench_soak.py [--turns 200] [--drop-every 20]
     [--restart-every 50] [--barge-every 5] [--renew-after 40]
Quick (the smoke test): --turns 6 --drop-every 3 --restart-every 4 --barge-every 2
     --renew-after 10

A private room, `pivoicectl setup`, the stand-in service (the repeater) on a thread of
this process, and `pivoicectl run --trace --json` as a child process. A simulated person
asks short questions into sim_air with paplay and waits for each answer to be played:
* every `--barge-every` turns it talks over the answer, and the turn counts as answered
  when the answer to what it said over it is played whole;
* every `--drop-every` turns the stand-in drops the connection mid-answer (a network
  cut); once `run` has reconnected and restored the session the person asks again, and
  the turn counts as answered when that is;
* after every `--restart-every` turns PipeWire, WirePlumber and pipewire-pulse restart
  together, and the next question waits until `run` has its audio back;
* `run` renews its session `--renew-after` seconds in (the 55 minutes of the service's
  60-minute limit, scaled down through the bench-only `BENCH_RENEWAL_VAR`); the stand-in
  ends sessions `RENEW_MARGIN_S` later, so a renewal that does not come shows up as the
  service's `session_expired` error.
The stand-in streams answers `--answer-speed` times faster than real time, as the
service does; the speaker plays them in real time, so a turn lasts what its audio lasts.

Figures (with their goals, exit 1 and a `soak failed:` line when one is missed): turns
answered (all), resident memory and open descriptors of the `run` process after turn 10
and at the end (growth under 5 MB, none), session renewals (at least one), and what
the service and the speaker saw (errors, reconnects, underruns).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pivoicectl.commands.run import BENCH_RENEWAL_VAR
from pivoicectl.sim import instance
from pivoicectl.sim.room import RoomSettings
from pivoicectl.standin import LocalServerSettings, LocalServerThread
from pivoicectl.system.wavfile import write_wav

RATE = 48_000
RSS_GROWTH_GOAL_KB = 5 * 1024
RENEW_MARGIN_S = 45.0
"""The stand-in's session limit is this much after `--renew-after`: past `run`'s forced
renewal point (30 s before the limit), so only a renewal that never comes meets it."""
SETTLE_S = 0.5
"""Quiet after a new session or restored audio before the person speaks: the stand-in's
VAD learns the room's noise floor on each connection."""
RENEWAL_GUARD_S = 1.5
"""The person does not start a question this close to a renewal that falls due: `run`
renews at the first moment it thinks idle, and until the service's `speech_started`
comes back (the mic read every 200 ms while idle, its VAD, the round trip: 0.2-0.4 s)
a question that has just begun looks idle too. A renewal there sends the question's
start to the old session; the stand-in's VAD, which calibrates its noise floor on a new
connection's first frame, then never hears the rest. The soak measures the rest of
`run`; that race is one to fix in `run`, not to trip over at random here."""
GAP_S = 0.2
"""Between one answer's end and the next question."""

# Variables that would point a child at the developer's own audio session.
AUDIO_VARS = (
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
    "PULSE_SERVER",
    "PULSE_RUNTIME_PATH",
    "PIPEWIRE_RUNTIME_DIR",
    "PIPEWIRE_REMOTE",
    "DBUS_SESSION_BUS_ADDRESS",
    "PIVOICECTL_SIM_DIR",
    "PIVOICECTL_RESTART_CMD",
    "OPENAI_API_KEY",
)


class SoakAborted(Exception):
    """`run` died or never came back: the soak cannot go on."""


def voiced_wav(path: Path, seconds: float, f0: float) -> Path:
    """A vowel-like question with no pauses (harmonics, vibrato, syllable-rate
    modulation), so the stand-in's VAD takes it as one turn."""
    t = np.arange(int(RATE * seconds)) / RATE
    phase = 2 * np.pi * np.cumsum(f0 + 15 * np.sin(2 * np.pi * 3 * t)) / RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 11))
    wave *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2
    wave *= 0.25 / np.max(np.abs(wave))
    edge = int(0.005 * RATE)
    wave[:edge] *= np.linspace(0, 1, edge)
    wave[-edge:] *= np.linspace(1, 0, edge)
    write_wav(path, wave, RATE)
    return path


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SoakAborted(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class TraceFollower:
    """`run`'s trace read as it grows (only the new lines each time), with the state
    the person needs: answers created and finished, connections, audio lost and back."""

    path: Path
    proc: subprocess.Popen[str]
    renew_after_s: float
    records: list[dict[str, Any]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    """Response ids in the order `response_created` came."""
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)
    """`turn` records by response id: the answer was played (or cut off)."""
    ready: bool = False
    ready_at: float = 0.0
    audio_ok: bool = True
    audio_back_at: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    held_for_renewal: int = 0
    """Questions held back until a renewal that was due had happened."""
    _offset: int = 0
    _partial: str = ""

    def poll(self) -> None:
        try:
            with self.path.open("r", encoding="utf-8") as f:
                f.seek(self._offset)
                chunk = f.read()
                self._offset = f.tell()
        except FileNotFoundError:
            return
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()  # a line still being written
        now = time.monotonic()
        for line in lines:
            if not line:
                continue
            r = json.loads(line)
            self.records.append(r)
            kind = r["type"]
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if kind == "response_created":
                self.created.append(r["response_id"])
            elif kind == "turn":
                self.finished[r["response_id"]] = r
            elif kind == "disconnected":
                self.ready = False
            elif kind == "recv" and r["event"].get("type") == "session.updated":
                self.ready, self.ready_at = True, now
            elif kind == "audio_lost":
                self.audio_ok = False
            elif kind == "audio_back":
                self.audio_ok, self.audio_back_at = True, now

    def wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Until `predicate` holds (True) or the time is up (False)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll()
            if predicate():
                return True
            if self.proc.poll() is not None:
                raise SoakAborted(f"run exited with {self.proc.returncode}")
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def idle(self) -> bool:
        """Every answer created has been played or cut off."""
        return all(rid in self.finished for rid in self.created)

    def wait_listening(self, what: str) -> None:
        """Until a session is up, the audio is there, nothing plays, and both have been
        so for `SETTLE_S`."""
        # 30 s is the longest reconnect backoff; then the connection itself.
        if not self.wait(lambda: self.ready and self.audio_ok and self.idle(), 45):
            raise SoakAborted(f"run did not get back to listening ({what})")
        due_in_s = self.ready_at + self.renew_after_s - time.monotonic()
        if due_in_s < RENEWAL_GUARD_S:
            self.held_for_renewal += 1
            session = self.ready_at
            self.wait(lambda: self.ready and self.ready_at > session, max(due_in_s, 0) + 3)
        since = max(self.ready_at, self.audio_back_at)
        time.sleep(max(0.0, since + SETTLE_S - time.monotonic()))


@dataclass
class Person:
    """Plays questions into the room and follows their answers in the trace."""

    env: dict[str, str]
    trace: TraceFollower

    def say(self, wav: Path) -> int:
        """Play `wav` into sim_air (returns once played); the answers created before."""
        before = len(self.trace.created)
        subprocess.run(["paplay", "-d", "sim_air", str(wav)], env=self.env, check=True, timeout=60)
        return before

    def answer_to(self, before: int, timeout_s: float = 10.0) -> str | None:
        """The first answer created after `before` answers, or None if none came."""
        if not self.trace.wait(lambda: len(self.trace.created) > before, timeout_s):
            return None
        return self.trace.created[before]

    def outcome(self, response_id: str | None, timeout_s: float = 20.0) -> str:
        """How the answer ended: completed, cancelled, disconnected, ... or missing."""
        if response_id is None:
            return "no answer"
        if not self.trace.wait(lambda: response_id in self.trace.finished, timeout_s):
            return "not finished"
        return str(self.trace.finished[response_id]["status"])


@dataclass
class Tally:
    answered: int = 0
    barge_ins: int = 0
    barge_ins_cut: int = 0
    """Barge-ins whose answer was cut off (status cancelled)."""
    drops: int = 0
    drops_cut: int = 0
    """Drops whose answer was cut off (status disconnected)."""
    restarts: int = 0
    unanswered: list[str] = field(default_factory=list)
    memory: list[tuple[int, int, int]] = field(default_factory=list)
    """(turn, RSS kB, open descriptors) after each turn."""


def one_turn(
    k: int, kind: str, person: Person, server: LocalServerThread, wavs: dict, tally: Tally
) -> str:
    """Turn `k` of kind plain, barge or drop; returns the outcome of the answer that
    decides it (completed when it was answered)."""
    trace = person.trace
    if kind == "barge":
        first = person.answer_to(person.say(wavs["long"]))
        # Into the answer (the stand-in's 300 ms of prefix padding are its quiet start).
        if first is not None:
            time.sleep(0.6)
        answer = person.answer_to(person.say(wavs["over"]))
        kept = person.outcome(first, 5) if first is not None else "no answer"
        if kept == "cancelled":
            tally.barge_ins_cut += 1
        return person.outcome(answer)
    question = wavs["questions"][k % len(wavs["questions"])]
    answer = person.answer_to(person.say(question))
    if kind == "drop" and answer is not None:
        time.sleep(0.4)  # mid-answer
        server.drop_connections(abrupt=True)
        if person.outcome(answer) == "disconnected":
            tally.drops_cut += 1
        trace.wait_listening(f"after the drop at turn {k}")
        answer = person.answer_to(person.say(question))
    return person.outcome(answer)


def restart_audio(paths: instance.SimPaths, trace: TraceFollower, when: str) -> None:
    """What `pivoicectl sim restart` does; returns once `run` has noticed and has its
    audio back."""
    lost, back = trace.counts.get("audio_lost", 0), trace.counts.get("audio_back", 0)
    instance.restart(paths)
    if not trace.wait(lambda: trace.counts.get("audio_lost", 0) > lost, 15):
        raise SoakAborted(f"run did not notice the audio-server restart {when}")
    if not trace.wait(lambda: trace.counts.get("audio_back", 0) > back, 40):
        raise SoakAborted(f"run did not get its audio back {when}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--drop-every", type=int, default=20, help="turns between network drops")
    ap.add_argument("--restart-every", type=int, default=50, help="turns between audio restarts")
    ap.add_argument("--barge-every", type=int, default=5, help="turns between barge-ins")
    ap.add_argument(
        "--renew-after",
        type=float,
        default=40.0,
        help="session age at which run renews, s (shorter than the time between drops, "
        "which start a new session: 20 turns take about 75 s)",
    )
    ap.add_argument("--answer-speed", type=float, default=2.0, help="stand-in streaming speed")
    ap.add_argument("--keep", action="store_true", help="keep run's trace and output")
    ap.add_argument(
        "run_args",
        nargs="*",
        metavar="-- RUN_OPTIONS",
        help="more options for run, e.g. `-- --audio-backend portaudio`",
    )
    args = ap.parse_args()
    if args.turns < 2 or min(args.drop_every, args.restart_every, args.barge_every) < 1:
        ap.error("--turns must be at least 2 and every --*-every at least 1")
    mark_turn = min(10, max(1, args.turns // 3))
    tally = Tally()

    root = Path(tempfile.mkdtemp(prefix="pvsim-soak-", dir="/tmp"))
    tmp = Path(tempfile.mkdtemp(prefix="pv-bench-soak-"))
    paths = instance.SimPaths(root)
    env = {k: v for k, v in os.environ.items() if k not in AUDIO_VARS}
    env.update(instance.environment(paths))
    limit_s = args.renew_after + RENEW_MARGIN_S
    env.update(
        COLUMNS="200",
        NO_COLOR="1",
        OPENAI_API_KEY="bench-key",
        **{BENCH_RENEWAL_VAR: f"{args.renew_after},{limit_s}"},
    )
    wavs = {
        "questions": [voiced_wav(tmp / f"q{i}.wav", 1.0, f0) for i, f0 in enumerate((130, 160))],
        "long": voiced_wav(tmp / "long.wav", 1.6, 140),
        "over": voiced_wav(tmp / "over.wav", 0.9, 200),
    }
    settings = LocalServerSettings(session_limit_s=limit_s, output_speed=args.answer_speed)
    server = LocalServerThread(settings)
    run: subprocess.Popen[str] | None = None
    started = time.monotonic()
    aborted = None
    summary: dict[str, Any] = {}
    instance.up(paths, RoomSettings())
    try:
        setup = subprocess.run(
            [sys.executable, "-m", "pivoicectl", "setup", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        if setup.returncode != 0:
            print(f"soak failed: setup exited {setup.returncode}: {setup.stderr.strip()[-300:]}")
            return 1
        server.start()
        trace_path = tmp / "trace.jsonl"
        out = (tmp / "run.out").open("w")
        err = (tmp / "run.err").open("w")  # files: a pipe nobody reads would fill and block
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pivoicectl",
                "run",
                "--url",
                server.base_url,
                "--trace",
                str(trace_path),
                "--json",
                "--duration",
                str(60 * 60 * 4),
                *args.run_args,
            ],
            env=env,
            stdout=out,
            stderr=err,
            text=True,
        )
        trace = TraceFollower(trace_path, run, args.renew_after)
        person = Person(env, trace)
        turns_started = time.monotonic()
        try:
            trace.wait_listening("at the start")
            turns_started = time.monotonic()
            for k in range(1, args.turns + 1):
                trace.wait_listening(f"before turn {k}")
                if k % args.drop_every == 0:
                    kind = "drop"
                    tally.drops += 1
                elif k % args.barge_every == 0:
                    kind = "barge"
                    tally.barge_ins += 1
                else:
                    kind = "plain"
                outcome = one_turn(k, kind, person, server, wavs, tally)
                if outcome == "completed":
                    tally.answered += 1
                else:
                    tally.unanswered.append(f"turn {k} ({kind}): {outcome}")
                trace.wait_listening(f"after turn {k}")
                tally.memory.append((k, rss_kb(run.pid), open_fds(run.pid)))
                if k % args.restart_every == 0 and k < args.turns:
                    restart_audio(paths, trace, f"after turn {k}")
                    tally.restarts += 1
                time.sleep(GAP_S)
        except SoakAborted as exc:
            aborted = str(exc)
        turns_s = time.monotonic() - turns_started
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
        try:
            run.wait(30)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait(10)
        out.close()
        err.close()
        text = (tmp / "run.out").read_text()
        if text.strip():
            summary = json.loads(text)
        errors_text = (tmp / "run.err").read_text()
    finally:
        if run is not None and run.poll() is None:
            run.kill()
        server.stop()
        instance.down(paths, remove=False)
        shutil.rmtree(root, ignore_errors=True)

    turns_run = len(tally.memory)
    print(
        f"soak: {args.turns} turns asked ({turns_run} finished) in {turns_s:.0f} s "
        f"({turns_s / max(turns_run, 1):.1f} s a turn), whole bench "
        f"{time.monotonic() - started:.0f} s; answers streamed {args.answer_speed:g}x "
        f"real time; barge-ins {tally.barge_ins} (answer cut off in {tally.barge_ins_cut}), "
        f"dropped connections {tally.drops} (answer cut off in {tally.drops_cut}), "
        f"audio-server restarts {tally.restarts}"
        + (f"; run options: {' '.join(args.run_args)}" if args.run_args else "")
    )
    failures: list[str] = []
    if aborted:
        failures.append(aborted)
    print(f"turns answered {tally.answered} of {args.turns} (goal: all)")
    if tally.answered < args.turns:
        failures.append(f"{args.turns - tally.answered} turn(s) not answered")
        for line in tally.unanswered[:10]:
            print(f"  not answered: {line}")
    by_turn = {k: (rss, fds) for k, rss, fds in tally.memory}
    if mark_turn in by_turn and turns_run > mark_turn:
        rss0, fds0 = by_turn[mark_turn]
        last, rss1, fds1 = tally.memory[-1]
        growth_kb = rss1 - rss0
        print(
            f"run RSS: {rss0 / 1024:.1f} MB after turn {mark_turn}, {rss1 / 1024:.1f} MB after "
            f"turn {last}: growth {growth_kb / 1024:+.2f} MB (goal < 5 MB)"
        )
        print(
            f"run open descriptors: {fds0} after turn {mark_turn}, {fds1} after turn {last}: "
            f"growth {fds1 - fds0:+d} (goal: none)"
        )
        if growth_kb >= RSS_GROWTH_GOAL_KB:
            failures.append(f"RSS grew {growth_kb / 1024:.1f} MB")
        if fds1 > fds0:
            failures.append(f"open descriptors grew by {fds1 - fds0}")
        marks = sorted({mark_turn, *range(50, last, 50), last})
        series = ", ".join(
            f"{k}: {by_turn[k][0] / 1024:.1f} MB/{by_turn[k][1]} fds" for k in marks if k in by_turn
        )
        peak = max(rss for _, rss, _ in tally.memory)
        print(f"  RSS/descriptors by turn: {series}; peak RSS {peak / 1024:.1f} MB")
    else:
        failures.append(f"no memory figures (the soak ended before turn {mark_turn + 1})")
    if summary:
        codes = sorted({str(e.get("code")) for e in summary.get("errors", [])})
        print(
            f"run summary: connections {summary['connections']}, reconnects "
            f"{summary['reconnects']}, renewals {summary['renewals']} (goal: at least 1), "
            f"errors from the service {len(summary.get('errors', []))} "
            f"({', '.join(codes) or 'none'}), underruns {summary['underflows']}, "
            f"mic blocks dropped {summary['mic_blocks_dropped']}, CPU {summary['cpu_percent']}% "
            f"of one core over {summary['elapsed_s']:.0f} s; questions held back for a "
            f"renewal falling due: {trace.held_for_renewal}"
        )
        waits = [r["delay_s"] for r in trace.records if r["type"] == "reconnect_wait"]
        if waits:
            print(
                f"  reconnect waits (the backoff): {', '.join(f'{w:g}' for w in waits)} s; "
                f"{sum(waits):.0f} s in all"
            )
        if summary["renewals"] < 1:
            failures.append("no session renewal")
        if "session_expired" in codes:
            failures.append("the stand-in ended a session that run did not renew in time")
    else:
        failures.append("run printed no summary")
    if "Traceback" in errors_text:
        failures.append("a traceback in run's output")
    if args.keep:
        print(f"run's trace and output kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"soak failed: {'; '.join(failures)}")
        return 1
    print("soak: every goal met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
