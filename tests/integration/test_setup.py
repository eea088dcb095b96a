"""`setup` against the real PipeWire in the simulated room."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from pivoicectl.errors import UserError
from pivoicectl.sim import instance
from pivoicectl.system import pw_metadata, session_manager, versions, wireplumber_state
from pivoicectl.system.audio_server import AudioServer
from pivoicectl.system.wireplumber_state import SOURCE_KEY, configured, parse_default_nodes
from tests.conftest import assert_one_line_error, run_cli
from tests.integration.conftest import LATE_WIREPLUMBER_S


@pytest.fixture
def room(late_room):
    """Every setup test runs where WirePlumber starts late after each restart, as after
    `systemctl --user restart` on a booted Pi: pipewire-pulse answers and lists source_ec
    before any session manager can take a default."""
    return late_room


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


def saved_state(room) -> dict[str, str]:
    f = room.paths.state / "wireplumber" / "default-nodes"
    return parse_default_nodes(f.read_text()) if f.exists() else {}


def persisted(room, kind: str = "source", expect: str | None = None) -> str | None:
    """What WirePlumber saved; with `expect`, wait up to 3 s for it (it saves lazily)."""
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


WHOLE_LISTS = wireplumber_state.rebuilds_lists(versions.installed_wireplumber())
"""WirePlumber 0.5: undo can put back its whole saved state; 0.4 never forgets an
earlier choice, so there only the configured names can be compared."""


def everything(room) -> dict:
    """All that setup may touch: the config tree, the defaults, WirePlumber's saved state."""
    info = room.info()
    saved = saved_state(room)
    return {
        "config": snapshot(room.paths.config),
        "default_source": info.default_source,
        "default_sink": info.default_sink,
        "saved": saved if WHOLE_LISTS else wireplumber_state.restorable(configured(saved), False),
    }


