"""Which webrtc options to ship: ERLE, double-talk retention and convergence per option set.

Run: .venv/bin/python bench/bench_aec_options.py [--rt60 0.3] [--quick] [--json]

Starts its own simulated room (a private PipeWire, nothing else is touched) with a
reverberant echo path, then for each option set writes the echo-cancel config from
pivoicectl's own template, restarts the room's PipeWire (a fresh canceller, as after a
reboot) and runs `measure` in-process twice: speech far end with a near-end talker
(retention, convergence of the fresh canceller) and white noise (steady-state ERLE).

Also the issue-3 benchmark: the first two rows are the shipped defaults and PipeWire's
untuned defaults (an empty aec.args), against the goals ERLE >= 40 dB and retention
>= -6 dB. For the VAD's cost see bench/bench_vad.py. Re-run on PipeWire 0.3.65 with the
same command: the template and the option keys follow the installed generation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pivoicectl import echo_config, versions
from pivoicectl.sim import instance
from pivoicectl.sim.room import MIC, SPEAKER, RoomSettings, expected_erl_db

TALKER_TEXT = "Hey, stop for a second. What is the weather going to be like tomorrow?"
GOAL_ERLE_DB = 40.0
GOAL_RETENTION_DB = -6.0


def option_sets(quick: bool) -> list[tuple[str, dict[str, bool]]]:
    shipped = dict(echo_config.DEFAULT_AEC_ARGS)
    sets: list[tuple[str, dict[str, bool]]] = [
        ("shipped defaults", shipped),
        ("PipeWire defaults (empty aec.args)", {}),
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
        sets.append(
            (f"shipped, {key.removeprefix('webrtc.')}={str(flipped[key]).lower()}", flipped)
        )
    return sets


def _wait_source_ec(timeout_s: float = 20.0) -> None:
    from pivoicectl.audio_server import AudioServer
    from pivoicectl.errors import UserError

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
    from pivoicectl import paths as pv_paths
    from pivoicectl.commands import measure as m

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
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    room = RoomSettings(rt60_s=a.rt60, reverb_db=a.reverb_db)
    root = Path(tempfile.mkdtemp(prefix="pvbench-", dir="/tmp"))
    paths = instance.SimPaths(root)
    instance.up(paths, room)
    os.environ.update(instance.environment(paths))
    rows = []
    try:
        from pivoicectl.recorder import espeak_wav

        talker = root / "talker.wav"
        if not espeak_wav(TALKER_TEXT, talker):
            sys.exit("espeak-ng is needed for the talker (sudo apt-get install espeak-ng)")
        version = versions.installed_pipewire() or "1.4.2"
        for name, args in option_sets(a.quick):
            r = run_set(paths, version, args, talker, a.duration)
            rows.append({"options": name, "aec_args": args, **r})
            if not a.json:
                print(_row(rows[-1]), flush=True)
    finally:
        instance.down(paths)
    if a.json:
        print(json.dumps({"pipewire": version, "room": room.to_dict(), "rows": rows}, indent=2))
        return
    print(
        f"\nPipeWire {version}; room: delay {room.delay_ms} ms, rt60 {room.rt60_s} s, "
        f"reverb {room.reverb_db} dB (ERL {expected_erl_db(room):.1f} dB). Goals: ERLE >= "
        f"{GOAL_ERLE_DB:g} dB, retention >= {GOAL_RETENTION_DB:g} dB."
    )
    print("VAD cost per 20 ms frame vs the seed's is_silent: .venv/bin/python bench/bench_vad.py")


def _row(r: dict) -> str:
    def f(v, capped=False):
        return "  n/a " if v is None else f"{'>=' if capped else '  '}{v:5.1f}"

    return (
        f"{r['options']:44} ERLE(noise) {f(r['erle_db'], r['erle_capped'])} dB  "
        f"ERLE(speech) {f(r['speech_erle_db'], r['speech_erle_capped'])} dB  "
        f"retention {f(r['retention_db'])} dB  convergence {f(r['convergence_s'])} s  "
        f"ERL {r['erl_db']:.1f} dB"
    )


if __name__ == "__main__":
    main()
