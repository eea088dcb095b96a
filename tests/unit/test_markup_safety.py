"""Text from outside the program is shown as written, never parsed as rich markup.

Device names, paths, config values and what the Realtime service says can contain `[/]`
(which crashed rich with a MarkupError), `[bold]` or `[link=...]` (which restyled the
line) or `:name:` (which became an emoji). Every renderer that shows such text gets it
here through its real result object, and the output must hold it verbatim.
"""

from __future__ import annotations

import pytest
import typer

from pivoicectl import render
from pivoicectl.commands import devices, doctor, measure, parrot, run, setup, sim
from pivoicectl.core.doctor_rules import FAIL, PASS, WARN, Check
from pivoicectl.dsp.echo import EchoMetrics
from pivoicectl.system.audio_server import Node
from pivoicectl.system.portaudio import PortAudioDevice

NASTY = ["[/]", "[bold]x[/bold]", "[link=http://evil]x[/link]", "[red", ":thumbs_up:"]


@pytest.fixture
def shown(monkeypatch, capsys):
    """Fresh consoles (wide, no colour) writing into capsys; returns a reader of both."""
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("NO_COLOR", "1")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(render, "_out", None)
    monkeypatch.setattr(render, "_err", None)

    def read() -> str:
        captured = capsys.readouterr()
        return captured.out + captured.err

    return read


@pytest.mark.parametrize("s", NASTY)
def test_error_line(shown, s):
    render.error_line(f"no source named {s}", f"list sources in {s}")
    text = shown()
    assert f"error: no source named {s} — list sources in {s}" in text


@pytest.mark.parametrize("s", NASTY)
def test_run_summary(shown, s):
    summary = run.RunSummary(
        reason=f"closed by the service: {s}",
        url="ws://127.0.0.1:1/v1/realtime",
        elapsed_s=1.0,
        cpu_s=0.1,
        cpu_percent=10.0,
        local_server=True,
        connections=1,
        reconnects=0,
        renewals=0,
        mic_blocks_sent=1,
        mic_blocks_dropped=0,
        mic_messages_sent=1,
        underflows=0,
        overflows=0,
        audio_backend=f"pulse {s}",
        output_latency_ms=10.0,
        unheard_at_abort_ms=0,
        turns=[
            {
                "turn": 1,
                "status": "failed",
                "reason": s,
                "voice_to_voice_ms": None,
                "first_audio_latency_ms": 120.0,
                "interrupt_latency_ms": None,
                "truncate_audio_end_ms": None,
            }
        ],
        errors=[{"code": f"code{s}", "message": f"the service says {s}"}],
        trace=f"/tmp/{s}/trace.jsonl",
    )
    run.render_summary(summary, json_out=False)
    text = shown()
    assert f"session ended (closed by the service: {s})" in text
    assert f"failed ({s})" in text
    assert f"audio (pulse {s})" in text
    assert f"error code{s}: the service says {s}" in text
    assert f"trace: /tmp/{s}/trace.jsonl" in text


@pytest.mark.parametrize("kind", ["user", "assistant", "status", "error", "other"])
@pytest.mark.parametrize("s", NASTY)
def test_run_transcript_and_status_lines(shown, s, kind):
    ui = run.ConsoleUi(to_stderr=False)
    ui.show(kind, f"said {s} here")
    text = shown()
    assert f"said {s} here" in text
    if kind in ("user", "assistant"):
        assert f"{run.ConsoleUi.LABELS[kind]}: said {s} here" in text


@pytest.mark.parametrize("s", NASTY)
def test_devices(shown, s):
    node = Node(f"alsa_input.{s}", f"USB mic {s}", "source", 1, 48000, 1, f"RUNNING{s}")
    sink = Node(f"alsa_output.{s}", f"Speaker {s}", "sink", 2, 48000, 2, "IDLE", default=True)
    report = devices.DevicesReport(
        server={
            "server_name": f"PulseAudio (on PipeWire {s})",
            "server": f"/run/user/1000/{s}/native",
            "default_source": f"src{s}",
            "default_sink": f"sink{s}",
        },
        sources=[node],
        sinks=[sink],
        portaudio=[PortAudioDevice(3, f"pa {s}", f"ALSA {s}", 1, 0, 48000.0, True, False, True)],
    )
    devices.render(report, json_out=False)
    text = shown()
    for literal in (
        f"PulseAudio (on PipeWire {s}) at /run/user/1000/{s}/native",
        f"default source src{s}",
        f"default sink sink{s}",
        f"alsa_input.{s}",
        f"USB mic {s}",
        f"RUNNING{s}",
        f"alsa_output.{s}",
        f"Speaker {s}",
        f"pa {s}",
        f"ALSA {s}",
    ):
        assert literal in text
    assert "default" in text and "[bold green]" not in text  # our own markup still works


@pytest.mark.parametrize("s", NASTY)
def test_devices_error_lines(shown, s):
    report = devices.DevicesReport(server={"error": "x"}, errors=[f"no server at {s} — start it"])
    with pytest.raises(typer.Exit):
        devices.render(report, json_out=False)
    assert f"error: no server at {s} — start it" in shown()


