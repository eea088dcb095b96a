"""`run --input-device/--output-device` accept the audio server's source and sink names.

PortAudio only sees ALSA devices (`pulse`, `pipewire`, `default`), while users know the
names `pivoicectl devices` lists for the server. A server name is reached through
PortAudio's `pulse` device with PULSE_SOURCE/PULSE_SINK set; this checks in the room
which source and sink the streams really connect to.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = r"""
import asyncio, json, os, sys
from pivoicectl.audio_server import AudioServer
from pivoicectl.errors import UserError
from pivoicectl.realtime.audio_io import SoundDeviceAudio
from pivoicectl.realtime.playback import PlaybackQueue

async def main():
    queue = PlaybackQueue()
    audio = SoundDeviceAudio(queue, sys.argv[1] or None, sys.argv[2] or None)
    try:
        audio.start(asyncio.get_running_loop(), lambda pcm: None)
    except UserError as e:
        print(json.dumps({"error": e.message}))
        return
    queue.push("item", "resp", bytes(48000))  # 1 s of silence: the output stream starts
    await asyncio.sleep(0.6)
    with AudioServer.connect() as server:
        pulse = server._pulse
        sources = {s.index: s.name for s in pulse.source_list()}
        sinks = {s.index: s.name for s in pulse.sink_list()}
        me = str(os.getpid())
        mine = lambda o: o.proplist.get("application.process.id") == me
        result = {
            "sources": [sources.get(o.source) for o in pulse.source_output_list() if mine(o)],
            "sinks": [sinks.get(o.sink) for o in pulse.sink_input_list() if mine(o)],
        }
    audio.stop()
    print(json.dumps(result))

asyncio.run(main())
"""


def _probe(env: dict[str, str], input_device: str, output_device: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, input_device, output_device],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(60)
def test_server_source_and_sink_names_pick_the_streams_targets(shared_room):
    default = _probe(shared_room.env, "", "")
    assert default == {"sources": ["sim_mic"], "sinks": ["sim_speaker"]}, default
    named = _probe(shared_room.env, "sim_speaker.monitor", "sim_air")
    assert named == {"sources": ["sim_speaker.monitor"], "sinks": ["sim_air"]}, named


@pytest.mark.timeout(60)
def test_an_unknown_device_name_is_a_user_error(shared_room):
    result = _probe(shared_room.env, "no_such_mic", "")
    assert result == {"error": "no input device matches 'no_such_mic'"}
