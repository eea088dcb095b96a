"""`setup` against the real PipeWire in the simulated room."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from pivoicectl.sim import instance
from tests.conftest import assert_one_line_error, run_cli


def baseline(room) -> None:
    """Any libpulse client creates $XDG_CONFIG_HOME/pulse/cookie on first use; run one
    read-only command first so the 'before' snapshot already holds it."""
    run_cli("devices", "--json", env=room.env, check=True)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file and directory below root, with file contents: 'byte for byte'."""
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = p.read_bytes() if p.is_file() else None
    return out


def setup_json(room, *args: str) -> dict:
    proc = run_cli("setup", "--json", *args, env=room.env, check=True)
    return json.loads(proc.stdout)


def persisted(room, kind: str = "source", expect: str | None = None) -> str | None:
    """What WirePlumber saved; with `expect`, wait up to 3 s for it (it saves lazily)."""
    import time

    from pivoicectl.wireplumber_state import parse_default_nodes

    f = room.paths.state / "wireplumber" / "default-nodes"
    deadline = time.monotonic() + (3 if expect else 0)
    while True:
        value = parse_default_nodes(f.read_text()).get(f"default.configured.audio.{kind}")
        if value == expect or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_setup_creates_source_ec_makes_it_default_and_persists_it(room):
    assert "source_ec" not in room.names()
    assert room.info().default_source == "sim_mic"
    r = setup_json(room)
    assert r["changed"] is True and r["complete"] is True
    assert r["mic"] == "sim_mic" and r["speaker"] == "sim_speaker"
    assert r["template"] == (
        "echo-cancel-1.x" if r["pipewire_version"][0] != "0" else "echo-cancel-0.3"
    )
    assert r["restart"] == "command"
    assert "source_ec" in room.names()
    assert room.info().default_source == "source_ec"
    assert r["persisted"] is True and persisted(room) == "source_ec"
    if r["template"] == "echo-cancel-0.3":  # apps must play into the echo-cancel sink
        assert room.info().default_sink == "sink_ec"
        assert persisted(room, "sink", expect="sink_ec") == "sink_ec"
    else:
        assert room.info().default_sink == "sim_speaker"
    text = room.ec_conf.read_text()
    assert 'target.object = "sim_mic"' in text
    assert "webrtc.noise_suppression = false" in text


def test_second_setup_changes_nothing_and_does_not_restart(room):
    setup_json(room)
    before = snapshot(room.paths.config)
    mtime = room.ec_conf.stat().st_mtime_ns
    pids = instance.read_instance(room.paths)["pids"]
    r = setup_json(room)
    assert r["changed"] is False
    assert r["actions"] == []
    assert any("nothing to change" in n for n in r["notes"])
    assert snapshot(room.paths.config) == before
    assert room.ec_conf.stat().st_mtime_ns == mtime
    assert instance.read_instance(room.paths)["pids"] == pids
    assert room.info().default_source == "source_ec"


def test_undo_restores_the_tree_and_default_source_when_there_was_no_file(room):
    baseline(room)
    before = snapshot(room.paths.config)
    setup_json(room)
    assert snapshot(room.paths.config) != before
    r = json.loads(run_cli("setup", "--undo", "--json", env=room.env, check=True).stdout)
    assert r["operation"] == "undo"
    assert snapshot(room.paths.config) == before
    assert room.info().default_source == "sim_mic"
    assert room.info().default_sink == "sim_speaker"
    assert "source_ec" not in room.names()
    assert persisted(room) == "sim_mic"
    again = run_cli("setup", "--undo", env=room.env)
    assert_one_line_error(again, 2, "no setup to undo")


def test_undo_puts_back_a_different_user_file_byte_for_byte(room):
    room.conf_dir.mkdir(parents=True, exist_ok=True)
    mine = b"# my own echo-cancel experiments\ncontext.modules = []\n"
    room.ec_conf.write_bytes(mine)
    os.chmod(room.ec_conf, 0o600)
    baseline(room)
    before = snapshot(room.paths.config)
    r = setup_json(room)
    assert r["backup_path"] and Path(r["backup_path"]).read_bytes() == mine
    assert room.ec_conf.read_bytes() != mine
    run_cli("setup", "--undo", env=room.env, check=True)
    assert snapshot(room.paths.config) == before
    assert stat.S_IMODE(room.ec_conf.stat().st_mode) == 0o600
    assert room.info().default_source == "sim_mic"