@pytest.mark.parametrize("s", NASTY)
def test_doctor(shown, s):
    report = doctor.DoctorReport(
        [
            Check("pipewire", "PipeWire", PASS, f"socket /run/{s}/pipewire-0"),
            Check("default-source", "default", FAIL, f"default source is {s}", f"run {s}"),
            Check(f"id{s}", "odd", WARN, "detail"),
        ],
        fixed=[f"set the default source to {s}"],
    )
    doctor.render(report, json_out=False)
    text = shown()
    assert f"socket /run/{s}/pipewire-0" in text
    assert f"default source is {s}" in text
    assert f"fix: run {s}" in text
    assert f"id{s}" in text
    assert f"fixed: set the default source to {s}" in text
    assert "[bold red]" not in text and "1 check(s) failed" in text


def _setup_result(s: str, **kw) -> setup.SetupResult:
    fields = {
        "operation": "setup",
        "changed": True,
        "dry_run": False,
        "config_path": f"/home/pi/{s}/echo-cancel.conf",
        "actions": [f"wrote /home/pi/{s}/echo-cancel.conf"],
        "notes": [f"/home/pi/{s}/echo-cancel.conf was edited; kept a copy at /tmp/{s}"],
        "mic": f"alsa_input.{s}",
        "speaker": f"alsa_output.{s}",
        "pipewire_version": f"1.4.2{s}",
        "template": f"v1{s}",
        "wireplumber_version": f"0.5{s}",
        "default_source": f"source_ec{s}",
        "persistence": f"saved in /home/pi/{s}/default-nodes",
    }
    fields.update(kw)
    return setup.SetupResult(**fields)


@pytest.mark.parametrize("s", NASTY)
def test_setup(shown, s):
    setup.render(_setup_result(s), json_out=False)
    text = shown()
    for literal in (
        f"mic alsa_input.{s} · speaker alsa_output.{s} · PipeWire 1.4.2{s} (v1{s}) · "
        f"WirePlumber 0.5{s}",
        f"✓ wrote /home/pi/{s}/echo-cancel.conf",
        f"! /home/pi/{s}/echo-cancel.conf was edited; kept a copy at /tmp/{s}",
        f"default source: source_ec{s}",
        f"across reboots: saved in /home/pi/{s}/default-nodes",
    ):
        assert literal in text
    assert "[green]" not in text and "[yellow]" not in text


@pytest.mark.parametrize("s", NASTY)
def test_setup_dry_run_and_undo(shown, s):
    setup.render(_setup_result(s, dry_run=True, config_text=f"# {s}\n"), json_out=False)
    setup.render(_setup_result(s, operation="undo"), json_out=False)
    text = shown()
    assert f"--- /home/pi/{s}/echo-cancel.conf" in text
    assert f"# {s}" in text
    assert f"• wrote /home/pi/{s}/echo-cancel.conf" in text
    assert f"default source: source_ec{s}" in text


@pytest.mark.parametrize("s", NASTY)
def test_setup_progress_line(shown, s):
    with setup._status(True, f"waiting for the echo canceller to capture {s} …"):
        pass
    shown()


@pytest.mark.parametrize("s", NASTY)
def test_sim_status(shown, s):
    status = sim.SimStatus(
        root=f"/tmp/{s}/sim",
        running=True,
        daemons={"pipewire": True, f"wireplumber{s}": False},
        room={"delay_ms": 20.0, "gain": 0.3, "rt60_s": 0.2, "reverb_db": f"-30{s}"},
        expected_erl_db=10.5,
        nodes={"sim_speaker": True, f"node{s}": False},
    )
    sim.render_status(status, json_out=False)
    text = shown()
    assert f"simulated room in /tmp/{s}/sim: running" in text
    assert f"wireplumber{s}" in text
    assert f"reverb -30{s} dB" in text
    assert f"node{s}" in text
    sim.render_status(sim.SimStatus(f"/tmp/{s}", False, {}, None, None), json_out=False)
    assert f"simulated room in /tmp/{s}: not running" in shown()


@pytest.mark.parametrize("s", NASTY)
def test_measure(shown, s):
    result = measure.MeasureResult(
        verdict="fail",
        reasons=[f"ERLE too low on {s}"],
        metrics=EchoMetrics(20.0, 10.0, False, 5.0, None, None),
        thresholds={"min_erle_db": 20.0, "min_retention_db": -6.0, "convergence_threshold_db": 6},
        nodes={
            "speaker": f"spk{s}",
            "playback_sink": f"play{s}",
            "mic": f"mic{s}",
            "output": f"out{s}",
        },
        signal="noise",
        signal_source=f"file {s}",
        level_dbfs=-20.0,
        duration_s=2.0,
        recorded_s=2.0,
        rate=48000,
        plot=f"/tmp/{s}.png",
    )
    measure.render(result, json_out=False)
    text = shown()
    assert f"raw mic → out{s}" in text
    assert f"noise (file {s}) at -20 dBFS for 2 s into play{s}; reference spk{s}.monitor" in text
    assert f"mic mic{s}, output out{s}" in text
    assert f"plot written to /tmp/{s}.png" in text
    assert f"- ERLE too low on {s}" in text


@pytest.mark.parametrize("s", NASTY)
def test_parrot(shown, s):
    result = parrot.ParrotResult("parrot", parrot.NO_LOOP, f"mic{s}", f"spk{s}")
    parrot.render(result, json_out=False)
    assert f"parrot: listening on mic{s}, playing on spk{s}" in shown()
