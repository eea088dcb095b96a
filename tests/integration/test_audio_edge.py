"""The sound-device edge of `run` on the real PipeWire: device names and the output stream.

PortAudio only sees ALSA devices (`pulse`, `pipewire`, `default`), while users know the
names `pivoicectl devices` lists for the server. A server name is reached through
PortAudio's `pulse` device with PULSE_SOURCE/PULSE_SINK set; this checks in the room
which source and sink the streams really connect to. The output stream runs only while
there is audio and a barge-in aborts it; the lifecycle test follows it through an
answer, the idle stop, and an interrupted answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

PROBE = r"""
import asyncio, json, os, sys
from pivoicectl.errors import UserError
from pivoicectl.realtime.edges.portaudio import SoundDeviceAudio
from pivoicectl.realtime.session.playback import PlaybackQueue
from pivoicectl.realtime.edges.pulse import PulseAudioEdge
from tests.integration.audio import streams_of

async def main():
    queue = PlaybackQueue()
    edge = PulseAudioEdge if sys.argv[3] == "pulse" else SoundDeviceAudio
    audio = edge(queue, sys.argv[1] or None, sys.argv[2] or None)
    try:
        audio.start(asyncio.get_running_loop(), lambda pcm, age_s: None)
    except UserError as e:
        print(json.dumps({"error": e.message, "hint": e.hint}))
        return
    queue.push("item", "resp", bytes(48000))  # 1 s of silence: the output stream starts
    await asyncio.sleep(0.6)
    result = streams_of(os.environ, os.getpid())
    audio.stop()
    print(json.dumps(result))

asyncio.run(main())
"""


def run_script(env: dict[str, str], code: str, *args: str, timeout: float = 45) -> Any:
    """Run `code` in a fresh interpreter in the room; the JSON of its last line."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def probe_streams(
    env: dict[str, str], input_device: str, output_device: str, backend: str = "portaudio"
) -> dict:
    """The source and sink the `backend` edge's streams connect to, or its UserError."""
    return run_script(env, PROBE, input_device, output_device, backend, timeout=30)


@pytest.mark.timeout(60)
def test_server_source_and_sink_names_pick_the_streams_targets(shared_room):
    default = probe_streams(shared_room.env, "", "")
    assert default == {"sources": ["sim_mic"], "sinks": ["sim_speaker"]}, default
    named = probe_streams(shared_room.env, "sim_speaker.monitor", "sim_air")
    assert named == {"sources": ["sim_speaker.monitor"], "sinks": ["sim_air"]}, named


@pytest.mark.timeout(60)
def test_an_unknown_device_name_is_a_user_error(shared_room):
    result = probe_streams(shared_room.env, "no_such_mic", "")
    assert result["error"] == "no input device matches 'no_such_mic'", result


LIFECYCLE = r"""
import asyncio, json, time
import numpy as np
from pivoicectl.realtime.edges.portaudio import SoundDeviceAudio
from pivoicectl.realtime.session.playback import PlaybackQueue

def tone(seconds):
    t = np.arange(int(24000 * seconds)) / 24000
    return (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()

async def main():
    queue = PlaybackQueue()
    audio = SoundDeviceAudio(queue, idle_stop_s=0.3)
    audio.start(asyncio.get_running_loop(), lambda pcm, age_s: None)
    out = {"idle_at_start": audio._out.active}
    queue.push("a", "r1", tone(0.3))
    await asyncio.sleep(0.2)
    out["playing"] = audio._out.active
    await asyncio.sleep(0.8)  # 0.1 s of tone left, then idle_stop_s
    out["stopped_after_idle"] = not audio._out.active
    out["heard_1"] = sum(r.audio_samples for r in audio.drain_reports())
    queue.push("b", "r2", tone(2.0))
    await asyncio.sleep(0.5)
    t_interrupt = time.monotonic()
    plan = queue.interrupt()
    await asyncio.sleep(0.2)
    reports = audio.drain_reports()
    out["aborted"] = not audio._out.active
    out["silent_report_after"] = any(
        r.callback_s >= t_interrupt and not r.spans for r in reports
    )
    out["audio_after_interrupt"] = sum(
        r.audio_samples for r in reports if r.callback_s > t_interrupt + 0.01
    )
    out["handed_2"] = plan.played_samples
    out["starts"], out["aborts"] = audio.output_starts, audio.output_aborts
    out["unheard_at_abort_ms"] = audio.unheard_at_abort_ms
    audio.stop()
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.mark.timeout(60)
def test_output_stream_runs_only_while_playing_and_a_flush_aborts_it(shared_room):
    out = subprocess.run(
        [sys.executable, "-c", LIFECYCLE],
        env=shared_room.env,
        capture_output=True,
        text=True,
        timeout=45,
        check=True,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["idle_at_start"] is False  # nothing to play: no stream, no callbacks
    assert r["playing"] is True
    assert r["stopped_after_idle"] is True
    assert r["heard_1"] == 24000 * 3 // 10  # the whole first answer was handed over
    assert r["aborted"] is True and r["aborts"] == 1 and r["starts"] == 2
    assert r["silent_report_after"] is True  # what tells the conversation it went quiet
    assert r["audio_after_interrupt"] == 0
    assert 0.4 * 24000 <= r["handed_2"] <= 0.7 * 24000  # about 0.5 s of the second
    assert r["unheard_at_abort_ms"] >= 20
