"""`pivoicectl measure`: how much of the speaker the microphone hears, before and after
the echo canceller, measured on the device itself.

It plays a test signal through the speaker and records, sample-aligned on one clock
(see `pivoicectl.system.recorder`), the speaker's monitor (the reference), the raw mic (the
canceller's capture device) and source_ec; the numbers come from the pure DSP in
`pivoicectl.dsp.echo` through `pivoicectl.core.measure_analysis`. Planning (options,
node choice, verdict) is pure and lives in `pivoicectl.core.measure_plan`; this module
is the I/O: choosing nodes from the running server, playing, recording, rendering.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pivoicectl import render as output
from pivoicectl.core.measure_analysis import analyze, reported_metrics
from pivoicectl.core.measure_plan import (
    CONVERGENCE_THRESHOLD_DB,
    RATE,
    MeasureOptions,
    Nodes,
    choose_nodes,
    judge,
    validate,
)
from pivoicectl.errors import UserError

if TYPE_CHECKING:
    from pivoicectl.dsp.echo import EchoMetrics

_LEAD_S = 0.3  # recording before the signal starts (the node's start-up)
_TAIL_S = 0.6  # after it ends: the echo tail, and idle blocks for the noise levels
_TALKER_START = 0.5  # the near-end talker starts at this fraction of the signal
_TALKER_MAX = 0.45  # and lasts at most this fraction of it
SPEECH_TEXT = (
    "This is a measurement of the echo path. The assistant must never hear itself. "
    "One, two, three, four, five. The quick brown fox jumps over the lazy dog."
)


@dataclass
class MeasureResult:
    """One measurement as reported; `to_dict` inlines the metrics' fields after `reasons`."""

    verdict: str  # "pass" or "fail"
    reasons: list[str]
    metrics: EchoMetrics
    """Rounded to the reported precision (`reported_metrics`)."""
    thresholds: dict[str, float]
    nodes: dict[str, str]
    signal: str
    signal_source: str
    level_dbfs: float
    duration_s: float
    recorded_s: float
    rate: int
    levels_dbfs: dict[str, float] = field(default_factory=dict)
    plot: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "metrics":
                d.update(dataclasses.asdict(self.metrics))
            else:
                d[f.name] = getattr(self, f.name)
        d["ok"] = self.ok
        return d


# ----------------------------------------------------------------------------- the edge


def _nodes(opts: MeasureOptions) -> Nodes:
    from pivoicectl.core.echo_config import EC_CAPTURE_STREAM, pinned_devices
    from pivoicectl.system import paths
    from pivoicectl.system.audio_server import AudioServer

    try:
        pinned = pinned_devices(paths.echo_cancel_conf().read_text())
    except (OSError, UnicodeDecodeError):
        pinned = None
    with AudioServer.connect() as server:
        info = server.info()
        sources = {n.name: n.monitor for n in server.sources(info)}
        sinks = {n.name for n in server.sinks(info)}
        ec_from = server.capture_source_of(EC_CAPTURE_STREAM)
    return choose_nodes(opts, sources, sinks, info.default_sink, pinned, ec_from)


def _far_end_signal(opts: MeasureOptions, workdir: Path) -> tuple[np.ndarray, str]:
    from pivoicectl.dsp.signals import fit_length, make_signal, resample, scale_to_dbfs
    from pivoicectl.system.recorder import espeak_wav
    from pivoicectl.system.wavfile import read_wav

    if opts.signal == "speech":
        wav_path = workdir / "speech.wav"
        if espeak_wav(SPEECH_TEXT, wav_path):
            wav = read_wav(wav_path)
            x = fit_length(resample(wav.mono(), wav.rate, RATE), round(opts.duration_s * RATE))
            return scale_to_dbfs(x, opts.level_dbfs), "espeak-ng"
        return make_signal("speech", opts.duration_s, RATE, opts.level_dbfs), "synthetic"
    return make_signal(opts.signal, opts.duration_s, RATE, opts.level_dbfs), "synthetic"


