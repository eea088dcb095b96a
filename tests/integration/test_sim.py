"""The simulated room on the real PipeWire: it starts, carries echo, and stops cleanly."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

from pivoicectl.sim import instance
from pivoicectl.sim.room import RoomSettings, expected_erl_db
from tests.conftest import assert_one_line_error, clean_env, run_cli
from tests.integration.audio import active_dbfs, dbfs, noise_wav, play, record_while


def test_sim_up_prints_env_and_down_stops_everything():
    root = Path(tempfile.mkdtemp(prefix="pvsim-cli-", dir="/tmp"))
    env = clean_env()
    try:
        up = run_cli("sim", "up", "--dir", str(root), "--delay-ms", "20", env=env, check=True)
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in up.stdout.splitlines()
            if line.startswith("export ")
        )
        assert exports["XDG_RUNTIME_DIR"] == str(root / "run")
        assert exports["PULSE_SERVER"] == f"unix:{root}/run/pulse/native"
        assert "PIVOICECTL_RESTART_CMD" in exports
        status = run_cli("sim", "status", "--dir", str(root), "--json", env=env, check=True)
        s = json.loads(status.stdout)
        assert s["running"] is True
        assert s["room"]["delay_ms"] == 20.0
        assert s["nodes"] == {
            "sim_speaker": True,
            "sim_air": True,
            "sim_mic": True,
            "source_ec": False,
        }
        data = instance.read_instance(instance.SimPaths(root))
        pids, starts = data["pids"], data["starts"]

        again = run_cli("sim", "up", "--dir", str(root), env=env)
        assert_one_line_error(again, 2, "already running")

        run_cli("sim", "down", "--dir", str(root), env=env, check=True)
        assert not root.exists()
        for name, pid in pids.items():
            assert instance.start_time(pid) != starts[name]
        down = run_cli("sim", "status", "--dir", str(root), "--json", env=env)
        assert down.returncode == 1
        assert json.loads(down.stdout)["running"] is False
    finally:
        instance.down(instance.SimPaths(root))
        shutil.rmtree(root, ignore_errors=True)


def test_echo_path_carries_the_speaker_to_the_mic_at_the_configured_loss(shared_room, tmp_path):
    wav = noise_wav(tmp_path / "noise.wav", 2.0, level=0.1)
    mic = record_while(
        shared_room.env, "sim_mic", lambda: play(shared_room.env, "sim_speaker", wav)
    )
    expected = 20 * math.log10(0.1) - expected_erl_db(RoomSettings())
    assert abs(active_dbfs(mic) - expected) < 1.5, (active_dbfs(mic), expected)


def test_a_person_talking_is_heard_by_the_mic_but_not_played_by_the_speaker(shared_room, tmp_path):
    wav = noise_wav(tmp_path / "talker.wav", 1.0, level=0.2, seed=9)
    talk = lambda: run_cli(  # noqa: E731
        "sim", "talk", str(wav), env=shared_room.env, check=True
    )
    mic = record_while(shared_room.env, "sim_mic", talk)
    assert abs(active_dbfs(mic) - 20 * math.log10(0.2)) < 1.5
    # An idle sink's monitor delivers nothing or silence; either way no talker in it.
    speaker = record_while(shared_room.env, "sim_speaker.monitor", talk)
    assert len(speaker) == 0 or dbfs(speaker) < -80


def test_sim_talk_rejects_a_file_that_is_not_a_wav(shared_room, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    assert_one_line_error(run_cli("sim", "talk", str(bad), env=shared_room.env), 2, "not a PCM WAV")
    assert_one_line_error(run_cli("sim", "talk", env=shared_room.env), 2, "--say")


def test_room_settings_out_of_range_are_refused():
    proc = run_cli("sim", "up", "--dir", "/tmp/pvsim-never", "--gain", "9", env=clean_env())
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert not Path("/tmp/pvsim-never").exists()


def test_sim_refuses_a_non_empty_foreign_directory_and_never_deletes_it(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    proc = run_cli("sim", "up", "--dir", str(tmp_path), env=clean_env())
    assert_one_line_error(proc, 2, "not a simulated room")
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]
