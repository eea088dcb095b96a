"""Room, WirePlumber state, pw-metadata listings, sim processes, versions, restart plan, file operations, paths."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pivoicectl.sim import instance
from pivoicectl.sim import room as roomlib
from pivoicectl.system import fileops, paths, pw_metadata, restart, versions, wireplumber_state
from pivoicectl.system.audio_server import is_echo_cancelled, parse_pipewire_version


def test_impulse_response_has_the_direct_path_at_the_configured_delay_and_gain():
    r = roomlib.RoomSettings(delay_ms=17.0, gain=0.25, rt60_s=0.0)
    ir = roomlib.impulse_response(r)
    # the graph adds one period (QUANTUM samples) by itself: the IR holds the rest
    assert int(np.argmax(np.abs(ir))) == 816 - roomlib.QUANTUM
    assert ir[816 - roomlib.QUANTUM] == pytest.approx(0.25)
    assert roomlib.expected_erl_db(r) == pytest.approx(12.04, abs=0.01)


def test_reverb_tail_energy_matches_reverb_db_and_is_reproducible():
    r = roomlib.RoomSettings(delay_ms=10.0, gain=0.5, rt60_s=0.3, reverb_db=-6.0)
    ir = roomlib.impulse_response(r).astype(np.float64)
    d = 480 - roomlib.QUANTUM
    tail = ir[d + 1 :]
    assert 10 * np.log10(np.sum(tail**2) / ir[d] ** 2) == pytest.approx(-6.0, abs=0.05)
    assert len(ir) == d + 1 + round(0.3 * 48000)
    assert np.array_equal(ir, roomlib.impulse_response(r).astype(np.float64))
    # ERL counts the tail: 6.02 dB direct, minus 10log10(1 + 10^-0.6)
    assert roomlib.expected_erl_db(r) == pytest.approx(6.02 - 0.97, abs=0.02)


@pytest.mark.parametrize(
    "bad",
    [
        {"delay_ms": -1},
        {"delay_ms": 5.0},
        {"gain": 0},
        {"rt60_s": 3},
        {"reverb_db": 40},
        {"rate": 12345},
    ],
)
def test_room_validation(bad):
    with pytest.raises(ValueError):
        roomlib.RoomSettings(**bad).validate()


def test_room_config_names_its_nodes_and_ir():
    text = roomlib.pipewire_config(roomlib.RoomSettings(), paths.Path("/tmp/x/ir.wav"))
    for name in ("sim_speaker", "sim_air", "sim_mic", "sim_echo_in", "/tmp/x/ir.wav"):
        assert name in text
    assert "session.suspend-timeout-seconds = 0" in text


def test_wireplumber_state_parsing():
    text = "[default-nodes]\ndefault.configured.audio.source=source_ec\n# c\nbogus\n"
    assert wireplumber_state.parse_default_nodes(text) == {
        "default.configured.audio.source": "source_ec"
    }


def test_version_parsing():
    assert (
        versions.parse_pipewire(
            "pipewire\nCompiled with libpipewire 0.3.65\nLinked with libpipewire 0.3.65"
        )
        == "0.3.65"
    )
    assert versions.parse_wireplumber("Linked with libwireplumber 0.4.13") == "0.4.13"
    assert versions.parse_pipewire("") is None
    assert parse_pipewire_version("PulseAudio (on PipeWire 1.4.2)") == "1.4.2"
    assert parse_pipewire_version("pulseaudio") is None


def test_echo_cancelled_detection():
    assert is_echo_cancelled({"node.group": "echo-cancel-123-1"}, "whatever")
    assert is_echo_cancelled({}, "source_ec")
    assert not is_echo_cancelled({"node.group": "filter-chain-1"}, "sim_mic")


def test_restart_plan_order(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("PIVOICECTL_RESTART_CMD", raising=False)
    assert restart.plan().method == "manual"
    monkeypatch.setenv("PIVOICECTL_RESTART_CMD", "true")
    assert restart.plan() == restart.RestartPlan("command", "true")
    (tmp_path / "systemd").mkdir()
    (tmp_path / "systemd" / "private").touch()
    monkeypatch.setattr("shutil.which", lambda exe: "/bin/systemctl")
    assert restart.plan().method == "systemd"


def test_restart_failure_is_a_user_error():
    from pivoicectl.errors import UserError

    with pytest.raises(UserError) as e:
        restart.execute(restart.RestartPlan("command", "echo broken >&2; exit 3"))
    assert "exit 3" in e.value.message and "broken" in e.value.message


def test_atomic_write_and_backup(tmp_path):
    target = tmp_path / "a" / "b" / "file.conf"
    assert fileops.missing_parents(target) == [tmp_path / "a", tmp_path / "a" / "b"]
    fileops.atomic_write(target, b"one")
    assert target.read_bytes() == b"one"
    b1 = fileops.backup(target, tmp_path / "bk")
    b2 = fileops.backup(target, tmp_path / "bk")
    assert b1 != b2 and b1.read_bytes() == b2.read_bytes() == b"one"
    fileops.atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.conf"]  # no temp left


def test_paths_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "st"))
    assert paths.echo_cancel_conf() == tmp_path / "cfg/pipewire/pipewire.conf.d/60-echo-cancel.conf"
    assert paths.wireplumber_default_nodes() == tmp_path / "st/wireplumber/default-nodes"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    assert paths.config_home() == paths.Path.home() / ".config"
    monkeypatch.setenv("PULSE_SERVER", "unix:/x/native")
    assert paths.pulse_socket() == paths.Path("/x/native")


def test_wireplumber_saved_stacks_are_read_newest_first_and_stop_at_a_gap():
    saved = {
        "default.configured.audio.source": "source_ec",
        "default.configured.audio.source.0": "usb_mic",
        "default.configured.audio.source.1": "hdmi_mic",
        "default.configured.audio.source.3": "never reached: .2 is missing",
        "default.configured.audio.sink": "speaker",
    }
    assert wireplumber_state.configured(saved) == {
        "default.configured.audio.source": ["source_ec", "usb_mic", "hdmi_mic"],
        "default.configured.audio.sink": ["speaker"],
    }
    assert wireplumber_state.configured({}) == {
        "default.configured.audio.source": [],
        "default.configured.audio.sink": [],
    }


def test_pw_metadata_listing_is_parsed_for_subject_zero_only():
    text = (
        'Found "default" metadata 51\n'
        "update: id:0 key:'default.audio.source' value:'{\"name\":\"sim_mic\"}' "
        "type:'Spa:String:JSON'\n"
        "update: id:0 key:'default.configured.audio.source' value:'{ \"name\": \"it's\" }' "
        "type:'Spa:String:JSON'\n"
        "update: id:42 key:'target.object' value:'x' type:''\n"
    )
    assert pw_metadata.parse(text) == {
        "default.audio.source": '{"name":"sim_mic"}',
        "default.configured.audio.source": '{ "name": "it\'s" }',
    }
    assert pw_metadata.parse("") is None  # nobody provides that metadata


def test_a_process_is_known_by_its_pid_and_start_time():
    me = os.getpid()
    start = instance.start_time(me)
    assert start is not None and start == instance.start_time(me)
    assert instance._alive(me, start)
    assert not instance._alive(me, start + 1)  # the same pid, another process
    assert not instance._alive(None, start)
    assert instance.start_time(2**22 + 1) is None  # above pid_max: no such process
