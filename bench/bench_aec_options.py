"""Which webrtc options to ship: ERLE, double-talk retention and convergence per option set.

Run: .venv/bin/python bench/bench_aec_options.py [--rt60 0.3] [--quick] [--json]
     [--only shipped,noise_suppression,pipewire] [--repeat 5]

Starts its own simulated room (a private PipeWire, nothing else is touched) with a
reverberant echo path, then for each option set writes the echo-cancel config from
pivoicectl's own template, restarts the room's PipeWire (a fresh canceller, as after a
reboot) and runs `measure` in-process twice: speech far end with a near-end talker
(retention, convergence of the fresh canceller) and white noise (steady-state ERLE).

Also the issue-3 benchmark: the first two rows are the shipped defaults and PipeWire's
untuned defaults (an empty aec.args), against the goals ERLE >= 40 dB and retention
>= -6 dB. For the VAD's cost see bench/bench_vad.py. Re-run on PipeWire 0.3.65 with the
same command: the template and the option keys follow the installed generation.

Why --repeat: a fresh canceller lands differently each time (ERLE scatters by 10-20 dB
between runs, retention by about 1 dB), so one run per row decides nothing. `--repeat N`
measures each row N times, each with a fresh canceller, and prints mean ± standard
deviation (n) per figure; compare rows by their standard errors (sd/sqrt(n)). A mean
marked >= includes capped runs and is only a lower bound. The repeats go round-robin over
the rows, so drift (other load on the machine) spreads evenly over them. `--only` picks
rows by id: shipped, pipewire, or an option's name (noise_suppression, gain_control, ...).
ERLE(noise) flatters noise_suppression: a steady white-noise echo is what a noise
suppressor removes anyway; judge it by ERLE(speech) and retention.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pivoicectl.core import echo_config
from pivoicectl.sim import instance
from pivoicectl.sim.room import MIC, SPEAKER, RoomSettings, expected_erl_db
from pivoicectl.system import versions

TALKER_TEXT = "Hey, stop for a second. What is the weather going to be like tomorrow?"
GOAL_ERLE_DB = 40.0
GOAL_RETENTION_DB = -6.0
# (key, label, unit, key of its "at least" flag): the figures that --repeat summarizes
FIGURES = (
    ("erle_db", "ERLE(noise)", "dB", "erle_capped"),
    ("speech_erle_db", "ERLE(speech)", "dB", "speech_erle_capped"),
    ("retention_db", "retention", "dB", None),
    ("convergence_s", "convergence", "s", None),
)


def option_sets(quick: bool) -> list[tuple[str, str, dict[str, bool]]]:
    """(id for --only, name, aec.args) per row."""
    shipped = dict(echo_config.DEFAULT_AEC_ARGS)
    sets: list[tuple[str, str, dict[str, bool]]] = [
        ("shipped", "shipped defaults", shipped),
        ("pipewire", "PipeWire defaults (empty aec.args)", {}),
    ]
    if quick:
        return sets
    for key in (
        "webrtc.noise_suppression",
        "webrtc.gain_control",
        "webrtc.extended_filter",
        "webrtc.delay_agnostic",
        "webrtc.high_pass_filter",
        "webrtc.voice_detection",
    ):
        flipped = {**shipped, key: not shipped.get(key, False)}
        short = key.removeprefix("webrtc.")
        sets.append((short, f"shipped, {short}={str(flipped[key]).lower()}", flipped))
    return sets


def summarize(runs: list[dict]) -> dict:
    """Mean, sample standard deviation and n per figure; runs where it is None don't count."""
    out = {}
    for key, _, _, capped in FIGURES:
        vals = [r[key] for r in runs if r[key] is not None]
        out[key] = {
            "mean": statistics.fmean(vals) if vals else None,
            "sd": statistics.stdev(vals) if len(vals) > 1 else None,
            "n": len(vals),
            "capped": bool(capped) and any(r[capped] for r in runs),
        }
    out["erl_db"] = statistics.fmean(r["erl_db"] for r in runs)
    return out


def _wait_source_ec(timeout_s: float = 20.0) -> None:
    from pivoicectl.errors import UserError
    from pivoicectl.system.audio_server import AudioServer

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with AudioServer.connect(timeout_s=1.0) as s:
                if s.find("source_ec", "source") is not None:
                    return
        except UserError:
            pass
        time.sleep(0.1)
    raise RuntimeError("source_ec did not appear")


