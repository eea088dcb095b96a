"""`run` waits at start for what it needs: the audio server, source_ec made the default
by WirePlumber, named devices. On a real PipeWire whose WirePlumber starts late, as at boot."""

from __future__ import annotations

import pytest

from pivoicectl.errors import UserError
from pivoicectl.sim import instance
from pivoicectl.system.audio_ready import AudioNeeds, needs_for, wait_for_audio
from tests.conftest import run_cli


def _use(env: dict[str, str], monkeypatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_waits_for_the_session_manager_before_recording_the_default_source(late_room, monkeypatch):
    run_cli("setup", env=late_room.env, check=True)
    _use(late_room.env, monkeypatch)
    needs = needs_for(None, None)
    assert needs.echo_cancel  # setup installed it and run records the default source
    instance.restart(late_room.paths)  # pipewire-pulse answers; WirePlumber comes 1.2 s later
    seen: list[str] = []
    waited_s = wait_for_audio(needs, 20.0, seen.append)
    assert seen == ["waiting for the session manager (WirePlumber)"], seen
    assert waited_s > 0.2
    assert late_room.info().default_source == "source_ec"


def test_a_stream_to_the_default_waits_for_the_session_manager_without_setup(
    late_room, monkeypatch
):
    """What an audio edge waits for before reopening a stream on the server's default."""
    _use(late_room.env, monkeypatch)
    instance.restart(late_room.paths)
    seen: list[str] = []
    waited_s = wait_for_audio(AudioNeeds(session_manager=True), 20.0, seen.append)
    assert seen == ["waiting for the session manager (WirePlumber)"], seen
    assert waited_s > 0.2


def test_nothing_to_wait_for_returns_at_once(shared_room, monkeypatch):
    _use(shared_room.env, monkeypatch)
    seen: list[str] = []
    assert wait_for_audio(AudioNeeds(), 5.0, seen.append) < 1.0 and seen == []


def test_a_missing_device_or_server_ends_with_exit_1_naming_it(shared_room, monkeypatch, tmp_path):
    _use(shared_room.env, monkeypatch)
    seen: list[str] = []
    with pytest.raises(UserError, match="the microphone usb_mic was not there") as e:
        wait_for_audio(AudioNeeds(input_device="usb_mic"), 0.5, seen.append)
    assert e.value.exit_code == 1 and seen == ["waiting for the microphone usb_mic"]
    dead = tmp_path / "run"
    dead.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(dead))
    monkeypatch.setenv("PULSE_SERVER", f"unix:{dead}/pulse/native")
    with pytest.raises(UserError, match="the audio server was not there"):
        wait_for_audio(AudioNeeds(), 0.3, seen.append)
