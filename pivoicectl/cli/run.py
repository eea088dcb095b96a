"""Adapters for `pivoicectl run` and `pivoicectl local-server`: options in, one call to
pivoicectl.commands.run, render.

`run`'s options are made from the settings table (`pivoicectl.realtime.settings.table`):
one Typer option per row, built into the command's `__signature__` (Typer reads the
signature), so a new setting is one row there and nothing here. Every option defaults
to None, "not given", so the environment and the config file can fill it; the help
shows the real default, read from the settings dataclasses.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from pivoicectl.realtime.settings.table import SETTINGS, Setting

_RUN_HELP = """Talk with the assistant: full duplex, interrupt it any time.

Streams the default microphone (source_ec after `pivoicectl setup`) to the
OpenAI Realtime API and plays the answers on the default speaker.

Settings also come from PIVOICECTL_* variables and the \\[run] table of
$XDG_CONFIG_HOME/pivoicectl/config.toml (flags win); the key from OPENAI_API_KEY
or api_key there.

Examples:
  pivoicectl run --local                     # the repeater, no key, no network
  pivoicectl run --vad semantic --trace session.jsonl
  pivoicectl run --local --max-turns 2 --json
  pivoicectl run --barge-in local            # stop talking at once when you speak
  pivoicectl run --echo-guard vad-gate       # no echo canceller on this path
"""


def _option(row: Setting) -> inspect.Parameter:
    """The Typer option of one settings row."""
    flag = row.flag_name
    assert flag is not None
    decls = [flag]
    if row.kind is bool and row.negatable:
        decls = [f"{flag}/--no-{flag[2:]}"]
    option = typer.Option(
        *decls,
        help=row.help_text().replace("[", "\\["),  # not rich markup
        metavar=row.metavar or None,
        show_default=False,
    )
    return inspect.Parameter(
        row.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[row.kind | None, option],
    )


def run_parameters() -> list[inspect.Parameter]:
    """`run`'s parameters: one per settings row that has a flag, then --json."""
    params = [_option(row) for row in SETTINGS if row.flag]
    json_out = typer.Option("--json", help="Print the summary as one JSON object.")
    params.append(
        inspect.Parameter(
            "json_out",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, json_out],
        )
    )
    return params


def run_cmd(**values: Any) -> None:
    from pivoicectl.commands import run as cmd
    from pivoicectl.realtime.settings import load_run_settings
    from pivoicectl.system import paths

    json_out = bool(values.pop("json_out"))
    settings = load_run_settings(values, paths.user_config_file())
    cmd.render_summary(cmd.run(settings, json_out=json_out), json_out)


run_cmd.__doc__ = _RUN_HELP
run_cmd.__signature__ = inspect.Signature(run_parameters())  # type: ignore[attr-defined]


def register(app: typer.Typer) -> None:
    """Add `run` and `local-server` to the app."""
    app.command("run")(run_cmd)

    @app.command("local-server")
    def local_server_cmd(
        port: Annotated[
            int, typer.Option(help="TCP port on 127.0.0.1 (0 picks a free one).", min=0, max=65535)
        ] = 8765,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        session_limit: Annotated[
            float | None,
            typer.Option(help="End sessions after SECONDS, like the service's 60 min.", min=1),
        ] = None,
        call_tool: Annotated[
            str | None,
            typer.Option(
                help="After each question, call this function tool (if the session declares "
                "it) instead of answering; answer once its output is back.",
                metavar="NAME",
            ),
        ] = None,
        call_tool_args: Annotated[
            str,
            typer.Option(help="The arguments of --call-tool: a JSON object.", metavar="JSON"),
        ] = "{}",
    ) -> None:
        """Run a local Realtime-compatible server whose model is a repeater.

        It answers every turn with your own words, honours barge-in, cancel and
        truncate like the service, and needs no key or network.

        Example:  pivoicectl local-server --port 8765  then
                  OPENAI_API_KEY=x pivoicectl run --url ws://127.0.0.1:8765/v1/realtime
        """
        from pivoicectl.commands import run as cmd

        cmd.local_server(host, port, session_limit, call_tool, call_tool_args)
