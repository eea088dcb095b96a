"""Adapters for `pivoicectl service ...`: install, status, logs and remove the systemd
user unit that runs the assistant at boot; each is one call to pivoicectl.commands.service."""

from __future__ import annotations

from typing import Annotated

import typer

from pivoicectl.cli.options import JsonOpt

DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the unit and every action; change nothing.")
]


def install(
    ctx: typer.Context,
    run_options: Annotated[
        list[str] | None,
        typer.Argument(
            help="Options for `pivoicectl run`, after `--` (checked now, as run checks them).",
            show_default=False,
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    enable_linger: Annotated[
        bool,
        typer.Option(
            "--enable-linger",
            help="Turn on linger (loginctl enable-linger) so it starts at boot with nobody "
            "logged in.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Start the assistant at boot and keep it running: a systemd user unit.

    Writes ~/.config/systemd/user/pivoicectl.service running `pivoicectl run` with the
    options after `--`, then enables and starts it. systemd restarts it after a failure,
    but not after exit code 2 (a bad option or key), and when its event loop stops
    answering. The API key is never put in the unit: it comes from api_key in the [run]
    table of config.toml, or from OPENAI_API_KEY, which is then kept in a mode-0600 file.
    Installing again with the same options changes nothing.

    Examples:
      pivoicectl service install --dry-run -- --voice marin --barge-in local
      pivoicectl service install --enable-linger -- --ptt gpio --gpio-pin 17
      pivoicectl service install -- --local      (the stand-in server: no key needed)
    """
    from pivoicectl.commands import service as cmd

    args = tuple(run_options or ()) + tuple(ctx.args)
    options = cmd.InstallOptions(run_args=args, dry_run=dry_run, enable_linger=enable_linger)
    cmd.render(cmd.install(options, progress=not json_out), json_out)


def status(json_out: JsonOpt = False) -> None:
    """Show whether the assistant's unit is installed, enabled and running, why it last
    stopped, and its last log lines. Exit 1 when it is not installed or not running.

    Example:  pivoicectl service status --json | jq .active
    """
    from pivoicectl.commands import service as cmd

    st = cmd.status()
    cmd.render_status(st, json_out)
    raise typer.Exit(0 if st.ok else 1)


def logs(
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many lines to show.")] = 50,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep showing new lines.")] = False,
) -> None:
    """Show the assistant's log (its journal).

    Examples:  pivoicectl service logs -n 100;  pivoicectl service logs -f
    """
    from pivoicectl.commands import service as cmd

    raise typer.Exit(cmd.logs(lines, follow))


def remove(dry_run: DryRunOpt = False, json_out: JsonOpt = False) -> None:
    """Stop the assistant, keep it from starting at boot, and remove its unit (backed up
    first) and the file holding its API key.

    Example:  pivoicectl service remove --dry-run
    """
    from pivoicectl.commands import service as cmd

    cmd.render(cmd.remove(dry_run), json_out)


def register(app: typer.Typer) -> None:
    """Add the `service` group and its sub-commands to the app."""
    service_app = typer.Typer(
        help=(
            "Run the assistant unattended: start at boot with nobody logged in, restart "
            "after failures.\n\n"
            "Example:  pivoicectl service install -- --voice marin;  "
            "pivoicectl service status;  pivoicectl service logs -f"
        ),
        no_args_is_help=True,
        rich_markup_mode="rich",
    )
    service_app.command(
        "install",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(install)
    service_app.command("status")(status)
    service_app.command("logs")(logs)
    service_app.command("remove")(remove)
    app.add_typer(service_app, name="service")