def test_dry_run_prints_the_file_and_actions_and_changes_nothing(room):
    baseline(room)
    before = snapshot(room.paths.config)
    state_before = snapshot(room.paths.state)
    proc = run_cli(
        "setup", "--dry-run", "--aec-arg", "webrtc.gain_control=true", env=room.env, check=True
    )
    assert "libpipewire-module-echo-cancel" in proc.stdout
    assert "webrtc.gain_control = true" in proc.stdout
    assert "write " in proc.stdout and "set the default source to source_ec" in proc.stdout
    assert snapshot(room.paths.config) == before
    assert snapshot(room.paths.state) == state_before
    assert "source_ec" not in room.names()


def test_changed_aec_args_rewrite_with_a_backup_and_restart(room):
    setup_json(room)
    first = room.ec_conf.read_bytes()
    r = setup_json(room, "--aec-arg", "webrtc.noise_suppression=true")
    assert r["changed"] is True
    assert Path(r["backup_path"]).read_bytes() == first
    assert "webrtc.noise_suppression = true" in room.ec_conf.read_text()
    assert room.info().default_source == "source_ec"


def test_no_restart_writes_the_file_and_says_what_to_run(room):
    r = setup_json(room, "--no-restart")
    assert r["complete"] is False
    assert room.ec_conf.exists()
    assert any("sim restart" in n for n in r["notes"])
    assert "source_ec" not in room.names()


def test_without_systemd_or_restart_command_it_tells_the_user(room):
    env = {k: v for k, v in room.env.items() if k != "PIVOICECTL_RESTART_CMD"}
    proc = run_cli("setup", "--json", env=env, check=True)
    r = json.loads(proc.stdout)
    assert r["restart"] == "manual" and r["complete"] is False
    assert any(
        "systemctl --user restart pipewire pipewire-pulse wireplumber" in n for n in r["notes"]
    )


def test_systemd_user_manager_is_used_when_running(room, tmp_path):
    """systemd cannot run here: a fake `systemctl` stands in at that boundary only."""
    (room.paths.run / "systemd").mkdir()
    (room.paths.run / "systemd" / "private").touch()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "systemctl.log"
    fake = bindir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {room.env["PIVOICECTL_RESTART_CMD"]}\n')
    fake.chmod(0o755)
    env = {**room.env, "PATH": f"{bindir}:{room.env['PATH']}"}
    env.pop("PIVOICECTL_RESTART_CMD")
    r = json.loads(run_cli("setup", "--json", env=env, check=True).stdout)
    assert r["restart"] == "systemd"
    assert log.read_text().strip() == "--user restart pipewire pipewire-pulse wireplumber"
    assert room.info().default_source == "source_ec"


def test_bad_input_is_one_line_and_exit_2(room, tmp_path):
    assert_one_line_error(run_cli("setup", "--mic", "no_such_mic", env=room.env), 2, "no_such_mic")
    assert_one_line_error(
        run_cli("setup", "--speaker", "no_such_speaker", env=room.env), 2, "no_such_speaker"
    )
    assert_one_line_error(
        run_cli("setup", "--mic", "sim_speaker.monitor", env=room.env), 2, "monitor"
    )
    assert_one_line_error(run_cli("setup", "--aec-arg", "oops", env=room.env), 2, "KEY=VALUE")
    assert_one_line_error(
        run_cli("setup", "--aec-arg", "webrtc.bogus=true", env=room.env), 2, "unknown"
    )
    assert_one_line_error(
        run_cli("setup", "--aec-arg", "webrtc.gain_control=maybe", env=room.env), 2, "boolean"
    )
    dead = tmp_path / "run"
    dead.mkdir(mode=0o700)
    env = {**room.env, "XDG_RUNTIME_DIR": str(dead), "PULSE_SERVER": f"unix:{dead}/pulse/native"}
    assert_one_line_error(run_cli("setup", env=env), 2, "not running")
    assert not room.ec_conf.exists()
