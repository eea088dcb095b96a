"""`pivoicectl devices`: what the audio server and PortAudio see, side by side.

It never crashes on a missing half: an unreachable server still lists PortAudio (and
the other way round), with the reason in place of the missing part, and exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import typer

from pivoicectl import render as output
from pivoicectl.errors import UserError
from pivoicectl.system.audio_server import AudioServer, Node
from pivoicectl.system.portaudio import PortAudioDevice, list_devices


@dataclass
class DevicesReport:
    server: dict[str, Any]
    sources: list[Node] = field(default_factory=list)
    sinks: list[Node] = field(default_factory=list)
    portaudio: list[PortAudioDevice] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "sources": [n.to_dict() for n in self.sources],
            "sinks": [n.to_dict() for n in self.sinks],
            "portaudio": [d.to_dict() for d in self.portaudio],
            "errors": self.errors,
        }


def devices() -> DevicesReport:
    report = DevicesReport(server={})
    try:
        with AudioServer.connect() as server:
            report.server = server.info().to_dict()
            report.sources = server.sources()
            report.sinks = server.sinks()
    except UserError as e:
        report.server = {"error": e.message}
        report.errors.append(f"{e.message} — {e.hint}")
    try:
        report.portaudio = list_devices()
    except UserError as e:
        report.errors.append(f"{e.message} — {e.hint}")
    return report


def _marks(n: Node) -> str:
    marks = []
    if n.default:
        marks.append("[bold green]default[/]")
    if n.echo_cancelled:
        marks.append("[cyan]echo-cancelled[/]")
    if n.monitor:
        marks.append("[dim]monitor[/]")
    return " ".join(marks)


def render(report: DevicesReport, json_out: bool) -> None:
    if json_out:
        output.print_json(report)
    else:
        from rich.table import Table

        c = output.out()
        if "error" not in report.server and report.server:
            s = report.server
            c.print(
                f"[bold]{output.esc(s['server_name'])}[/] at {output.esc(s['server'])} · "
                f"default source [bold]{output.esc(s['default_source'])}[/] · "
                f"default sink [bold]{output.esc(s['default_sink'])}[/]"
            )
        for title, nodes in (("Sources (microphones)", report.sources), ("Sinks", report.sinks)):
            if not nodes:
                continue
            t = Table(title=title, title_justify="left")
            for col in ("name", "description", "rate", "ch", "state", ""):
                t.add_column(col)
            for n in nodes:
                t.add_row(
                    output.esc(n.name),
                    output.esc(n.description),
                    str(n.rate),
                    str(n.channels),
                    output.esc(n.state),
                    _marks(n),
                )
            c.print(t)
        if report.portaudio:
            t = Table(title="PortAudio (sounddevice)", title_justify="left")
            for col in ("#", "name", "host API", "in", "out", "rate", ""):
                t.add_column(col)
            for d in report.portaudio:
                marks = []
                if d.default_input or d.default_output:
                    marks.append("[bold green]default[/]")
                if d.via_audio_server:
                    marks.append("[cyan]via PipeWire[/]")
                t.add_row(
                    str(d.index),
                    output.esc(d.name),
                    output.esc(d.hostapi),
                    str(d.max_input_channels),
                    str(d.max_output_channels),
                    f"{d.default_samplerate:.0f}",
                    " ".join(marks),
                )
            c.print(t)
        for e in report.errors:
            output.error_line(e)
    if not report.ok:
        raise typer.Exit(1)
