"""Adapter for `pivoicectl measure`: options in, one call to pivoicectl.commands.measure, render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pivoicectl.core.measure_plan import (
    DEFAULT_DURATION_S,
    DEFAULT_LEVEL_DBFS,
    DEFAULT_MIN_ERLE_DB,
    DEFAULT_MIN_RETENTION_DB,
    MeasureOptions,
)


def register(app: typer.Typer) -> None:
    """Add `measure` to the app."""

    @app.command()
    def measure(
        duration: Annotated[
            float, typer.Option(help="Seconds of test signal (2-60).")
        ] = DEFAULT_DURATION_S,
        signal: Annotated[
            str, typer.Option(help="Test signal: noise, sweep or speech (espeak-ng if installed).")
        ] = "noise",
        level: Annotated[
            float, typer.Option(help="Signal level, dBFS RMS (-60 to -3).")
        ] = DEFAULT_LEVEL_DBFS,
        mic: Annotated[
            str | None,
            typer.Option(help="Raw microphone (default: the one the echo canceller captures)."),
        ] = None,
        speaker: Annotated[
            str | None,
            typer.Option(help="Speaker sink (default: the one pinned by setup, or the default)."),
        ] = None,
        talker_file: Annotated[
            Path | None,
            typer.Option(help="WAV of a near-end talker, for double-talk retention."),
        ] = None,
        talker_sink: Annotated[
            str | None,
            typer.Option(help="Sink that plays the talker near the mic (sim_air in the sim)."),
        ] = None,
        min_erle: Annotated[
            float, typer.Option(help="ERLE the verdict requires, dB.")
        ] = DEFAULT_MIN_ERLE_DB,
        min_retention: Annotated[
            float, typer.Option(help="Double-talk retention the verdict requires, dB.")
        ] = DEFAULT_MIN_RETENTION_DB,
        plot: Annotated[
            Path | None,
            typer.Option(help="Write a PNG of levels and impulse response (needs matplotlib)."),
        ] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print one JSON object instead of tables.")
        ] = False,
    ) -> None:
        """Measure echo return loss, cancellation (ERLE), echo delay and double talk.

        Plays a test signal through the speaker and records the speaker's monitor, the
        raw mic and source_ec on one clock. Exit status: 0 pass, 1 the verdict fails,
        2 bad input.

        Examples:
          pivoicectl measure
          pivoicectl measure --signal speech --plot echo.png
          pivoicectl measure --talker-file question.wav --talker-sink sim_air --json
        """
        from pivoicectl.commands import measure as cmd

        options = MeasureOptions(
            duration_s=duration,
            signal=signal,
            level_dbfs=level,
            mic=mic,
            speaker=speaker,
            talker_file=talker_file,
            talker_sink=talker_sink,
            min_erle_db=min_erle,
            min_retention_db=min_retention,
            plot=plot,
        )
        result = cmd.measure(options, progress=not json_out)
        cmd.render(result, json_out)
        raise typer.Exit(0 if result.ok else 1)
