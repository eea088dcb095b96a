"""The libpulse edge of `run` on the real PipeWire: device names, the audio path through
the room, a flush, and how `--audio-backend auto` chooses.

The room's speaker is heard by its microphone, so the edge can check itself: a tone it
plays must come back in the mic blocks it delivers, and stop coming back after a flush.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.test_audio_edge import probe_streams, run_script

START = r"""
import asyncio, json, time
import numpy as np
from pivoicectl.dsp.levels import pcm16_dbfs
from pivoicectl.realtime.session.playback import PlaybackQueue
from pivoicectl.realtime.edges.pulse import PulseAudioEdge

def tone(seconds):
    t = np.arange(int(24000 * seconds)) / 24000
    return (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()

async def main():
    blocks = []
    queue = PlaybackQueue()
    audio = PulseAudioEdge(queue)
    audio.start(asyncio.get_running_loop(), lambda pcm, age_s: blocks.append((time.monotonic() - age_s, pcm)))
"""
"""The edge started in the room; `blocks` gathers its mic blocks, stamped."""

LOOP = (
    START
    + r"""
    await asyncio.sleep(1.0)
    out = {"block_bytes": sorted({len(p) for _, p in blocks}), "blocks_1s": len(blocks)}
    blocks.clear()
    queue.push("a", "r1", tone(2.0))
    await asyncio.sleep(1.0)
    reports = audio.drain_reports()
    out["reported_samples"] = sum(r.audio_samples for r in reports)
    out["first_audible_after_s"] = min(r.audible_s for r in reports if r.spans) - reports[0].callback_s
    t_flush = time.monotonic()
    plan = queue.interrupt()
    await asyncio.sleep(0.6)
    out["handed_ms"] = plan.played_samples / 24
    out["truncate_ms"] = plan.audio_end_ms
    out["unheard_ms"] = audio.unheard_at_abort_ms
    out["loud_during"] = [pcm16_dbfs(p) for t, p in blocks if t_flush - 0.6 < t < t_flush - 0.1]
    out["loud_after"] = [pcm16_dbfs(p) for t, p in blocks if t > t_flush + 0.25]
    out["silent_report"] = any(not r.spans and r.callback_s >= t_flush for r in audio.drain_reports())
    out["underflows"] = audio.underflows
    audio.stop()
    print(json.dumps(out))

asyncio.run(main())
"""
)

PACED = (
    START
    + r"""
    await asyncio.sleep(0.5)
    chunk, late = tone(0.1), {4: 0.05, 9: 0.07, 15: 0.04, 21: 0.06}
    t0 = time.monotonic()
    sounding_while_queued = []
    for i in range(30):  # the repeater server's pace: 100 ms chunks in real time, a few late
        due = t0 + 0.1 * i + late.get(i, 0.0)
        while time.monotonic() < due:
            await asyncio.sleep(0.005)
            sounding_while_queued.append(audio.sounding_until_s > time.monotonic())
        queue.push("a", "r1", chunk)
    while queue.queued_samples:
        await asyncio.sleep(0.002)
    t_empty = time.monotonic()
    sounding_s = audio.sounding_until_s - t_empty
    await asyncio.sleep(0.8)
    loud = [t for t, p in blocks if t > t0 and pcm16_dbfs(p) > -40]
    print(json.dumps({
        "mic_after_empty_ms": (loud[-1] - t_empty) * 1000,
        "sounding_after_empty_ms": sounding_s * 1000,
        "input_latency_ms": audio.input_latency_s * 1000,
        "sounding_share": sum(sounding_while_queued) / len(sounding_while_queued),
    }))
    audio.stop()

asyncio.run(main())
"""
)

CHOOSE = r"""
import json, sys
from pivoicectl.realtime.edges.choose import choose_backend
print(json.dumps([choose_backend(*args) for args in json.loads(sys.argv[1])]))
"""


@pytest.mark.timeout(60)
def test_streams_go_to_the_default_or_the_named_source_and_sink(shared_room):
    default = probe_streams(shared_room.env, "", "", "pulse")
    assert default == {"sources": ["sim_mic"], "sinks": ["sim_speaker"]}, default
    named = probe_streams(shared_room.env, "sim_speaker.monitor", "sim_air", "pulse")
    assert named == {"sources": ["sim_speaker.monitor"], "sinks": ["sim_air"]}, named


@pytest.mark.timeout(60)
def test_an_unknown_source_is_a_user_error_with_a_hint(shared_room):
    result = probe_streams(shared_room.env, "no_such_mic", "", "pulse")
    assert result["error"] == "the audio server has no source named 'no_such_mic'", result
    assert "pivoicectl devices" in result["hint"] and "portaudio" in result["hint"]


@pytest.mark.timeout(60)
def test_a_tone_goes_round_the_room_and_a_flush_stops_it(shared_room):
    r = run_script(shared_room.env, LOOP)
    assert r["block_bytes"] == [960]  # 20 ms mic blocks, nothing else
    assert 45 <= r["blocks_1s"] <= 55, r["blocks_1s"]  # real time, one per tick
    # Handed over ahead of the speaker by no more than the lead (60 ms) and a tick.
    assert 1000 * 24 <= r["reported_samples"] <= 1100 * 24, r["reported_samples"]
    assert 0 <= r["first_audible_after_s"] < 0.05
    assert min(r["loud_during"]) > -40, r["loud_during"]  # the mic hears the speaker
    assert max(r["loud_after"]) < -60, r["loud_after"]  # and stops hearing it
    assert r["silent_report"] is True
    # What the flush dropped from the server is not counted as heard.
    assert 5 <= r["unheard_ms"] <= 80, r
    assert r["truncate_ms"] == pytest.approx(r["handed_ms"] - r["unheard_ms"], abs=1)
    assert r["underflows"] == 0


@pytest.mark.timeout(60)
def test_the_edge_knows_how_long_the_speaker_still_sounds(shared_room):
    """Deltas at the repeater server's pace let the server's buffer run dry between them; there
    libpulse's own latency once read 0 ms while 400 ms were still buffered, the edge
    wrote far ahead, and the echo guard opened while the speaker still talked."""
    r = run_script(shared_room.env, PACED)
    # No more than the lead (60 ms) is at the server when the queue empties...
    assert 0 < r["sounding_after_empty_ms"] <= 65, r
    # ...and the speaker, heard through the room in the edge's own mic blocks, stops
    # then: after the echo path (17 ms), the mic's latency, a block and a tick (48 ms
    # measured), not 400 ms on.
    lag_ms = r["mic_after_empty_ms"] - r["sounding_after_empty_ms"]
    assert 0 <= lag_ms <= r["input_latency_ms"] + 17 + 40 + 15, r
    assert r["sounding_share"] > 0.9, r  # sounding almost throughout, gaps are short


@pytest.mark.timeout(60)
def test_auto_picks_pulse_for_server_names_and_portaudio_for_portaudio_ones(shared_room):
    cases = [
        ["auto", None, None],
        ["auto", "sim_mic", "sim_speaker"],
        ["auto", "0", None],  # a PortAudio index
        ["auto", None, "pulse"],  # a PortAudio name, not a sink of the server
        ["portaudio", None, None],
        ["pulse", None, None],
    ]
    got = run_script(shared_room.env, CHOOSE, json.dumps(cases))
    assert got == ["pulse", "pulse", "portaudio", "portaudio", "portaudio", "pulse"]
    no_server = {**shared_room.env, "PULSE_SERVER": "unix:/nonexistent/socket"}
    assert run_script(no_server, CHOOSE, json.dumps([["auto", None, None]])) == ["portaudio"]
