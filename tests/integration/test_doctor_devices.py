"""`doctor` and `devices` against the real PipeWire in the simulated room."""

from __future__ import annotations

import json
import re
import subprocess

from tests.conftest import run_cli


def doctor_json(env: dict[str, str], *args: str) -> tuple[int, dict]:
    proc = run_cli("doctor", "--json", *args, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def statuses(report: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["checks"]}


def failing(report: dict) -> set[str]:
    return {c["id"] for c in report["checks"] if c["status"] == "fail"}


REQUIRED_IDS = {
    "pipewire-running",
    "pulse-compat",
    "echo-cancel-config",
    "echo-cancel-loaded",
    "default-source",
    "default-persisted",
    "portaudio-pulse",
    "headless-linger",
    "api-key",
    "pipewire-realtime",
}


def _wait_default(room, name: str) -> None:
    import time

    deadline = time.monotonic() + 5
    while room.info().default_source != name and time.monotonic() < deadline:
        time.sleep(0.05)


def test_doctor_before_setup_fails_on_echo_cancel_and_after_setup_is_ok(room):
    code, report = doctor_json(room.env)
    assert set(statuses(report)) >= REQUIRED_IDS
    assert code == 1 and report["ok"] is False
    assert {"echo-cancel-config", "echo-cancel-loaded"} <= failing(report)
    fixes = {c["id"]: c["fix"] for c in report["checks"]}
    assert fixes["echo-cancel-config"] == "pivoicectl setup"

    run_cli("setup", env=room.env, check=True)
    code, report = doctor_json(room.env)
    assert code == 0 and report["ok"] is True, report
    s = statuses(report)
    for check_id in (
        "pipewire-running",
        "pulse-compat",
        "echo-cancel-config",
        "echo-cancel-loaded",
        "default-source",
        "default-persisted",
        "portaudio-pulse",
    ):
        assert s[check_id] == "pass", (check_id, report)
    assert s["headless-linger"] == "skip"  # no systemd user manager in the room
    assert s["api-key"] == "warn"


def test_doctor_names_each_broken_thing(room):
    run_cli("setup", env=room.env, check=True)

    # 1. default source changed behind our back
    subprocess.run(["pactl", "set-default-source", "sim_mic"], env=room.env, check=True)
    _wait_default(room, "sim_mic")
    code, report = doctor_json(room.env)
    assert code == 1 and "default-source" in failing(report)
    fix = next(c["fix"] for c in report["checks"] if c["id"] == "default-source")
    assert "pactl set-default-source source_ec" in fix

    # --fix repairs what is safe to repair, and re-checks
    code, report = doctor_json(room.env, "--fix")
    assert code == 0 and report["ok"] is True
    assert report["fixed"] == ["set the default source to source_ec"]
    assert room.info().default_source == "source_ec"

    # 2. the module is missing while the config stays (PipeWire not restarted after
    #    the file was put back, as after a hand-made copy)
    saved = room.ec_conf.read_bytes()
    room.ec_conf.unlink()
    run_cli("sim", "restart", env=room.env, check=True)
    room.ec_conf.write_bytes(saved)
    code, report = doctor_json(room.env)
    assert code == 1 and "echo-cancel-loaded" in failing(report)
    assert statuses(report)["echo-cancel-config"] == "pass"
    assert "was not restarted" in next(
        c["detail"] for c in report["checks"] if c["id"] == "echo-cancel-loaded"
    )
    run_cli("sim", "restart", env=room.env, check=True)
    code, report = doctor_json(room.env)
    assert code == 0, report

    # 3. the config removed
    room.ec_conf.unlink()
    code, report = doctor_json(room.env)
    assert code == 1 and "echo-cancel-config" in failing(report)


def test_doctor_without_any_audio_server_fails_cleanly(tmp_path):
    from tests.conftest import clean_env

    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = clean_env(XDG_RUNTIME_DIR=str(run), XDG_CONFIG_HOME=str(tmp_path / "c"))
    proc = run_cli("doctor", "--json", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert {"pipewire-running", "pulse-compat"} <= failing(report)
    assert statuses(report)["echo-cancel-loaded"] == "skip"
    text = run_cli("doctor", env=env)
    assert text.returncode == 1 and "systemctl --user enable --now pipewire" in text.stdout


def test_doctor_never_prints_the_api_key(shared_room):
    secret = "sk-test-THIS-MUST-NOT-LEAK-0123456789"
    env = {**shared_room.env, "OPENAI_API_KEY": secret}
    for args in (("doctor",), ("doctor", "--json")):
        proc = run_cli(*args, env=env)
        assert secret not in proc.stdout + proc.stderr
        assert "sk-test" not in proc.stdout + proc.stderr
    _, report = doctor_json(env)
    assert statuses(report)["api-key"] == "pass"


def test_doctor_checks_linger_where_systemd_runs(shared_room, tmp_path):
    """systemd and loginctl cannot run here; fakes stand in at that boundary only."""
    run = tmp_path / "run"
    (run / "systemd").mkdir(parents=True)
    (run / "systemd" / "private").touch()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, body in (("systemctl", "exit 0"), ("loginctl", 'echo "$LINGER"')):
        (bindir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bindir / name).chmod(0o755)
    base = {
        **shared_room.env,
        "XDG_RUNTIME_DIR": str(run),
        "PATH": f"{bindir}:{shared_room.env['PATH']}",
    }
    _, off = doctor_json({**base, "LINGER": "no"})
    linger = next(c for c in off["checks"] if c["id"] == "headless-linger")
    assert linger["status"] == "warn" and linger["fix"].startswith("sudo loginctl enable-linger ")
    _, on = doctor_json({**base, "LINGER": "yes"})
    assert statuses(on)["headless-linger"] == "pass"


def test_devices_json_lists_room_nodes_with_marks(shared_room):
    proc = run_cli("devices", "--json", env=shared_room.env, check=True)
    d = json.loads(proc.stdout)
    assert set(d) >= {"server", "sources", "sinks", "portaudio"}
    assert "PipeWire" in d["server"]["server_name"]
    sources = {s["name"]: s for s in d["sources"]}
    sinks = {s["name"]: s for s in d["sinks"]}
    for s in list(sources.values()) + list(sinks.values()):
        assert {"name", "description", "default", "monitor", "echo_cancelled"} <= set(s)
    assert sources["sim_mic"]["monitor"] is False
    assert sources["sim_speaker.monitor"]["monitor"] is True
    assert sum(s["default"] for s in sources.values()) == 1
    assert sinks["sim_speaker"]["default"] is True
    assert sources["sim_mic"]["rate"] == 48000 and sources["sim_mic"]["channels"] == 1
    names = [p["name"].split(" ")[0] for p in d["portaudio"]]
    assert "pulse" in names
    assert any(p["via_audio_server"] for p in d["portaudio"])


def test_devices_marks_source_ec_as_echo_cancelled(room):
    run_cli("setup", env=room.env, check=True)
    d = json.loads(run_cli("devices", "--json", env=room.env, check=True).stdout)
    ec = next(s for s in d["sources"] if s["name"] == "source_ec")
    assert ec["echo_cancelled"] is True and ec["default"] is True
    text = run_cli("devices", env=room.env, check=True).stdout
    assert "echo-cancelled" in text and "source_ec" in text


def test_devices_without_server_still_lists_portaudio_and_exits_1(tmp_path):
    from tests.conftest import clean_env

    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    proc = run_cli("devices", "--json", env=clean_env(XDG_RUNTIME_DIR=str(run)))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    d = json.loads(proc.stdout)
    assert "error" in d["server"] and d["sources"] == []


def test_doctor_sees_the_pinned_mic_unplugged(room):
    """Destroying the simulated mic node is what unplugging a USB mic does to PipeWire."""
    run_cli("setup", env=room.env, check=True)
    nodes = subprocess.run(["pw-cli", "ls", "Node"], env=room.env, capture_output=True, text=True)
    blocks = re.split(r"\n\s*(?=id \d+, type)", "\n" + nodes.stdout)
    mic_id = next(
        re.match(r"id (\d+),", b).group(1) for b in blocks if 'node.name = "sim_mic"' in b
    )
    subprocess.run(["pw-cli", "destroy", mic_id], env=room.env, check=True, capture_output=True)
    code, report = doctor_json(room.env)
    assert code == 1
    detail = next(c["detail"] for c in report["checks"] if c["id"] == "echo-cancel-config")
    assert "sim_mic" in detail and "does not exist" in detail


def test_doctor_reads_the_rooms_own_pipewire_scheduling_and_names_the_fix_without_it(room):
    """The check looks at the pipewire serving this runtime dir (the socket's listener),
    not at whichever pipewire runs on the machine; taken off realtime, it warns."""
    import os

    from pivoicectl.sim import instance
    from pivoicectl.system.scheduling import thread_scheduling

    pid = instance.read_instance(room.paths)["pids"]["pipewire"]
    threads = thread_scheduling(pid)
    _, report = doctor_json(room.env)
    check = next(c for c in report["checks"] if c["id"] == "pipewire-realtime")
    assert f"pipewire (pid {pid}):" in check["detail"]
    got_rt = any(t.realtime for t in threads)  # module-rt got it where the user may (root)
    assert check["status"] == ("pass" if got_rt else "warn"), check
    if got_rt:  # the thread's name: data-loop.0 from PipeWire 1.0 on, pipewire in 0.3
        rt = next(t for t in threads if t.realtime)
        assert rt.name in ("data-loop.0", "pipewire"), rt
        assert f"pipewire (pid {pid}): {rt.name} SCHED_FIFO 88" in check["detail"]

    for t in threads:  # what a Pi without rtkit or rtprio limits runs
        os.sched_setscheduler(t.tid, os.SCHED_OTHER, os.sched_param(0))
    _, report = doctor_json(room.env)
    check = next(c for c in report["checks"] if c["id"] == "pipewire-realtime")
    assert check["status"] == "warn", check
    assert f"pipewire (pid {pid}): no realtime thread" in check["detail"]
    assert "rtkit" in check["detail"] and check["fix"]  # install it, or ask it why not
