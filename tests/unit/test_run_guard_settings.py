"""`run --echo-guard` takes the echo return loss from the last `measure` result."""

from __future__ import annotations

import json

import pytest

from pivoicectl.commands.run import guard_settings
from pivoicectl.realtime.mic.settings import EchoGuardSettings
from pivoicectl.realtime.settings import RunSettings
from pivoicectl.system import paths


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return paths.last_measure_file()


def _store(path, record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_measured_erl_is_used_when_none_is_given(state):
    _store(state, {"time": "2026-11-21T07:00:00", "erl_db": 11.87, "erle_db": 3.0})
    guard, note = guard_settings(RunSettings(echo_guard=EchoGuardSettings(mode="vad-gate")))
    assert guard.erl_db == 11.87
    assert note is not None and "11.9 dB" in note and "2026-11-21T07:00:00" in note


def test_a_given_erl_wins_over_the_measured_one(state):
    _store(state, {"time": "t", "erl_db": 11.87})
    guard, note = guard_settings(RunSettings(echo_guard=EchoGuardSettings(mode="gate", erl_db=4.0)))
    assert guard.erl_db == 4.0 and note is None


def test_guard_off_reads_nothing(state):
    _store(state, {"time": "t", "erl_db": 11.87})
    guard, note = guard_settings(RunSettings())
    assert guard.mode == "off" and guard.erl_db is None and note is None


@pytest.mark.parametrize(
    "content",
    [None, "not json", json.dumps([1, 2]), json.dumps({"erl_db": None}), '{"erl_db": NaN}'],
)
def test_no_usable_measurement_means_estimating(state, content):
    if content is not None:
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(content)
    guard, note = guard_settings(RunSettings(echo_guard=EchoGuardSettings(mode="vad-gate")))
    assert guard.erl_db is None
    assert note is not None and "estimating" in note


def test_what_measure_saves_is_what_run_reads(state):
    from pivoicectl.system import last_measure

    last_measure.save({"erl_db": 9.5, "erle_db": 2.0})
    erl = last_measure.measured_erl()
    assert erl is not None and erl.erl_db == 9.5 and erl.measured_at[:2] == "20"
    assert last_measure.load()["erle_db"] == 2.0
