"""Every benchmark in bench/ still runs and prints its figures, in its quickest mode (the
figures themselves are the benches' business, only their sanity is checked here).

Why: no test ran the benches, and a refactor of `MeasureResult` broke one of them for a
whole session without anyone noticing. So each script in bench/ must have a smoke run
in `SMOKE`: a new bench without one fails `test_bench_runs` for that script.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, clean_env


def _figure(out: str, pattern: str) -> float:
    match = re.search(pattern, out)
    assert match, f"{pattern!r} not in:\n{out}"
    return float(match.group(1))


def _aec_options(out: str) -> None:
    assert "shipped defaults" in out
    assert 20 < _figure(out, r"ERLE\(noise\) (?:>=| )\s*([\d.]+) dB") < 120
    assert -20 < _figure(out, r"retention\s+(-?[\d.]+) dB") < 10


def _busy(out: str) -> None:
    assert _figure(out, r"\[busy-rt\] self-interruptions: (\d+) of \d+ answers") >= 0
    assert _figure(out, r"of (\d+) answers") >= 2
    # PipeWire 1.x names its realtime thread data-loop.0; 0.3 names it pipewire.
    assert re.search(r"\[busy-rt\] daemons: pipewire (data-loop\.0|pipewire) FIFO 88", out)
    assert -150 < _figure(out, r"\[busy-rt\] residual echo, after 1 s: median (-?[\d.]+)") < 0


def _guard(out: str) -> None:
    assert _figure(out, r"barge-in local .*?: median (-?[\d.]+) ms") < 1000
    assert _figure(out, r"echo guard gate: (\d+) false interrupt\(s\) over 1 answer") >= 0


def _help(out: str) -> None:
    assert 0 < _figure(out, r"pivoicectl --help\s+([\d.]+)") < 5
    assert "goal: --help < 0.300 s" in out


def _playback(out: str) -> None:
    assert _figure(out, r"first audio at the speaker .*?: median (-?[\d.]+) ms") < 50
    assert _figure(out, r"interrupt at the speaker .*?: median (-?[\d.]+) ms") < 25
    assert abs(_figure(out, r"truncate minus heard .*?: median (-?[\d.]+) ms")) < 20
    assert -50 < _figure(out, r"echo on the mic timeline.*?: median (-?[\d.]+) ms") < 100


def _run(out: str) -> None:
    assert _figure(out, r"interrupt latency, client-side .*?: median (-?[\d.]+) ms") < 25
    assert 0 < _figure(out, r"duplex audio .*? = ([\d.]+)% of one core") < 20
    assert 0 < _figure(out, r"bare 20 ms mic .*? uses ([\d.]+)%") < 20


def _setup_race(out: str) -> None:
    assert "setup succeeded 1 of 1" in out
    assert "undo succeeded 1 of 1" in out


def _soak(out: str) -> None:
    assert "turns answered 6 of 6" in out
    assert _figure(out, r"run RSS: .*? growth ([+-][\d.]+) MB") < 5
    assert _figure(out, r"run open descriptors: .*? growth ([+-]\d+)") <= 0
    assert _figure(out, r"renewals (\d+)") >= 1
    assert _figure(out, r"dropped connections (\d+)") == 2
    assert _figure(out, r"audio-server restarts (\d+)") == 1
    assert "soak: every goal met" in out


def _tools(out: str) -> None:
    assert 0 < _figure(out, r"tool box: +median ([\d.]+) ms") < 100
    assert "goal: median <= 20 ms" in out


def _vad(out: str) -> None:
    assert _figure(out, r"speed-up on bytes: ([\d.]+)x") > 1
    assert 0 < _figure(out, r"barge-in detector, energy \(idle\):\s+([\d.]+) us") < 1000


@dataclass(frozen=True)
class Smoke:
    args: tuple[str, ...]
    """The bench's quickest mode."""
    check: Callable[[str], None]
    """Asserts on its stdout."""
    timeout_s: float
    """About three times what the run takes on the 2-core development machine."""


SOAK_QUICK = "--turns 6 --drop-every 3 --restart-every 4 --barge-every 2 --renew-after 10"
"""A drop mid-answer twice, an audio restart, barge-ins and renewals, in about 40 s."""

SMOKE: dict[str, Smoke] = {
    "bench_aec_options.py": Smoke(("--only", "shipped", "--duration", "4"), _aec_options, 60),
    "bench_busy.py": Smoke(("--quick",), _busy, 100),
    "bench_guard.py": Smoke(("--quick",), _guard, 100),
    "bench_help.py": Smoke(("--runs", "2"), _help, 30),
    "bench_playback.py": Smoke(("--rounds", "2"), _playback, 60),
    "bench_run.py": Smoke(("--rounds", "1", "--idle-s", "2"), _run, 100),
    "bench_setup_race.py": Smoke(("--rounds", "1"), _setup_race, 60),
    "bench_soak.py": Smoke(tuple(SOAK_QUICK.split()), _soak, 140),
    "bench_tools.py": Smoke(("--quick",), _tools, 30),
    "bench_vad.py": Smoke((), _vad, 30),
}

BENCHES = sorted(p.name for p in (REPO / "bench").glob("*.py") if p.name != "__init__.py")


def test_the_smoke_table_names_only_benches_that_exist():
    assert sorted(set(SMOKE) - set(BENCHES)) == []
    assert len(BENCHES) >= 7  # the glob found the scripts


@pytest.mark.timeout(150)
@pytest.mark.parametrize("name", BENCHES)
def test_bench_runs(name: str):
    assert name in SMOKE, f"bench/{name} has no smoke run: add its quickest mode to SMOKE"
    smoke = SMOKE[name]
    proc = subprocess.run(
        [sys.executable, str(Path("bench") / name), *smoke.args],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=smoke.timeout_s,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    smoke.check(proc.stdout)