def wait_saved(room, check, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check(saved_state(room)):
        assert time.monotonic() < deadline, saved_state(room)
        time.sleep(0.05)


def stop_wireplumber(room) -> None:
    data = instance.read_instance(room.paths)
    pid, start = data["pids"]["wireplumber"], data["starts"]["wireplumber"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while instance.start_time(pid) == start:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_the_room_restart_returns_before_a_late_wireplumber_is_ready(room):
    """The race is really there: after the restart pipewire-pulse answers, but nothing
    can set a default until WirePlumber runs."""
    run_cli("sim", "restart", env=room.env, check=True)
    with AudioServer.connect(server=room.env["PULSE_SERVER"]) as server:
        assert server.find("sim_mic", "source") is not None
        assert not session_manager.ready(room.env)
        with pytest.raises(UserError, match="session manager"):
            server.set_default_source("sim_mic", timeout_s=0.1)
    session_manager.wait_ready([("sim_mic", "source")], LATE_WIREPLUMBER_S + 10, env=room.env)


def test_setup_and_undo_after_a_restart_with_a_late_wireplumber(room):
    """What failed on a booted system: setup right after the restart, then setup again
    after a manual restart, then undo; all as before, down to WirePlumber's state."""
    baseline(room)
    before = everything(room)
    saved = saved_state(room)
    assert saved[SOURCE_KEY] == "sim_mic"
    assert saved["default.configured.audio.sink"] == "sim_speaker"
    first = setup_json(room)
    assert first["complete"] is True and first["persisted"] is True
    assert room.info().default_source == "source_ec"
    with AudioServer.connect(server=room.env["PULSE_SERVER"]) as server:
        assert server.capture_source_of("capture.source_ec") == "sim_mic"
    run_cli("sim", "restart", env=room.env, check=True)
    second = setup_json(room)
    assert second["persisted"] is True
    assert room.info().default_source == "source_ec"
    undo = json.loads(run_cli("setup", "--undo", "--json", env=room.env, check=True).stdout)
    assert undo["persisted"] is True
    assert "source_ec" not in room.names()
    assert everything(room) == before


def test_undo_rebuilds_wireplumbers_list_of_earlier_defaults(room):
    """WirePlumber keeps earlier choices (.0, .1, ...); undo puts 0.5's list back in
    order (0.4's only as far as the configured name: it never forgets one)."""
    with AudioServer.connect(server=room.env["PULSE_SERVER"]) as server:
        server.set_default_source("sim_speaker.monitor")
        server.set_default_source("sim_mic")
    # Both choices saved (the file named sim_mic alone before them, so wait for both).
    wait_saved(
        room,
        lambda s: (
            configured(s)[SOURCE_KEY][:1] == ["sim_mic"]
            and "sim_speaker" in configured(s)[SOURCE_KEY]
        ),
    )
    if WHOLE_LISTS:
        assert configured(saved_state(room))[SOURCE_KEY] == ["sim_mic", "sim_speaker"]
    baseline(room)
    before = everything(room)
    setup_json(room)
    stack = configured(saved_state(room))[SOURCE_KEY]
    assert stack[0] == "source_ec" and "sim_mic" in stack
    run_cli("setup", "--undo", env=room.env, check=True)
    assert everything(room) == before


def test_undo_forgets_source_ec_when_nothing_was_saved_before(room):
    """A Pi where the mic was never chosen by hand: WirePlumber had saved no source."""
    pw_metadata.delete("default", "default.configured.audio.source", env=room.env)
    wait_saved(room, lambda s: SOURCE_KEY not in s)
    baseline(room)
    before = everything(room)
    setup_json(room)
    assert persisted(room) == "source_ec"
    run_cli("setup", "--undo", env=room.env, check=True)
    assert everything(room) == before
    assert "default.configured.audio.source" not in saved_state(room)


def test_a_missing_session_manager_is_named_not_a_dead_server(room):
    setup_json(room)
    stop_wireplumber(room)
    with (
        AudioServer.connect(server=room.env["PULSE_SERVER"]) as server,
        pytest.raises(UserError, match=r"session manager \(WirePlumber\) is not running"),
    ):
        server.set_default_source("sim_mic", timeout_s=0.1)
    with pytest.raises(UserError, match=r"WirePlumber\) was not ready within 1 s"):
        session_manager.wait_ready([("sim_mic", "source")], 1.0, env=room.env)
    # A restart that leaves WirePlumber down: setup waits, then says what is missing.
    env = {**room.env, "PIVOICECTL_RESTART_CMD": "true"}
    proc = run_cli("setup", "--aec-arg", "webrtc.noise_suppression=true", "--timeout", "1", env=env)
    assert_one_line_error(proc, 1, "WirePlumber", "not ready")
    assert "stopped answering" not in proc.stderr


def test_doctor_fix_right_after_a_restart_waits_for_wireplumber(room):
    setup_json(room)
    run_cli("sim", "restart", env=room.env, check=True)
    assert not session_manager.ready(room.env)  # the race doctor --fix must wait out
    proc = run_cli("doctor", "--fix", "--json", env=room.env)
    report = json.loads(proc.stdout)
    checks = {c["id"]: c["status"] for c in report["checks"]}
    assert proc.returncode == 0, (proc.stderr, checks)
    assert checks["default-source"] == "pass" and checks["default-persisted"] == "pass"
    assert room.info().default_source == "source_ec"


def test_a_file_tree_that_is_not_what_it_should_be_is_one_line_and_changes_nothing(room, tmp_path):
    # A file where the drop-in directory belongs (the room's own drop-in directory is
    # put aside meanwhile): setup and its dry run both say so.
    aside = room.conf_dir.with_name("aside")
    room.conf_dir.rename(aside)
    room.conf_dir.write_text("not a directory\n")
    for args in ((), ("--dry-run",)):
        proc = run_cli("setup", *args, env=room.env)
        assert_one_line_error(proc, 2, "cannot read", "pipewire.conf.d", "move that file away")
    assert room.conf_dir.read_text() == "not a directory\n"
    assert not (room.paths.state / "pivoicectl" / "setup-undo.json").exists()
    room.conf_dir.unlink()
    aside.rename(room.conf_dir)
    # A directory where the config file belongs.
    room.ec_conf.mkdir(parents=True)
    assert_one_line_error(run_cli("setup", env=room.env), 2, "60-echo-cancel.conf", "directory")
    room.ec_conf.rmdir()
    # A state home that cannot hold the undo record: nothing of the user's is touched.
    not_a_dir = tmp_path / "state-file"
    not_a_dir.write_text("")
    env = {**room.env, "XDG_STATE_HOME": str(not_a_dir)}
    before = snapshot(room.paths.config)
    assert_one_line_error(run_cli("setup", env=env), 2, "cannot write", "setup-undo.json")
    assert_one_line_error(run_cli("setup", "--undo", env=env), 2, "cannot read", "setup-undo.json")
    assert snapshot(room.paths.config) == before
    assert "source_ec" not in room.names()


def test_undo_of_a_record_from_an_earlier_version_sets_the_previous_defaults_back(room):
    """Records written before WirePlumber's saved defaults were kept name only the
    previous default source and sink: undo still works from them."""
    setup_json(room)
    undo_file = room.paths.state / "pivoicectl" / "setup-undo.json"
    record = json.loads(undo_file.read_text())
    del record["previous_saved_defaults"]
    record["version"] = 1
    undo_file.write_text(json.dumps(record))
    r = json.loads(run_cli("setup", "--undo", "--json", env=room.env, check=True).stdout)
    assert r["operation"] == "undo" and r["default_source"] == "sim_mic"
    assert room.info().default_source == "sim_mic"
    assert persisted(room, expect="sim_mic") == "sim_mic"
    assert not undo_file.exists() and not room.ec_conf.exists()