def _talker_signal(opts: MeasureOptions) -> np.ndarray | None:
    from pivoicectl.dsp.signals import resample
    from pivoicectl.system.wavfile import read_wav

    if opts.talker_file is None:
        return None
    wav = read_wav(opts.talker_file)
    x = resample(wav.mono(), wav.rate, RATE)[: round(_TALKER_MAX * opts.duration_s * RATE)]
    if not np.any(x):
        raise UserError(f"{opts.talker_file}: the talker file is silent", "give a WAV with speech")
    return x


def _check_plot_dependency() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise UserError(
            "--plot needs matplotlib, which is not installed",
            "pip install 'pivoicectl[plot]'  (or: pip install matplotlib)",
        ) from e


def _record(
    nodes: Nodes,
    far: np.ndarray,
    talker: np.ndarray | None,
    talker_sink: str | None,
    progress: bool,
) -> tuple[np.ndarray, float]:
    """Play and record; returns (recording, talker start in s after the far end's)."""
    from pivoicectl.system.recorder import (
        AlignedRecording,
        CaptureChannel,
        aligned_capture,
        finish_playback,
        play_file,
    )
    from pivoicectl.system.wavfile import write_wav

    channels = [
        CaptureChannel(nodes.speaker, monitor_of_sink=True),
        CaptureChannel(nodes.mic),
        CaptureChannel(nodes.output),
    ]
    duration = far.size / RATE
    with aligned_capture(channels, RATE) as (source, workdir):
        far_wav = workdir / "far.wav"
        write_wav(far_wav, far, RATE)
        talker_wav = workdir / "talker.wav"
        if talker is not None:
            write_wav(talker_wav, talker, RATE)
        rec = AlignedRecording(source, len(channels), RATE, workdir)
        talk_proc: list[Any] = []
        talk_at: list[float] = []
        try:
            time.sleep(_LEAD_S)
            t0 = time.monotonic()
            player = play_file(far_wav, nodes.playback_sink)
            timer = None
            if talker is not None:

                def start_talker() -> None:
                    talk_at.append(time.monotonic() - t0)
                    talk_proc.append(play_file(talker_wav, talker_sink))

                timer = threading.Timer(_TALKER_START * duration, start_talker)
                timer.start()
            _wait_with_progress(player, duration, progress)
            finish_playback(player, timeout_s=duration + 10)
            if timer is not None:
                timer.join()
                finish_playback(talk_proc[0], timeout_s=duration + 10)
            time.sleep(_TAIL_S)
        finally:
            recording = rec.stop()
    return recording, (talk_at[0] if talk_at else 0.0)


def _wait_with_progress(player: Any, duration_s: float, progress: bool) -> None:
    if not progress:
        player.wait(timeout=duration_s + 10)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    start = time.monotonic()
    with Progress(
        TextColumn("recording"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.1f} s"),
        TimeRemainingColumn(),
        console=output.err(),
        transient=True,
    ) as bar:
        task = bar.add_task("rec", total=duration_s)
        while player.poll() is None and time.monotonic() - start < duration_s + 10:
            bar.update(task, completed=min(duration_s, time.monotonic() - start))
            time.sleep(0.1)


def measure(opts: MeasureOptions, progress: bool = True) -> MeasureResult:
    validate(opts)
    if opts.plot is not None:
        _check_plot_dependency()
    talker = _talker_signal(opts)
    nodes = _nodes(opts)
    with tempfile.TemporaryDirectory(prefix="pivoicectl-measure-") as tmp:
        far, source = _far_end_signal(opts, Path(tmp))
    recording, talker_at = _record(nodes, far, talker, opts.talker_sink, progress)
    metrics, levels, rec = analyze(recording, RATE, talker, talker_at)
    verdict, reasons = judge(
        metrics.erle_db,
        metrics.erle_capped,
        metrics.convergence_s,
        metrics.double_talk_retention_db,
        opts.min_erle_db,
        opts.min_retention_db,
    )
    result = MeasureResult(
        verdict=verdict,
        reasons=reasons,
        metrics=reported_metrics(metrics),
        thresholds={
            "min_erle_db": opts.min_erle_db,
            "min_retention_db": opts.min_retention_db,
            "convergence_threshold_db": CONVERGENCE_THRESHOLD_DB,
        },
        nodes={
            "speaker": nodes.speaker,
            "playback_sink": nodes.playback_sink,
            "mic": nodes.mic,
            "output": nodes.output,
            **({"talker_sink": opts.talker_sink} if opts.talker_sink else {}),
        },
        signal=opts.signal,
        signal_source=source,
        level_dbfs=opts.level_dbfs,
        duration_s=opts.duration_s,
        recorded_s=round(rec.shape[0] / RATE, 3),
        rate=RATE,
        levels_dbfs={k: round(v, 2) for k, v in levels.items()},
    )
    if opts.plot is not None:
        _plot(rec, RATE, opts.plot, result)
        result.plot = str(opts.plot)
    _remember(result)
    return result


