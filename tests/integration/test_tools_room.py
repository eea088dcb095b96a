"""The built-in set_volume tool against a real PipeWire (the simulated room): the model's
call changes the default sink's volume as the audio server itself reports it, and an
argument out of range changes nothing."""

from __future__ import annotations

import asyncio
import json
import os

import pulsectl
import pytest

from pivoicectl.realtime.tools import ToolOutcome, load_toolbox

STEP = 1 / 65536
"""The audio server holds a volume in steps of this (of full scale)."""


def _use(env: dict[str, str], monkeypatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def _default_sink_volume(server: str) -> tuple[str, float]:
    with pulsectl.Pulse("pivoicectl-test", server=server) as pulse:
        name = pulse.server_info().default_sink_name
        return name, pulse.volume_get_all_chans(pulse.get_sink_by_name(name))


def _call(arguments: str) -> ToolOutcome:
    box = load_toolbox({}, dict(os.environ))
    return asyncio.run(asyncio.wait_for(box.call("set_volume", arguments), 20))


def test_set_volume_changes_the_default_sinks_volume(room, monkeypatch):
    _use(room.env, monkeypatch)
    server = room.env["PULSE_SERVER"]
    sink, before = _default_sink_volume(server)
    assert sink and abs(before - 0.40) > 0.05  # the room does not start at 40 %
    out = _call('{"percent": 40}')
    assert (out.ok, json.loads(out.output)) == (True, {"ok": True, "percent": 40})
    assert _default_sink_volume(server) == (sink, pytest.approx(0.40, abs=STEP))
    refused = _call('{"percent": 150}')
    assert not refused.ok and "150 is greater than the maximum of 100" in refused.error
    assert _default_sink_volume(server)[1] == pytest.approx(0.40, abs=STEP)  # unchanged
    assert json.loads(_call('{"percent": 0}').output) == {"ok": True, "percent": 0}
    assert _default_sink_volume(server)[1] == 0.0
