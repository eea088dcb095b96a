"""Adapter for `pivoicectl parrot`: options in, one call to pivoicectl.commands.parrot, render."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add `parrot` to the app."""

    @app.command()
    def parrot(
        rounds: Annotated[int, typer.Option(help="Utterances to repeat before stopping.")] = 3,
        timeout: Annotated[float, typer.Option(help="Stop after this many seconds.")] = 60.0,
        self_test: Annotated[
            bool,
            typer.Option(
                "--self-test", help="No person needed: play a known line, check it is not heard."
            ),
        ] = False,
        source: Annotated[
            str | None, typer.Option(help="Source to listen on (default: the default source).")
        ] = None,
        sink: Annotated[
            str | None, typer.Option(help="Sink to play on (default: the default sink).")
        ] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print one JSON object instead of text.")
        ] = False,
    ) -> None:
        """Repeat what you say, once, and count the times it hears itself.

        Listens on the default source (source_ec after `setup`), cuts each utterance with
        the VAD, plays it back, and keeps listening. A capture that starts during its own
        playback and matches it is a self-trigger: an echo loop. Exit status: 0 no
        self-trigger, 1 echo loop detected, 2 bad input.

        Examples:
          pivoicectl parrot --self-test
          pivoicectl parrot --rounds 5 --timeout 120
        """
        from pivoicectl.commands import parrot as cmd

        options = cmd.ParrotOptions(
            rounds=rounds, timeout_s=timeout, self_test=self_test, source=source, sink=sink
        )
        run = cmd.self_test if self_test else cmd.parrot
        result = run(options, progress=not json_out)
        cmd.render(result, json_out)
        raise typer.Exit(0 if result.ok else 1)