def run_set(paths, version: str, args: dict[str, bool], talker: Path, duration: float) -> dict:
    from pivoicectl.commands import measure as m
    from pivoicectl.system import paths as pv_paths

    cfg = echo_config.EchoConfig(MIC, SPEAKER, version, args)
    conf = pv_paths.echo_cancel_conf()
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(cfg.render())
    instance.restart(paths)
    _wait_source_ec()
    time.sleep(0.5)
    dt = m.measure(
        m.MeasureOptions(
            duration_s=duration, signal="speech", talker_file=talker, talker_sink="sim_air"
        ),
        progress=False,
    )
    noise = m.measure(m.MeasureOptions(duration_s=duration / 2, signal="noise"), progress=False)
    dt, noise = dt.metrics, noise.metrics
    return {
        "erl_db": noise.erl_db,
        "erle_db": noise.erle_db,
        "erle_capped": noise.erle_capped,
        "speech_erle_db": dt.erle_db,
        "speech_erle_capped": dt.erle_capped,
        "retention_db": dt.double_talk_retention_db,
        "convergence_s": dt.convergence_s,
        "delay_ms": noise.echo_delay_ms,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rt60", type=float, default=0.3)
    ap.add_argument("--reverb-db", type=float, default=-10.0)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--quick", action="store_true", help="only shipped vs PipeWire defaults")
    ap.add_argument(
        "--only",
        metavar="ID[,ID]",
        help="only these rows: shipped, pipewire, noise_suppression, gain_control, ...",
    )
    ap.add_argument("--repeat", type=int, default=1, metavar="N", help="runs per row")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.repeat < 1:
        ap.error("--repeat must be at least 1")
    sets = option_sets(a.quick and not a.only)
    if a.only:
        wanted = a.only.split(",")
        unknown = set(wanted) - {s[0] for s in sets}
        if unknown:
            ap.error(f"unknown --only {sorted(unknown)}; ids: {', '.join(s[0] for s in sets)}")
        sets = [s for s in sets if s[0] in wanted]

    room = RoomSettings(rt60_s=a.rt60, reverb_db=a.reverb_db)
    root = Path(tempfile.mkdtemp(prefix="pvbench-", dir="/tmp"))
    paths = instance.SimPaths(root)
    instance.up(paths, room)
    os.environ.update(instance.environment(paths))
    runs: dict[str, list[dict]] = {name: [] for _, name, _ in sets}
    try:
        from pivoicectl.system.recorder import espeak_wav

        talker = root / "talker.wav"
        if not espeak_wav(TALKER_TEXT, talker):
            sys.exit("espeak-ng is needed for the talker (sudo apt-get install espeak-ng)")
        version = versions.installed_pipewire() or "1.4.2"
        for i in range(1, a.repeat + 1):
            for _, name, args in sets:
                r = run_set(paths, version, args, talker, a.duration)
                runs[name].append(r)
                if not a.json:
                    run = f" [{i}/{a.repeat}]" if a.repeat > 1 else ""
                    print(_row({"options": name + run, **r}), flush=True)
    finally:
        instance.down(paths)
    if a.repeat == 1:
        rows = [{"options": name, "aec_args": args, **runs[name][0]} for _, name, args in sets]
    else:
        rows = [
            {"options": name, "aec_args": args, "runs": runs[name], **summarize(runs[name])}
            for _, name, args in sets
        ]
    if a.json:
        print(json.dumps({"pipewire": version, "room": room.to_dict(), "rows": rows}, indent=2))
        return
    if a.repeat > 1:
        print(f"\nmean ± sd (n) over {a.repeat} runs per row, each with a fresh canceller:")
        for r in rows:
            print(_summary_row(r))
    print(
        f"\nPipeWire {version}; room: delay {room.delay_ms} ms, rt60 {room.rt60_s} s, "
        f"reverb {room.reverb_db} dB (ERL {expected_erl_db(room):.1f} dB). Goals: ERLE >= "
        f"{GOAL_ERLE_DB:g} dB, retention >= {GOAL_RETENTION_DB:g} dB."
    )
    print("VAD cost per 20 ms frame: .venv/bin/python bench/bench_vad.py")


def _row(r: dict) -> str:
    def f(v, capped=False):
        return "  n/a " if v is None else f"{'>=' if capped else '  '}{v:5.1f}"

    return (
        f"{r['options']:44} ERLE(noise) {f(r['erle_db'], r['erle_capped'])} dB  "
        f"ERLE(speech) {f(r['speech_erle_db'], r['speech_erle_capped'])} dB  "
        f"retention {f(r['retention_db'])} dB  convergence {f(r['convergence_s'])} s  "
        f"ERL {r['erl_db']:.1f} dB"
    )


def _summary_row(r: dict) -> str:
    cells = []
    for key, label, unit, _ in FIGURES:
        s = r[key]
        mean = "  n/a" if s["mean"] is None else f"{s['mean']:5.1f}"
        sd = "n/a" if s["sd"] is None else f"{s['sd']:3.1f}"
        cells.append(f"{label} {'>=' if s['capped'] else '  '}{mean} ± {sd} {unit} ({s['n']})")
    return f"{r['options']:44} " + "  ".join(cells) + f"  ERL {r['erl_db']:.1f} dB"


if __name__ == "__main__":
    main()
