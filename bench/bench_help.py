"""How long `pivoicectl --help` takes, wall clock, next to a bare interpreter start.

Goal: under 0.3 s on the 2-core development machine. Both are measured in the same run,
so the ratio shows what pivoicectl itself adds whatever the machine's load.
Run: .venv/bin/python bench/bench_help.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    exe = shutil.which("pivoicectl") or str(Path(sys.executable).parent / "pivoicectl")
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "pivoicectl --help": [exe, "--help"],
        "pivoicectl setup --help": [exe, "setup", "--help"],
        "pivoicectl --version": [exe, "--version"],
    }
    timed(cases["pivoicectl --help"], 2)  # warm the page cache
    results = {name: timed(cmd, args.runs) for name, cmd in cases.items()}
    base = statistics.median(results["python -c pass"])
    print(f"{'command':28} {'median s':>9} {'min s':>7} {'x bare python':>14}")
    for name, times in results.items():
        med = statistics.median(times)
        print(f"{name:28} {med:9.3f} {min(times):7.3f} {med / base:14.1f}")
    help_med = statistics.median(results["pivoicectl --help"])
    verdict = "OK" if help_med < 0.3 else "OVER GOAL"
    print(f"goal: --help < 0.300 s wall -> {help_med:.3f} s median: {verdict}")


if __name__ == "__main__":
    main()
