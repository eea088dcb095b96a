"""`UplinkPacer`: when a mic block must go out now and when a quiet one may wait.

Real PCM16 (24 kHz mono, little-endian) at known RMS levels; time is the `now_s`
argument, so hangover and the rising noise floor are simulated, not waited for.
"""

from __future__ import annotations

import numpy as np
import pytest

from pivoicectl.dsp.levels import pcm16_dbfs
from pivoicectl.realtime.session.uplink import UplinkPacer, UplinkSettings

RATE = 24000
BLOCK_MS = 20
BLOCK_S = BLOCK_MS / 1000
BLOCK_SAMPLES = RATE * BLOCK_MS // 1000  # 480


def silence() -> bytes:
    return np.zeros(BLOCK_SAMPLES, dtype="<i2").tobytes()


def noise(dbfs: float, seed: int = 0) -> bytes:
    """White noise whose RMS is `dbfs`."""
    x = np.random.default_rng(seed).standard_normal(BLOCK_SAMPLES)
    x *= 32768.0 * 10 ** (dbfs / 20) / np.sqrt(np.mean(x * x))
    return np.round(x).astype("<i2").tobytes()


def sine(dbfs: float, hz: float = 1000.0) -> bytes:
    """A sine whose RMS is `dbfs` (1 kHz: a whole number of cycles per 20 ms block)."""
    t = np.arange(BLOCK_SAMPLES) / RATE
    amp = 32768.0 * 10 ** (dbfs / 20) * np.sqrt(2)
    return np.round(amp * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def feed_all(pacer: UplinkPacer, blocks: list[bytes], start_s: float = 0.0) -> list[bool]:
    return [pacer.feed(b, start_s + i * BLOCK_S) for i, b in enumerate(blocks)]


def until_sent(pacer: UplinkPacer, block: bytes, t: float) -> float:
    """Feed `block` until one is sent (a batch boundary); the time of the next block."""
    for _ in range(100):
        sent = pacer.feed(block, t)
        t += BLOCK_S
        if sent:
            return t
    raise AssertionError("never sent")


def batching(quiet_batch_ms: int = 100, **kw: float) -> UplinkPacer:
    return UplinkPacer(UplinkSettings(quiet_batch_ms=quiet_batch_ms, **kw), BLOCK_MS)


F, T = False, True


def test_the_test_signals_have_the_levels_they_claim():
    assert len(silence()) == BLOCK_SAMPLES * 2
    assert pcm16_dbfs(silence()) == -120.0
    # audioop.rms (used where Python still has it) rounds the RMS down to whole steps:
    # 10.4 steps read as 10 at -70 dBFS.
    assert pcm16_dbfs(noise(-70)) == pytest.approx(-70, abs=0.4)
    assert pcm16_dbfs(noise(-45)) == pytest.approx(-45, abs=0.1)
    assert pcm16_dbfs(sine(-20)) == pytest.approx(-20, abs=0.05)
    assert pcm16_dbfs(sine(-33)) == pytest.approx(-33, abs=0.05)


def test_quiet_batch_ms_zero_sends_every_block_at_once():
    pacer = UplinkPacer(UplinkSettings(), BLOCK_MS)
    assert pacer.settings.quiet_batch_ms == 0
    blocks = [silence(), noise(-70), sine(-20), silence(), noise(-45)] * 4
    assert feed_all(pacer, blocks) == [T] * 20


@pytest.mark.parametrize("quiet", [silence(), noise(-70)], ids=["digital_silence", "noise_-70"])
def test_quiet_blocks_go_out_once_every_quiet_batch_ms(quiet):
    pacer = batching(100)
    assert feed_all(pacer, [quiet] * 15) == [F, F, F, F, T] * 3


def test_the_batch_length_follows_quiet_batch_ms_and_the_block_length():
    pacer = batching(60)
    assert feed_all(pacer, [silence()] * 9) == [F, F, T] * 3
    # 500 ms of 10 ms blocks: every 50th block.
    pacer = UplinkPacer(UplinkSettings(quiet_batch_ms=500), 10)
    out = [pacer.feed(silence(), i * 0.01) for i in range(100)]
    assert [i for i, sent in enumerate(out) if sent] == [49, 99]


def test_a_loud_block_goes_out_at_once_mid_batch_then_hangover_then_batching_resumes():
    pacer = batching(100, hangover_ms=800)
    t = 0.0
    out = []
    for _ in range(2):  # two quiet blocks waiting
        out.append(pacer.feed(noise(-70), t))
        t += BLOCK_S
    assert out == [F, F]
    loud_s = t
    assert pacer.feed(sine(-20), loud_s) is True  # mid-batch: sent at once
    t += BLOCK_S
    # Quiet blocks within 800 ms of the loud one: one by one.
    during = []
    while t < loud_s + 0.8 - 1e-9:
        during.append(pacer.feed(noise(-70), t))
        t += BLOCK_S
    assert len(during) == 39 and all(during)
    # From the end of the hangover on, batching again, counting from zero.
    assert t == pytest.approx(loud_s + 0.8)
    after = [pacer.feed(noise(-70), t + i * BLOCK_S) for i in range(10)]
    assert after == [F, F, F, F, T] * 2


def test_quiet_means_batching_on_and_no_loud_block_for_the_hangover():
    pacer = batching(100, hangover_ms=200)
    assert pacer.quiet(0.0)
    pacer.feed(sine(-20), 0.0)
    assert not pacer.quiet(0.1)
    assert pacer.quiet(0.2)
    assert not UplinkPacer(UplinkSettings(quiet_batch_ms=0), BLOCK_MS).quiet(5.0)


def test_each_loud_block_restarts_the_hangover():
    pacer = batching(100, hangover_ms=200)
    assert pacer.feed(sine(-20), 0.0) is True
    assert pacer.feed(silence(), 0.15) is True
    assert pacer.feed(sine(-20), 0.18) is True  # hangover now ends at 0.38
    assert pacer.feed(silence(), 0.30) is True
    assert pacer.feed(silence(), 0.37) is True
    assert [pacer.feed(silence(), 0.38 + i * BLOCK_S) for i in range(5)] == [F, F, F, F, T]


def test_a_block_just_below_loud_dbfs_waits_and_just_above_is_sent():
    pacer = batching(100)
    feed_all(pacer, [silence()] * 5)  # floor at the bottom: loud_dbfs (-55) decides
    assert pacer.feed(sine(-56), 0.2) is False
    pacer = batching(100)
    feed_all(pacer, [silence()] * 5)
    assert pacer.feed(sine(-54), 0.2) is True


def test_the_floor_rises_so_steady_noise_above_loud_dbfs_batches_again():
    pacer = batching(100, hangover_ms=800, loud_dbfs=-55, floor_margin_db=10, floor_rise_db_per_s=1)
    steady = noise(-45)
    n = 1000  # 20 s of 20 ms blocks
    out = feed_all(pacer, [steady] * n)
    # At first -45 dBFS is 10 dB above loud_dbfs: every block goes out at once.
    assert all(out[: 9 * 50])
    # The floor starts at loud_dbfs - margin (-65) and rises 1 dB/s: after ~10 s the
    # noise is no longer margin above it, and after the hangover batching resumes.
    first_wait = out.index(False)
    assert 10.0 <= first_wait * BLOCK_S <= 11.0, first_wait * BLOCK_S
    tail = out[first_wait:]
    assert tail[: 4 * 5] == [F, F, F, F, T] * 4
    assert sum(out[-250:]) == 50  # the last 5 s: one send per 100 ms
    # The floor stopped at the noise (it follows the room up, not past it) ...
    t = until_sent(pacer, steady, n * BLOCK_S)
    assert pacer.feed(steady, t) is False
    # ... so speech 12 dB above the steady noise still goes out at once,
    assert pacer.feed(sine(-33), t + BLOCK_S) is True
    # and starts a hangover.
    assert pacer.feed(steady, t + 2 * BLOCK_S) is True


def test_after_the_floor_rose_something_only_8_db_above_it_waits():
    pacer = batching(100)
    steady = noise(-45)
    feed_all(pacer, [steady] * 1000)
    t = until_sent(pacer, steady, 1000 * BLOCK_S)
    assert [pacer.feed(sine(-37), t + i * BLOCK_S) for i in range(5)] == [F, F, F, F, T]


def test_the_floor_drops_at_once_when_the_room_gets_quieter():
    pacer = batching(100)
    feed_all(pacer, [noise(-45)] * 1000)  # floor up at -45
    t = 1000 * BLOCK_S
    pacer.feed(silence(), t)  # the noise stops: floor down to the bottom at once
    # -50 dBFS is now above loud_dbfs (-55) and far above the floor: sent at once.
    assert pacer.feed(sine(-50), t + BLOCK_S) is True


def test_digital_silence_does_not_drag_the_floor_below_loud_dbfs_minus_the_margin():
    """After a converged canceller's exact zeros, a louder room is learnt as fast as at
    the start (from -65 dBFS at 1 dB/s), not from -120 dBFS (a minute of every block)."""
    pacer = batching(100, hangover_ms=800, loud_dbfs=-55, floor_margin_db=10, floor_rise_db_per_s=1)
    assert feed_all(pacer, [silence()] * 250) == [F, F, F, F, T] * 50  # 5 s of zeros
    out = feed_all(pacer, [noise(-45)] * 1000, start_s=250 * BLOCK_S)  # then a fan
    first_wait = out.index(False)
    assert 10.0 <= first_wait * BLOCK_S <= 11.0, first_wait * BLOCK_S


@pytest.mark.parametrize("bad", [-1, 501, 1000])
def test_uplink_settings_rejects_quiet_batch_ms_out_of_range(bad):
    with pytest.raises(ValueError, match=f"quiet_batch_ms = {bad} is out of range") as info:
        UplinkSettings(quiet_batch_ms=bad)
    assert info.value.allowed == "0 to 500 ms"


@pytest.mark.parametrize("ok", [0, 1, 100, 500])
def test_uplink_settings_accepts_quiet_batch_ms_in_range(ok):
    assert UplinkSettings(quiet_batch_ms=ok).quiet_batch_ms == ok


def test_speech_goes_out_in_speech_batches_after_the_loud_block_that_starts_it():
    pacer = UplinkPacer(
        UplinkSettings(quiet_batch_ms=100, speech_batch_ms=40, hangover_ms=200), BLOCK_MS
    )
    out = [pacer.feed(silence(), 0.00), pacer.feed(silence(), 0.02)]  # waiting
    out.append(pacer.feed(sine(-20), 0.04))  # speech starts: at once
    out += [pacer.feed(sine(-20), 0.06), pacer.feed(sine(-20), 0.08)]  # a pair
    out += [pacer.feed(silence(), 0.10), pacer.feed(silence(), 0.12)]  # hangover: a pair
    assert out == [F, F, T, F, T, F, T]
    assert pacer.period_ms(0.12) == 40
    # Past the hangover (200 ms after the last loud block at 0.08): quiet batches again.
    assert pacer.period_ms(0.28) == 100
    later = [pacer.feed(silence(), 0.28 + i * BLOCK_S) for i in range(5)]
    assert later == [F, F, F, F, T]


def test_without_quiet_batching_the_mic_is_read_and_sent_every_block():
    pacer = UplinkPacer(UplinkSettings(speech_batch_ms=40), BLOCK_MS)
    assert [pacer.feed(sine(-20), i * BLOCK_S) for i in range(4)] == [T] * 4
    assert pacer.period_ms(0.1) == 0


@pytest.mark.parametrize("bad", [-1, 201])
def test_uplink_settings_rejects_speech_batch_ms_out_of_range(bad):
    with pytest.raises(ValueError, match=f"speech_batch_ms = {bad} is out of range"):
        UplinkSettings(speech_batch_ms=bad)


def test_the_mic_may_wait_an_idle_batch_only_while_quiet_and_nothing_plays():
    pacer = UplinkPacer(
        UplinkSettings(quiet_batch_ms=100, speech_batch_ms=40, idle_batch_ms=200), BLOCK_MS
    )
    pacer.feed(silence(), 0.0)
    assert pacer.period_ms(0.0, playing=False) == 200  # nothing to interrupt
    assert pacer.period_ms(0.0, playing=True) == 100  # an answer may be barged in on
    pacer.feed(sine(-20), 0.02)  # someone talks: speech batches, playing or not
    assert pacer.period_ms(0.04, playing=False) == 40
    assert pacer.period_ms(0.04, playing=True) == 40
    # An idle batch shorter than the quiet batch does not read the mic more often.
    short = UplinkPacer(UplinkSettings(quiet_batch_ms=100, idle_batch_ms=60), BLOCK_MS)
    assert short.period_ms(0.0, playing=False) == 100
    # Off (0): the quiet batch.
    assert UplinkPacer(UplinkSettings(quiet_batch_ms=100), BLOCK_MS).period_ms(0.0, False) == 100


@pytest.mark.parametrize("bad", [-1, 1001])
def test_uplink_settings_rejects_idle_batch_ms_out_of_range(bad):
    with pytest.raises(ValueError, match=f"idle_batch_ms = {bad} is out of range") as info:
        UplinkSettings(idle_batch_ms=bad)
    assert info.value.allowed == "0 to 1000 ms"


def test_talk_batches_while_nothing_plays_and_speech_batches_for_the_silence_that_ends_a_turn():
    pacer = UplinkPacer(
        UplinkSettings(quiet_batch_ms=100, speech_batch_ms=40, talk_batch_ms=100), BLOCK_MS
    )
    t = [i * BLOCK_S for i in range(20)]
    out = [pacer.feed(sine(-20), t[0], playing=False)]  # speech starts: at once
    out += [pacer.feed(sine(-20), t[i], playing=False) for i in range(1, 6)]  # 100 ms
    assert out == [T, F, F, F, F, T]
    assert pacer.period_ms(t[5], playing=False) == 100
    # The person stops: the quiet blocks that end the turn go every speech batch.
    quiet = [pacer.feed(silence(), t[i], playing=False) for i in range(6, 10)]
    assert quiet == [F, T, F, T]
    assert pacer.period_ms(t[9], playing=False) == 40


def test_speech_over_an_answer_goes_every_speech_batch():
    pacer = UplinkPacer(
        UplinkSettings(quiet_batch_ms=100, speech_batch_ms=40, talk_batch_ms=100), BLOCK_MS
    )
    out = [pacer.feed(sine(-20), i * BLOCK_S, playing=True) for i in range(5)]
    assert out == [T, F, T, F, T]  # a possible barge-in: never held 100 ms
    assert pacer.period_ms(4 * BLOCK_S, playing=True) == 40
    assert pacer.period_ms(4 * BLOCK_S, playing=False) == 40  # the last block was over one


@pytest.mark.parametrize("bad", [-1, 501])
def test_uplink_settings_rejects_talk_batch_ms_out_of_range(bad):
    with pytest.raises(ValueError, match=f"talk_batch_ms = {bad} is out of range"):
        UplinkSettings(talk_batch_ms=bad)


def test_once_the_service_ended_the_turn_the_quiet_after_it_waits_in_quiet_batches():
    pacer = batching(100, speech_batch_ms=40, idle_batch_ms=200)
    t = 0.0
    assert pacer.feed(sine(-20), t)  # speech starts: at once
    t += BLOCK_S
    for _ in range(4):  # quiet inside the hangover: every speech batch (2 blocks)
        pacer.feed(silence(), t)
        t += BLOCK_S
    assert pacer.period_ms(t, playing=False) == 40
    pacer.turn_ended(t)  # the service said speech_stopped, 100 ms into the quiet
    assert pacer.quiet(t)
    assert pacer.period_ms(t, playing=False) == 200
    assert pacer.period_ms(t, playing=True) == 100
    sent = [pacer.feed(silence(), t + i * BLOCK_S, False) for i in range(10)]
    assert sent == [F, F, F, F, T, F, F, F, F, T]  # the quiet batch, not pairs
    t += 10 * BLOCK_S
    assert pacer.feed(sine(-20), t)  # talking again: speech starts, at once
    assert pacer.period_ms(t, playing=False) == 40


def test_a_turn_that_ended_long_ago_does_not_shorten_a_later_hangover():
    pacer = batching(100, speech_batch_ms=40)
    pacer.turn_ended(0.0)
    assert pacer.feed(sine(-20), 1.0)
    assert not pacer.quiet(1.5)  # the hangover of the new speech stands