def _remember(result: MeasureResult) -> None:
    """Keep the last result for `doctor` (echo guard advice) and `run --echo-guard`."""
    from pivoicectl import render
    from pivoicectl.system import last_measure

    last_measure.save(render.to_jsonable(result))


def _plot(rec: np.ndarray, rate: int, path: Path, result: MeasureResult) -> None:
    """Levels over time (reference, mic, source_ec) and the estimated impulse response."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pivoicectl.dsp.echo import impulse_response
    from pivoicectl.dsp.levels import frame_levels_dbfs

    block = rate // 50
    t = np.arange(rec.shape[0] // block) * block / rate
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7))
    for i, label in enumerate(("reference (speaker)", "raw mic", "source_ec")):
        top.plot(t, frame_levels_dbfs(rec[:, i], block)[: t.size], label=label, lw=1)
    top.set_xlabel("time, s")
    top.set_ylabel("level, dBFS (20 ms)")
    top.set_ylim(-125, 0)
    top.legend(loc="lower left")
    mt = result.metrics
    erle = f"{'>= ' if mt.erle_capped else ''}{mt.erle_db:.1f}"
    top.set_title(
        f"ERL {mt.erl_db:.1f} dB, ERLE {erle} dB, delay {mt.echo_delay_ms:.2f} ms: {result.verdict}"
    )
    h = impulse_response(rec[:, 0], rec[:, 1], rate, length_ms=200.0)
    bottom.plot(np.arange(h.size) * 1000.0 / rate, h, lw=0.8)
    bottom.set_xlabel("ms")
    bottom.set_ylabel("echo path impulse response")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}", "pick a writable path") from e
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- render


def render(result: MeasureResult, json_out: bool) -> None:
    if json_out:
        output.print_json(result)
        return
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="pivoicectl measure", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("meaning")
    mt = result.metrics
    erle = f"{'≥ ' if mt.erle_capped else ''}{mt.erle_db:.1f} dB"
    t.add_row("echo return loss (ERL)", f"{mt.erl_db:.1f} dB", "speaker → raw mic")
    t.add_row(
        "echo cancellation (ERLE)",
        erle,
        f"raw mic → {escape(result.nodes['output'])}"
        + (" (output below the measurement floor)" if mt.erle_capped else "")
        + f"; need ≥ {result.thresholds['min_erle_db']:g}",
    )
    t.add_row("echo delay", f"{mt.echo_delay_ms:.2f} ms", "GCC-PHAT, reference → mic")
    conv = "never" if mt.convergence_s is None else f"{mt.convergence_s:.2f} s"
    t.add_row(
        "convergence",
        conv,
        f"until the output stays {result.thresholds['convergence_threshold_db']:g} dB "
        "under the mic",
    )
    if mt.double_talk_retention_db is not None:
        t.add_row(
            "double-talk retention",
            f"{mt.double_talk_retention_db:.1f} dB",
            f"near-end talker kept while the speaker plays; need ≥ "
            f"{result.thresholds['min_retention_db']:g}",
        )
    c = output.out()
    c.print(t)
    n = result.nodes
    c.print(
        f"[dim]{escape(result.signal)} ({escape(result.signal_source)}) at "
        f"{result.level_dbfs:g} dBFS for {result.duration_s:g} s into "
        f"{escape(n['playback_sink'])}; reference "
        f"{escape(n['speaker'])}.monitor, mic {escape(n['mic'])}, output {escape(n['output'])}[/]"
    )
    if result.plot:
        c.print(f"plot written to {escape(result.plot)}")
    if result.ok:
        c.print("[green]pass[/]: the microphone path cancels the speaker")
    else:
        c.print("[bold red]FAIL[/]")
        for r in result.reasons:
            c.print(f"  - {escape(r)}")
