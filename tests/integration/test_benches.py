"""The benchmarks still run and print their figures (short runs; the figures themselves
are the benches' business, only their sanity is checked here).

Why: no test ran the benches, and a refactor of `MeasureResult` broke one of them for a
whole session without anyone noticing.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, clean_env


def _bench(*args: str, timeout: float) -> str:
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def _figure(out: str, pattern: str) -> float:
    match = re.search(pattern, out)
    assert match, f"{pattern!r} not in:\n{out}"
    return float(match.group(1))


@pytest.mark.timeout(120)
def test_bench_playback_prints_speaker_latencies_and_the_truncation_error():
    out = _bench("bench/bench_playback.py", "--rounds", "2", timeout=100)
    assert _figure(out, r"first audio at the speaker .*?: median (-?[\d.]+) ms") < 50
    assert _figure(out, r"interrupt at the speaker .*?: median (-?[\d.]+) ms") < 25
    assert abs(_figure(out, r"truncate minus heard .*?: median (-?[\d.]+) ms")) < 20


@pytest.mark.timeout(150)
def test_bench_run_prints_latencies_and_client_cpu():
    out = _bench("bench/bench_run.py", "--rounds", "1", timeout=130)
    assert _figure(out, r"interrupt latency, client-side .*?: median (-?[\d.]+) ms") < 25
    assert 0 < _figure(out, r"duplex audio .*? = ([\d.]+)% of one core") < 20
    assert 0 < _figure(out, r"bare 20 ms mic .*? uses ([\d.]+)%") < 20


@pytest.mark.timeout(60)
def test_bench_help_prints_its_timing():
    out = _bench("bench/bench_help.py", "--runs", "2", timeout=50)
    assert 0 < _figure(out, r"pivoicectl --help\s+([\d.]+)") < 5
    assert "goal: --help < 0.300 s" in out


@pytest.mark.timeout(120)
def test_bench_setup_race_counts_a_first_setup_and_an_undo_that_succeed():
    out = _bench("bench/bench_setup_race.py", "--rounds", "1", timeout=100)
    assert "setup succeeded 1 of 1" in out
    assert "undo succeeded 1 of 1" in out
