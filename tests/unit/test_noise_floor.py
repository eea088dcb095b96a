"""`NoiseFloor`: the one adaptive floor, and the decisions of everything built on it.

The rule is checked on level sequences (drops at once, rises no faster than the rate,
never below the minimum, equals the closed form). The callers are checked on one
recorded-like signal: their decisions are pinned in `noise_floor_callers.json`, recorded
from the code before the tracker was shared (each caller then had its own copy of the
rule), so a change in any caller's behaviour shows up as a changed frame index. Since
then the energy VAD measures int16 frames with `pcm16_dbfs` (whole RMS steps, as the
rest of the client always did) instead of an exact float sum; on this signal that moved
one edge of one syllable by one frame with the stand-in server's settings (168 -> 169),
and nothing else. The same decisions on every Python: the levels are counted in whole
steps with or without audioop (exact levels on Python 3.13 once moved that edge back and
two of the uplink's sends).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pivoicectl.dsp.levels import FLOOR_DBFS
from pivoicectl.dsp.noise_floor import NoiseFloor, NoiseFloorSettings
from pivoicectl.dsp.vad import StreamingVad, VadSettings
from pivoicectl.realtime.mic.barge_in import BargeInSettings
from pivoicectl.realtime.mic.echo_guard import EchoGuard, EchoGuardSettings
from pivoicectl.realtime.session.uplink import UplinkPacer, UplinkSettings

RATE = 24_000
BLOCK = 480  # 20 ms
BLOCK_S = 0.02
GOLDEN = Path(__file__).with_name("noise_floor_callers.json")


def tracker(rise_db_per_s: float = 3.0, min_dbfs: float = -59.0, start=None) -> NoiseFloor:
    return NoiseFloor(NoiseFloorSettings(rise_db_per_s=rise_db_per_s, min_dbfs=min_dbfs), start)


def run(floor: NoiseFloor, levels, elapsed_s: float = BLOCK_S) -> np.ndarray:
    return np.array([floor.update(float(level), elapsed_s) for level in levels])


# --- the rule --------------------------------------------------------------------------------


def test_the_first_block_sets_the_floor_and_a_quieter_one_pulls_it_down_at_once():
    floor = tracker()
    assert floor.floor_dbfs is None
    assert floor.update(-40.0, BLOCK_S) == -40.0  # no start: the first block calibrates
    assert floor.update(-52.5, BLOCK_S) == -52.5  # a step down: followed in one block
    assert floor.update(-52.0, BLOCK_S) == pytest.approx(-52.44)  # up: only 0.06 dB


def test_the_floor_rises_no_faster_than_the_rate_times_the_elapsed_time():
    levels = np.concatenate([np.full(50, -58.0), np.full(400, -30.0), np.full(5, -57.0)])
    out = run(tracker(rise_db_per_s=3.0), levels)
    assert out[49] == -58.0
    steps = np.diff(out[50:450])
    assert steps.max() == pytest.approx(0.06) and steps.min() == pytest.approx(0.06)
    assert out[449] == pytest.approx(-58.0 + 400 * 0.06)  # 8 s of rising, 28 dB to go
    assert out[450] == -57.0
    # The rise is per second, not per block: one block 1.5 s late may rise 4.5 dB.
    late = tracker(rise_db_per_s=3.0, start=-58.0)
    assert late.update(-30.0, 1.5) == pytest.approx(-53.5)
    assert late.update(-30.0, 0.0) == pytest.approx(-53.5)  # no time, no rise
    assert late.update(-60.0, -0.01) == -59.0  # a clock step back still lets it drop


def test_the_floor_stops_at_the_room_and_never_goes_below_the_minimum():
    out = run(tracker(rise_db_per_s=3.0, min_dbfs=-59.0), [-50.0] * 500)
    assert out.max() == -50.0  # it follows the room up, not past it
    silent = run(tracker(min_dbfs=-59.0), [FLOOR_DBFS] * 10)
    assert (silent == -59.0).all()  # digital silence reads as the minimum
    assert tracker(start=-90.0).floor_dbfs == -59.0  # so does a start below it
    unclamped = NoiseFloor(NoiseFloorSettings(rise_db_per_s=1.0))
    assert unclamped.update(FLOOR_DBFS, BLOCK_S) == FLOOR_DBFS


def test_a_start_is_a_floor_already_and_reset_and_retune():
    floor = tracker(start=-45.0)
    assert floor.floor_dbfs == -45.0
    assert floor.update(-20.0, BLOCK_S) == pytest.approx(-44.94)
    floor.retune(NoiseFloorSettings(rise_db_per_s=10.0, min_dbfs=-70.0))
    assert floor.floor_dbfs == pytest.approx(-44.94)  # retuning keeps the floor
    assert floor.update(-20.0, BLOCK_S) == pytest.approx(-44.74)  # and uses the new rate
    floor.reset()
    assert floor.floor_dbfs is None
    with pytest.raises(ValueError, match="negative"):
        NoiseFloorSettings(rise_db_per_s=-1.0)


def test_with_equal_blocks_the_floor_is_a_closed_form_cumulative_minimum():
    """floor[n] = min(level[n], floor[n-1] + r) unrolls to
    floor[n] = n*r + min over k <= n of (level[k] - k*r) (levels clamped at the minimum)."""
    levels = np.random.default_rng(3).uniform(-80.0, -20.0, 3000)
    levels[1000:1200] = FLOOR_DBFS  # digital silence
    r = 3.0 * BLOCK_S
    clamped = np.maximum(levels, -59.0)
    k = np.arange(levels.size)
    closed = k * r + np.minimum.accumulate(clamped - k * r)
    np.testing.assert_allclose(run(tracker(3.0, -59.0), levels), closed, atol=1e-9)


# --- the callers ------------------------------------------------------------------------


def room_recording(seed: int = 7) -> np.ndarray:
    """35 s of PCM16 shaped like a mic in a room (int16, 24 kHz).

    Room tone at -60 dBFS; speech (a 140 Hz voice with a 4 Hz syllable rhythm) at
    -32 dBFS; a fan at -45 dBFS for 16 s with speech over it at -25 dBFS; the fan
    stopping; speech at -35 dBFS; two seconds of digital silence (a converged canceller);
    room tone again and a last utterance at -30 dBFS.
    """
    rng = np.random.default_rng(seed)

    def noise(seconds: float, level_dbfs: float) -> np.ndarray:
        x = rng.standard_normal(int(seconds * RATE))
        x = np.convolve(x, np.ones(4) / 2.0, mode="same")  # a little low-pass: not white
        return x * (10 ** (level_dbfs / 20) / np.sqrt(np.mean(x * x)))

    def speech(seconds: float, level_dbfs: float) -> np.ndarray:
        t = np.arange(int(seconds * RATE)) / RATE
        f0 = 140.0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        voice = sum(np.sin(k * phase) / k for k in range(1, 12))
        syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0.0, None) ** 0.5
        x = voice * syllables + 0.05 * rng.standard_normal(t.size)
        return x * (10 ** (level_dbfs / 20) / np.sqrt(np.mean(x * x)))

    room = -60.0
    parts = [noise(2, room), speech(2, -32) + noise(2, room), noise(2, room), noise(16, -45)]
    parts[3][12 * RATE : 14 * RATE] += speech(2, -25)
    parts += [
        noise(3, room),
        speech(2, -35) + noise(2, room),
        np.zeros(2 * RATE),
        noise(2, room),
        speech(2, -30) + noise(2, room),
        noise(2, room),
    ]
    x = np.concatenate(parts)
    return np.round(np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)


def edges(decisions: list[bool]) -> list[int]:
    """The block indices where a decision changes (starting from False)."""
    previous = False
    out = []
    for i, decision in enumerate(decisions):
        if decision != previous:
            out.append(i)
            previous = decision
    return out


def caller_decisions() -> dict[str, list[int]]:
    x = room_recording()
    blocks = [x[i : i + BLOCK].tobytes() for i in range(0, x.size - BLOCK + 1, BLOCK)]
    out: dict[str, list[int]] = {}
    vads = {
        "vad_parrot": VadSettings(),
        "vad_standin": VadSettings(threshold_db=18.0, hangover_frames=0, noise_rise_db_per_s=5.0),
        "vad_barge_in": BargeInSettings().vad_settings(),
    }
    for name, settings in vads.items():
        vad = StreamingVad(RATE, settings)
        out[name] = edges([vad.process(b) for b in blocks])
    pacer = UplinkPacer(
        UplinkSettings(
            quiet_batch_ms=100, speech_batch_ms=40, idle_batch_ms=200, talk_batch_ms=200
        ),
        20,
    )
    out["uplink_sent"] = [
        i for i, b in enumerate(blocks) if pacer.feed(b, i * BLOCK_S, playing=False)
    ]
    # The guard while an answer plays at -40 dBFS; an interruption stops the answer for
    # one block, the next block is a new answer.
    guard = EchoGuard(EchoGuardSettings(mode="vad-gate"))
    out["guard_interrupts"] = []
    playing = True
    for i, b in enumerate(blocks):
        guard.reference(i * BLOCK_S, -40.0)
        decision = guard.feed(b, i * BLOCK_S, playing=playing)
        playing = not decision.interrupt
        if decision.interrupt:
            out["guard_interrupts"].append(i)
    return out


def test_the_signal_has_the_levels_it_claims():
    from pivoicectl.dsp.levels import frame_levels_dbfs

    levels = frame_levels_dbfs(room_recording(), BLOCK)
    assert levels.size == 1750
    assert np.median(levels[:100]) == pytest.approx(-60.0, abs=1.0)
    assert np.median(levels[300:900]) == pytest.approx(-45.0, abs=1.0)
    assert (levels[1350:1450] == FLOOR_DBFS).all()
    assert np.max(levels[100:200]) > -32.0


def test_every_caller_decides_as_before_the_tracker_was_shared():
    got = caller_decisions()
    want = json.loads(GOLDEN.read_text())
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name
    # The signal exercises what the floor is for: the fan is speech to the VAD until the
    # floor has risen to it (about 2 s at 3 dB/s), then not.
    assert want["vad_parrot"][2:4] == [300, 397]
