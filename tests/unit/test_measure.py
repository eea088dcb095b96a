"""Pure parts of `measure`: signals, node choice, onset, verdict, analysis, config text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pivoicectl.cli import measure as cli_measure
from pivoicectl.commands import measure as m
from pivoicectl.dsp.delay import delay_signal
from pivoicectl.dsp.levels import dbfs
from pivoicectl.dsp.signals import fit_length, make_signal, resample, scale_to_dbfs
from pivoicectl.errors import UserError
from pivoicectl.recorder import CaptureChannel, combine_config, pulse_channel_map

RATE = 48000


@pytest.mark.parametrize("kind", ["noise", "sweep", "speech"])
def test_signals_have_the_asked_level_and_length(kind):
    x = make_signal(kind, 2.0, RATE, -20.0)
    assert x.size == 2 * RATE and np.max(np.abs(x)) <= 1.0
    loud = np.abs(x) > np.max(np.abs(x)) * 1e-2
    assert abs(dbfs(x[loud]) - (-20.0)) < 1.0


def test_scale_fit_and_resample():
    assert abs(dbfs(scale_to_dbfs(np.ones(100) * 0.5, -6.0)) + 6.0) < 1e-9
    assert fit_length(np.arange(3.0), 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    t = np.arange(22050) / 22050
    y = resample(np.sin(2 * np.pi * 440 * t), 22050, 48000)
    assert y.size == 48000
    ref = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)
    assert np.max(np.abs(y[1000:-1000] - ref[1000:-1000])) < 1e-3


def test_validate_rejects_bad_input():
    for opts, needle in [
        (m.MeasureOptions(duration_s=1), "--duration"),
        (m.MeasureOptions(signal="music"), "--signal"),
        (m.MeasureOptions(level_dbfs=0), "--level"),
        (m.MeasureOptions(talker_file=Path("a.wav")), "--talker-sink"),
        (m.MeasureOptions(plot=Path("a.jpg")), "--plot"),
    ]:
        with pytest.raises(UserError, match=needle.lstrip("-")) as e:
            m.validate(opts)
        assert e.value.exit_code == 2


def test_choose_nodes():
    sources = {"sim_mic": False, "source_ec": False, "sim_speaker.monitor": True}
    sinks = {"sim_speaker", "sim_air"}
    n = m.choose_nodes(m.MeasureOptions(), sources, sinks, "sim_speaker", None, "sim_mic")
    assert (n.speaker, n.playback_sink, n.mic, n.output) == (
        "sim_speaker", "sim_speaker", "sim_mic", "source_ec"
    )  # fmt: skip
    # 0.3 setups: play into sink_ec, reference the real speaker pinned by the config
    n = m.choose_nodes(
        m.MeasureOptions(),
        sources,
        sinks | {"sink_ec"},
        "sink_ec",
        ("sim_mic", "sim_speaker"),
        None,
    )
    assert (n.speaker, n.playback_sink) == ("sim_speaker", "sink_ec")
    with pytest.raises(UserError, match="source_ec"):
        m.choose_nodes(m.MeasureOptions(), {"sim_mic": False}, sinks, "sim_speaker", None, None)
    with pytest.raises(UserError, match="not a raw microphone"):
        m.choose_nodes(m.MeasureOptions(mic="sim_speaker.monitor"), sources, sinks, "x", None, None)
    with pytest.raises(UserError, match="talker"):
        opts = m.MeasureOptions(talker_file=Path("t.wav"), talker_sink="nope")
        m.choose_nodes(opts, sources, sinks, "sim_speaker", None, "sim_mic")


def test_judge():
    assert m.judge(40, False, 0.3, -3, 25, -10) == ("pass", [])
    verdict, reasons = m.judge(20, True, None, -12, 25, -10)
    assert verdict == "fail" and len(reasons) == 3 and "raise --level" in reasons[0]


def test_onset_and_talker_placement():
    x = np.zeros(RATE)
    x[12000:] = 0.1
    assert abs(m.signal_onset(x, RATE) - 12000) <= 480
    assert m.signal_onset(np.zeros(RATE), RATE) is None
    assert m.place_talker(np.ones(3), 2, 6).tolist() == [0, 0, 1, 1, 1, 0]
    assert m.place_talker(np.ones(3), -1, 4).tolist() == [1, 1, 0, 0]


def test_analyze_recovers_a_known_echo_path_and_canceller():
    rng = np.random.default_rng(1)
    far = np.concatenate([np.zeros(4800), rng.standard_normal(4 * RATE) * 0.1, np.zeros(RATE // 2)])
    mic = 0.25 * delay_signal(far, 17.3 * RATE / 1000)
    out = 10 ** (-35 / 20) * mic + rng.standard_normal(far.size) * 1e-6
    rec = np.stack([far, mic, out], axis=1)
    metrics, _levels, trimmed = m.analyze(rec, RATE)
    assert abs(metrics.erl_db - 12.04) < 0.5
    assert abs(metrics.echo_delay_ms - 17.3) < 0.5
    assert abs(metrics.erle_db - 35.0) < 1.0 and not metrics.erle_capped
    assert trimmed.shape[0] <= rec.shape[0] - 4800 + 480
    with pytest.raises(UserError) as e:
        m.analyze(np.zeros((RATE, 3)), RATE)
    assert e.value.exit_code == 1


def test_combine_config_maps_each_node_to_its_own_channel():
    text = combine_config(
        "cap", [CaptureChannel("spk", monitor_of_sink=True), CaptureChannel("mic")]
    )
    assert "combine.mode = source" in text and 'node.name = "cap"' in text
    assert "audio.position = [ FL FR ]" in text
    assert 'node.name = "spk" } ]' in text and "stream.capture.sink = true" in text
    assert text.count("stream.capture.sink") == 1
    assert pulse_channel_map(3) == "front-left,front-right,front-center"


def test_cli_defaults_mirror_the_command_module():
    assert cli_measure.DEFAULT_DURATION_S == m.DEFAULT_DURATION_S
    assert cli_measure.DEFAULT_LEVEL_DBFS == m.DEFAULT_LEVEL_DBFS
    assert cli_measure.DEFAULT_MIN_ERLE_DB == m.DEFAULT_MIN_ERLE_DB
    assert cli_measure.DEFAULT_MIN_RETENTION_DB == m.DEFAULT_MIN_RETENTION_DB
