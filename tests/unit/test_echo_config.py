from __future__ import annotations

import pytest

from pivoicectl.core import echo_config
from pivoicectl.core.echo_config import EchoConfig, parse_aec_args
from pivoicectl.errors import UserError


def test_parse_aec_args_accepts_booleans_in_several_spellings():
    got = parse_aec_args(["webrtc.gain_control=true", "webrtc.noise_suppression = OFF"])
    assert got == {"webrtc.gain_control": True, "webrtc.noise_suppression": False}


@pytest.mark.parametrize(
    ("arg", "needle"),
    [
        ("webrtc.gain_control", "KEY=VALUE"),
        ("webrtc.nonsense=true", "unknown"),
        ("webrtc.gain_control=maybe", "boolean"),
        ("=true", "unknown"),
    ],
)
def test_parse_aec_args_refuses_malformed(arg, needle):
    with pytest.raises(UserError) as e:
        parse_aec_args([arg])
    assert needle in e.value.message
    assert e.value.exit_code == 2


@pytest.mark.parametrize(
    ("version", "gen"), [("0.3.65", "0.3"), ("1.4.2", "1.x"), ("1.0.0", "1.x"), ("2.1.0", "1.x")]
)
def test_generation(version, gen):
    assert echo_config.generation(version) == gen


def test_generation_refuses_garbage():
    with pytest.raises(UserError):
        echo_config.generation("PulseAudio 16")


def test_1x_template_uses_monitor_mode_and_pins_both_devices():
    cfg = EchoConfig(
        "alsa_input.usb-mic", "alsa_output.hdmi", "1.4.2", {"webrtc.gain_control": True}
    )
    text = cfg.render()
    assert "monitor.mode = true" in text
    assert 'target.object = "alsa_input.usb-mic"' in text
    assert "webrtc.gain_control = true" in text
    assert echo_config.pinned_devices(text) == ("alsa_input.usb-mic", "alsa_output.hdmi")
    assert echo_config.written_by_pivoicectl(text)
    assert not cfg.uses_sink


def test_03_template_uses_an_echo_cancel_sink_not_monitor_mode():
    cfg = EchoConfig("mic", "spk", "0.3.65", {})
    text = cfg.render()
    assert "monitor.mode = true" not in text  # 0.3.65 can crash on Props updates with it
    assert 'node.name = "sink_ec"' in text
    assert echo_config.pinned_devices(text) == ("mic", "spk")
    assert cfg.uses_sink


def test_pinned_devices_reads_the_props_not_the_header_or_comments():
    text = EchoConfig("mic", "spk", "1.4.2", {}).render()
    edited = text.replace('target.object = "mic"', 'target.object = "other_mic"')
    edited += '\n# capture.props = { target.object = "commented_out" }\n'
    assert echo_config.pinned_devices(edited) == ("other_mic", "spk")
    assert echo_config.pinned_devices("context.modules = []") is None


def test_node_names_that_would_break_the_config_are_refused():
    with pytest.raises(UserError):
        EchoConfig('bad"name', "spk", "1.4.2", {}).render()


def test_render_is_deterministic():
    args = {"webrtc.b": True, "webrtc.a": False}
    one = EchoConfig("m", "s", "1.4.2", args).render()
    two = EchoConfig("m", "s", "1.4.2", dict(reversed(list(args.items())))).render()
    assert one == two
