"""Energy VAD: bursts in noise, the adaptive floor, every input type, hangover, retune."""

from __future__ import annotations

import numpy as np
import pytest

from pivoicectl.dsp.vad import StreamingVad, VadSettings

RATE = 16000
FRAME = 320  # 20 ms at 16 kHz


def noise(seconds: float, level_dbfs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(int(RATE * seconds)) * 10 ** (level_dbfs / 20)


def tone(seconds: float, level_dbfs: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return np.sqrt(2) * 10 ** (level_dbfs / 20) * np.sin(2 * np.pi * freq * t)


def speechlike(seconds: float, level_dbfs: float, seed: int = 1) -> np.ndarray:
    """Noise band-limited to 200-3500 Hz with a 4 Hz syllable rhythm (never fully off)."""
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec[(f < 200) | (f > 3500)] = 0
    x = np.fft.irfft(spec, n)
    x *= 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * np.arange(n) / RATE)
    return x / np.sqrt(np.mean(x**2)) * 10 ** (level_dbfs / 20)


def stream(
    signal: np.ndarray, settings: VadSettings | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decisions and floors of a `StreamingVad` fed `signal` frame by frame, as PCM16
    bytes the way a capture stream delivers them."""
    pcm = np.round(np.clip(signal, -1.0, 1.0) * 32767).astype(np.int16)
    vad = StreamingVad(RATE, settings or VadSettings())
    speech, floors = [], []
    for i in range(0, pcm.size - FRAME + 1, FRAME):
        speech.append(vad.process(pcm[i : i + FRAME].tobytes()))
        floors.append(vad.noise_floor_dbfs)
    return np.array(speech), np.array(floors)


def place(background: np.ndarray, burst: np.ndarray, start_s: float) -> np.ndarray:
    out = background.copy()
    i = round(start_s * RATE)
    out[i : i + burst.size] += burst
    return out


def test_tone_burst_in_noise_is_speech_and_the_noise_is_not():
    # Room noise at -45 dBFS is above the absolute minimum (-50), so only the adaptive
    # floor keeps it from counting as speech.
    x = place(noise(3.0, -45.0), tone(1.0, -20.0), 1.0)
    speech, floor = stream(x)
    assert speech.size == 150
    assert not speech[:50].any()
    assert speech[50:100].all()
    hang = VadSettings().hangover_frames
    assert speech[100 : 100 + hang].all()
    assert not speech[100 + hang :].any()
    assert floor[49] == pytest.approx(-46.0, abs=1.5)


def test_speechlike_burst_is_detected():
    x = place(noise(3.0, -60.0), speechlike(1.2, -28.0), 0.9)
    speech, _ = stream(x)
    assert not speech[:45].any()
    assert speech[45:105].all()
    assert not speech[120:].any()


def test_silence_and_quiet_noise_are_never_speech():
    assert not stream(np.zeros(RATE * 2))[0].any()
    assert not stream(noise(2.0, -70.0))[0].any()
    # Loud but steady fan noise: the floor adapts, nothing is speech.
    assert not stream(noise(3.0, -35.0))[0].any()


def test_a_quiet_burst_under_the_absolute_minimum_is_ignored():
    x = place(np.zeros(RATE * 2), tone(0.5, -55.0), 0.5)
    assert not stream(x)[0].any()


def test_the_floor_is_clamped_rises_at_the_setting_and_drops_at_once():
    x = np.concatenate([noise(1.0, -70.0), noise(8.0, -30.0, seed=2), noise(0.1, -55.0)])
    _, floor = stream(x, VadSettings(noise_rise_db_per_s=3.0))
    assert floor[49] == -59.0  # clamped at min_level - threshold
    steps = np.diff(floor[50:450])
    assert steps.max() == pytest.approx(0.06)  # 3 dB/s * 20 ms
    assert floor[449] == pytest.approx(-59.0 + 400 * 0.06)  # 8 s of rising, 29 dB to go
    assert floor[450] == pytest.approx(-55.0, abs=0.5)  # the quieter room: at once


def test_a_noise_step_stops_being_speech_once_the_floor_catches_up():
    x = np.concatenate([noise(1.0, -60.0), noise(7.0, -35.0, seed=3)])
    speech, _ = stream(x)
    assert speech[50:60].all()  # sudden loud noise looks like speech at first...
    # ...until the floor has risen within 9 dB: (-35 - 9) - (-59) = 15 dB at 3 dB/s.
    assert not speech[int(50 + 5.5 / 0.02) :].any()


def test_bytes_int16_float_and_column_frames_give_the_same_decisions():
    x = place(noise(3.0, -42.0), speechlike(0.8, -25.0), 0.7)
    x = place(x, tone(0.3, -30.0), 2.2)
    pcm = np.round(x * 32767).astype(np.int16)
    vad = StreamingVad(RATE)
    assert vad.frame_len == FRAME
    live = [vad.process(pcm[i : i + FRAME].tobytes()) for i in range(0, pcm.size, FRAME)]
    assert any(live) and not all(live)
    assert not any(live[:30])  # noise before the speech at 0.7 s
    assert all(live[36:75])  # the speech
    vad_f = StreamingVad(RATE)
    live_f = [vad_f.process(x[i : i + FRAME]) for i in range(0, x.size, FRAME)]
    assert live_f == live
    vad_i = StreamingVad(RATE)
    live_i = [vad_i.process(pcm[i : i + FRAME]) for i in range(0, pcm.size, FRAME)]
    assert live_i == live
    vad_2d = StreamingVad(RATE)  # sounddevice InputStream blocks are (frames, channels)
    block = pcm.reshape(-1, 1)
    live_2d = [vad_2d.process(block[i : i + FRAME]) for i in range(0, pcm.size, FRAME)]
    assert live_2d == live
    with pytest.raises(ValueError, match="mono"):
        vad_2d.process(np.zeros((FRAME, 2), dtype=np.int16))


def test_streaming_exposes_level_and_floor_and_resets():
    vad = StreamingVad(RATE)
    assert vad.noise_floor_dbfs is None
    frame = (tone(0.02, -20.0) * 32767).astype(np.int16)
    quiet = (noise(0.02, -45.0) * 32767).astype(np.int16)
    assert vad.process(quiet) is False
    assert vad.noise_floor_dbfs == pytest.approx(-45.0, abs=1.0)
    assert vad.process(frame) is True
    assert vad.level_dbfs == pytest.approx(-20.0, abs=0.1)
    assert vad.process(b"") is True  # an empty read changes nothing
    vad.reset(noise_floor_dbfs=-40.0)
    assert vad.noise_floor_dbfs == -40.0
    assert vad.in_speech is False


def test_hangover_holds_speech_for_exactly_that_many_frames():
    settings = VadSettings(hangover_frames=3)
    vad = StreamingVad(RATE, settings)
    quiet = noise(0.02, -60.0)
    loud = tone(0.02, -20.0)
    results = [vad.process(f) for f in [quiet, loud, quiet, quiet, quiet, quiet, quiet]]
    assert results == [False, True, True, True, True, False, False]


def test_retune_keeps_the_floor_and_adapt_false_leaves_it_alone():
    vad = StreamingVad(RATE)
    quiet = noise(0.02, -45.0)
    mid = tone(0.02, -33.0)
    vad.process(quiet)
    floor = vad.noise_floor_dbfs
    assert vad.threshold_dbfs == pytest.approx(floor + 9.0)
    assert vad.process(mid) is True  # 12 dB above the floor
    vad.retune(VadSettings(threshold_db=18.0, hangover_frames=0))
    assert vad.process(mid) is False  # same floor, higher margin
    assert vad.noise_floor_dbfs == pytest.approx(floor + 2 * 0.06)
    frozen = vad.noise_floor_dbfs
    assert vad.process(np.zeros(FRAME), adapt=False) is False
    assert vad.noise_floor_dbfs == frozen
    assert vad.process(np.zeros(FRAME)) is False
    assert vad.noise_floor_dbfs == VadSettings(threshold_db=18.0).floor_min_dbfs
    with pytest.raises(ValueError, match="frame length"):
        vad.retune(VadSettings(frame_ms=10.0))
