"""Does the first `setup` succeed when WirePlumber starts late after the restart?

On a booted Pi, `systemctl --user restart pipewire pipewire-pulse wireplumber` returns
while pipewire-pulse already answers and lists source_ec, and WirePlumber comes up
about a second later. This runs `setup` then `setup --undo` in a simulated room whose
WirePlumber starts `--wireplumber-delay` seconds late at every restart, round after
round, and counts the rounds where setup succeeded (source_ec the default and saved by
WirePlumber) and where undo left the defaults, WirePlumber's saved state (with
WirePlumber 0.4, which never forgets an earlier choice, its configured names) and the
config tree as they were.
Run: .venv/bin/python bench/bench_setup_race.py [--rounds 20] [--wireplumber-delay 1.2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pivoicectl.sim import instance
from pivoicectl.sim.room import RoomSettings
from pivoicectl.system import versions, wireplumber_state
from pivoicectl.system.audio_server import AudioServer

WHOLE_LISTS = wireplumber_state.rebuilds_lists(versions.installed_wireplumber())


def cli(env: dict[str, str], *args: str) -> tuple[int, float, str]:
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pivoicectl", *args], env=env, capture_output=True, text=True
    )
    return proc.returncode, time.perf_counter() - t, (proc.stdout + proc.stderr).strip()


def state(paths: instance.SimPaths, env: dict[str, str]) -> dict:
    with AudioServer.connect(server=env["PULSE_SERVER"]) as server:
        info = server.info()
    file = paths.state / "wireplumber" / "default-nodes"
    saved = wireplumber_state.parse_default_nodes(file.read_text()) if file.exists() else {}
    if not WHOLE_LISTS:  # WirePlumber 0.4 never forgets an earlier choice
        saved = wireplumber_state.restorable(wireplumber_state.configured(saved), False)
    tree = {
        str(p.relative_to(paths.config)): p.read_bytes() if p.is_file() else None
        for p in sorted(paths.config.rglob("*"))
    }
    return {
        "source": info.default_source,
        "sink": info.default_sink,
        "saved": saved,
        "tree": tree,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--wireplumber-delay", type=float, default=1.2)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pvbench-", dir="/tmp"))
    paths = instance.SimPaths(root)
    try:
        instance.up(paths, RoomSettings(), wireplumber_delay_s=args.wireplumber_delay)
        env = {**os.environ, **instance.environment(paths)}
        cli(env, "devices", "--json")  # the first libpulse client writes its cookie
        before = state(paths, env)
        setups: list[float] = []
        undos: list[float] = []
        failures: list[str] = []
        for n in range(1, args.rounds + 1):
            rc, took, out = cli(env, "setup", "--json")
            now = state(paths, env)
            if rc == 0 and json.loads(out)["persisted"] and now["source"] == "source_ec":
                setups.append(took)
            else:
                why = out.splitlines()[-1] if rc else f"default source {now['source']}"
                failures.append(f"round {n}: setup exit {rc}: {why}")
            rc, took, out = cli(env, "setup", "--undo", "--json")
            now = state(paths, env)
            if rc == 0 and now == before:
                undos.append(took)
            else:
                differ = [k for k in before if now[k] != before[k]]
                why = out.splitlines()[-1] if rc else f"{', '.join(differ)} not as before"
                failures.append(f"round {n}: undo exit {rc}: {why}")
        print(
            f"WirePlumber {args.wireplumber_delay:.1f} s late after each restart, "
            f"{args.rounds} rounds of setup then setup --undo"
        )
        for name, times in (("setup", setups), ("undo", undos)):
            spread = (
                f" (median {statistics.median(times):.2f} s, max {max(times):.2f} s)"
                if times
                else ""
            )
            print(f"{name} succeeded {len(times)} of {args.rounds}{spread}")
        for line in failures:
            print(f"  {line}")
    finally:
        instance.down(paths, remove=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
