"""Pure parts of `measure`: signals, node choice, onset, verdict, analysis, config text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pivoicectl.core import measure_analysis as analysis
from pivoicectl.core import measure_plan as plan
from pivoicectl.dsp.delay import delay_signal
from pivoicectl.dsp.levels import dbfs
from pivoicectl.dsp.signals import fit_length, make_signal, resample, scale_to_dbfs
from pivoicectl.errors import UserError
from pivoicectl.system.recorder import (
    CaptureChannel,
    capture_sink_props,
    link_plan,
    pulse_channel_map,
)

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
        (plan.MeasureOptions(duration_s=1), "--duration"),
        (plan.MeasureOptions(signal="music"), "--signal"),
        (plan.MeasureOptions(level_dbfs=0), "--level"),
        (plan.MeasureOptions(talker_file=Path("a.wav")), "--talker-sink"),
        (plan.MeasureOptions(plot=Path("a.jpg")), "--plot"),
    ]:
        with pytest.raises(UserError, match=needle.lstrip("-")) as e:
            plan.validate(opts)
        assert e.value.exit_code == 2


def test_choose_nodes():
    sources = {"sim_mic": False, "source_ec": False, "sim_speaker.monitor": True}
    sinks = {"sim_speaker", "sim_air"}
    n = plan.choose_nodes(plan.MeasureOptions(), sources, sinks, "sim_speaker", None, "sim_mic")
    assert (n.speaker, n.playback_sink, n.mic, n.output) == (
        "sim_speaker", "sim_speaker", "sim_mic", "source_ec"
    )  # fmt: skip
    # 0.3 setups: play into sink_ec, reference the real speaker pinned by the config
    n = plan.choose_nodes(
        plan.MeasureOptions(),
        sources,
        sinks | {"sink_ec"},
        "sink_ec",
        ("sim_mic", "sim_speaker"),
        None,
    )
    assert (n.speaker, n.playback_sink) == ("sim_speaker", "sink_ec")
    with pytest.raises(UserError, match="source_ec"):
        plan.choose_nodes(
            plan.MeasureOptions(), {"sim_mic": False}, sinks, "sim_speaker", None, None
        )
    with pytest.raises(UserError, match="not a raw microphone"):
        plan.choose_nodes(
            plan.MeasureOptions(mic="sim_speaker.monitor"), sources, sinks, "x", None, None
        )
    with pytest.raises(UserError, match="talker"):
        opts = plan.MeasureOptions(talker_file=Path("t.wav"), talker_sink="nope")
        plan.choose_nodes(opts, sources, sinks, "sim_speaker", None, "sim_mic")


def test_judge():
    assert plan.judge(40, False, 0.3, -3, 25, -10) == ("pass", [])
    verdict, reasons = plan.judge(20, True, None, -12, 25, -10)
    assert verdict == "fail" and len(reasons) == 3 and "raise --level" in reasons[0]


def test_onset_and_talker_placement():
    x = np.zeros(RATE)
    x[12000:] = 0.1
    assert abs(analysis.signal_onset(x, RATE) - 12000) <= 480
    assert analysis.signal_onset(np.zeros(RATE), RATE) is None
    assert analysis.place_talker(np.ones(3), 2, 6).tolist() == [0, 0, 1, 1, 1, 0]
    assert analysis.place_talker(np.ones(3), -1, 4).tolist() == [1, 1, 0, 0]


def test_analyze_recovers_a_known_echo_path_and_canceller():
    rng = np.random.default_rng(1)
    far = np.concatenate([np.zeros(4800), rng.standard_normal(4 * RATE) * 0.1, np.zeros(RATE // 2)])
    mic = 0.25 * delay_signal(far, 17.3 * RATE / 1000)
    out = 10 ** (-35 / 20) * mic + rng.standard_normal(far.size) * 1e-6
    rec = np.stack([far, mic, out], axis=1)
    metrics, _levels, trimmed = analysis.analyze(rec, RATE)
    assert abs(metrics.erl_db - 12.04) < 0.5
    assert abs(metrics.echo_delay_ms - 17.3) < 0.5
    assert abs(metrics.erle_db - 35.0) < 1.0 and not metrics.erle_capped
    assert trimmed.shape[0] <= rec.shape[0] - 4800 + 480
    with pytest.raises(UserError) as e:
        analysis.analyze(np.zeros((RATE, 3)), RATE)
    assert e.value.exit_code == 1


def test_capture_sink_props_make_one_private_multichannel_sink():
    text = capture_sink_props("cap", 3, 48000)
    assert text.startswith("{ ") and text.endswith(" }")
    assert "factory.name = support.null-audio-sink" in text and 'node.name = "cap"' in text
    assert "media.class = Audio/Sink" in text and "audio.position = [ FL FR FC ]" in text
    assert "audio.channels = 3" in text and "priority.driver = 1" in text
    assert "session.suspend-timeout-seconds = 0" in text
    assert pulse_channel_map(3) == "front-left,front-right,front-center"
    with pytest.raises(ValueError):
        capture_sink_props("cap", 0, 48000)


def _node(oid, name):
    return {"id": oid, "type": "PipeWire:Interface:Node", "info": {"props": {"node.name": name}}}


def _port(oid, node, direction, index, channel, monitor=None, dsp="32 bit float mono audio"):
    props = {"node.id": node, "port.id": index, "audio.channel": channel, "format.dsp": dsp}
    if monitor is not None:
        props["port.monitor"] = monitor
    info = {"direction": "input" if direction == "in" else "output", "props": props}
    if direction:
        props["port.direction"] = direction
    return {"id": oid, "type": "PipeWire:Interface:Port", "info": info}


def test_link_plan_links_the_first_channel_of_each_node_into_its_own_input():
    objects = [
        _node(1, "cap"),
        _port(10, 1, "in", 0, "FL"),
        _port(11, 1, "in", 1, "FR"),
        _port(12, 1, "in", 2, "FC"),
        _port(13, 1, "out", 0, "FL", True),
        # a stereo speaker: inputs, then its monitors (FR listed first, FL is taken)
        _node(2, "spk"),
        _port(20, 2, "in", 0, "FL"),
        _port(23, 2, "out", 1, "FR", True),
        _port(22, 2, "out", 0, "FL", True),
        # a stereo mic whose ports predate the pw-dump fields (strings, no direction prop)
        _node(3, "mic"),
        _port(31, 3, "", "1", "FR"),
        _port(30, 3, "", "0", "FL"),
        _port(39, 3, "out", 2, "", dsp="8 bit raw midi"),
        # a virtual source: its capture ports carry port.monitor too
        _node(4, "ec"),
        _port(40, 4, "out", 0, "MONO", "true"),
    ]
    channels = [
        CaptureChannel("spk", monitor_of_sink=True),
        CaptureChannel("mic"),
        CaptureChannel("ec"),
    ]
    assert link_plan(objects, "cap", channels) == [(22, 10), (30, 11), (40, 12)]
    with pytest.raises(UserError, match="no PipeWire node named nope"):
        link_plan(objects, "cap", [CaptureChannel("nope")])
    with pytest.raises(UserError, match="mic has no monitor port"):
        link_plan(objects, "cap", [CaptureChannel("mic", monitor_of_sink=True)])
    with pytest.raises(UserError, match="no FC input"):
        link_plan(objects[:3] + objects[5:], "cap", channels)


def test_measure_help_shows_the_plan_defaults():
    """The command line takes its defaults from the plan, so help cannot drift from them."""
    from typer.testing import CliRunner

    from pivoicectl.main import app

    out = CliRunner().invoke(app, ["measure", "--help"], env={"COLUMNS": "200"}).output
    for flag, value in (
        ("--duration", plan.DEFAULT_DURATION_S),
        ("--level", plan.DEFAULT_LEVEL_DBFS),
        ("--min-erle", plan.DEFAULT_MIN_ERLE_DB),
        ("--min-retention", plan.DEFAULT_MIN_RETENTION_DB),
    ):
        line = next(row for row in out.splitlines() if flag + " " in row)
        assert f"[default: {value:g}]" in line or f"[default: {value}]" in line, line
