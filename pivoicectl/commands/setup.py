"""`pivoicectl setup`: install echo cancellation and make source_ec the default source.

The command first computes a plan (pure: what to write, restart and set), then either
prints it (`--dry-run`) or carries it out. What it changes is recorded before it changes
it, so `--undo` can restore the previous file tree and default source.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from pivoicectl import render as output
from pivoicectl.core import echo_config
from pivoicectl.core.echo_config import EC_CAPTURE_STREAM, SINK_NAME, SOURCE_NAME, EchoConfig
from pivoicectl.errors import UserError
from pivoicectl.system import (
    fileops,
    paths,
    restart,
    session_manager,
    undo_record,
    versions,
    wireplumber_state,
)
from pivoicectl.system.audio_server import AudioServer, Node, ServerInfo
from pivoicectl.system.polling import wait_until

LINK_TIMEOUT_S = 5.0
"""How long setup waits for WirePlumber to link the canceller to the mic once it runs."""


@dataclass(frozen=True)
class SetupOptions:
    mic: str | None = None
    speaker: str | None = None
    aec_args: tuple[str, ...] = ()
    restart: bool = True
    dry_run: bool = False
    timeout_s: float = 20.0


@dataclass
class SetupResult:
    """What setup (or undo) did, or would do under --dry-run."""

    operation: str  # "setup" or "undo"
    changed: bool
    dry_run: bool
    config_path: str
    actions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mic: str | None = None
    speaker: str | None = None
    pipewire_version: str | None = None
    wireplumber_version: str | None = None
    template: str | None = None
    aec_args: dict[str, bool] = field(default_factory=dict)
    default_source: str | None = None
    default_sink: str | None = None
    persisted: bool | None = None
    persistence: str | None = None
    backup_path: str | None = None
    restart: str | None = None
    complete: bool = True
    config_text: str | None = None


# ----------------------------------------------------------------------------- planning


def _pick_mic(requested: str | None, sources: list[Node], info: ServerInfo, old: str | None) -> str:
    by_name = {n.name: n for n in sources}
    if requested:
        node = by_name.get(requested)
        if node is None:
            raise UserError(
                f"no source named {requested!r}", "list sources with `pivoicectl devices`"
            )
        if node.monitor or node.echo_cancelled:
            kind = "a monitor" if node.monitor else "echo-cancelled already"
            raise UserError(f"{requested!r} is {kind}, not a microphone", "pick a real mic")
        return requested
    default = by_name.get(info.default_source)
    if default and not default.monitor and not default.echo_cancelled:
        return default.name
    if old and old in by_name:  # already set up: keep the mic the config pins
        return old
    mics = [n for n in sources if not n.monitor and not n.echo_cancelled]
    if len(mics) == 1:
        return mics[0].name
    if not mics:
        raise UserError("no microphone found", "plug one in, then `pivoicectl devices`")
    raise UserError(
        "cannot tell which microphone to use", "pass --mic NODE (see `pivoicectl devices`)"
    )


def _pick_speaker(
    requested: str | None, sinks: list[Node], info: ServerInfo, old: str | None
) -> str:
    by_name = {n.name: n for n in sinks}
    if requested:
        node = by_name.get(requested)
        if node is None:
            raise UserError(f"no sink named {requested!r}", "list sinks with `pivoicectl devices`")
        if node.echo_cancelled:
            raise UserError(f"{requested!r} is the echo-cancel sink itself", "pick the speaker")
        return requested
    default = by_name.get(info.default_sink)
    if default and not default.echo_cancelled:
        return default.name
    if old and old in by_name:
        return old
    real = [n for n in sinks if not n.echo_cancelled]
    if len(real) == 1:
        return real[0].name
    raise UserError(
        "cannot tell which speaker to use", "pass --speaker NODE (see `pivoicectl devices`)"
    )


def _pipewire_version(info: ServerInfo) -> str:
    # The installed daemon is what loads the file after the restart.
    version = versions.installed_pipewire() or info.pipewire_version
    if not version:
        raise UserError(
            f"the audio server is {info.server_name!r}, not PipeWire",
            "install PipeWire: sudo apt-get install pipewire pipewire-pulse wireplumber",
        )
    return version


# ----------------------------------------------------------------------------- waiting


def _was(current: str, saved: str | None) -> str:
    if saved in (None, current):
        return f"was {current}"
    return f"was {current}; WirePlumber had saved {saved}"


def _status(progress: bool, text: str) -> AbstractContextManager[Any]:
    return output.err().status(output.plain(text)) if progress else nullcontext()


def _node_exists(name: str, kind: str) -> bool:
    with AudioServer.connect(timeout_s=1.0) as s:
        return s.find(name, kind) is not None


def restart_and_report(result: SetupResult, opts: SetupOptions, progress: bool) -> bool:
    """Restart PipeWire as planned; False if the user has to do it."""
    plan = restart.plan()
    if not opts.restart:
        result.restart = "skipped"
        result.notes.append(f"not restarted (--no-restart): {plan.describe()}")
        return False
    if plan.method == "manual":
        result.restart = "manual"
        result.notes.append(
            f"no systemd user manager and no ${restart.ENV_VAR}: {plan.describe()}, "
            "then run `pivoicectl setup` again"
        )
        return False
    with _status(progress, f"restarting PipeWire ({plan.command}) …"):
        restart.execute(plan)
    result.restart = plan.method
    result.actions.append(f"restarted PipeWire ({plan.method}: {plan.command})")
    return True


def wait_ready(
    nodes: list[tuple[str, str]], opts: SetupOptions, restarted: bool, progress: bool
) -> None:
    """Wait for the nodes and for WirePlumber, which can start later than pipewire-pulse."""
    what = " and ".join([name for name, _ in nodes] + ["WirePlumber"])
    with _status(progress, f"waiting for {what} …"):
        session_manager.wait_ready(
            nodes, opts.timeout_s, "after the restart" if restarted else "of starting setup"
        )


def _wait_capturing(mic: str, progress: bool) -> bool:
    """WirePlumber links the canceller's capture to the mic a moment after it starts;
    until then source_ec exists but carries silence."""

    def capturing() -> bool:
        try:
            with AudioServer.connect(timeout_s=1.0) as server:
                return server.capture_source_of(EC_CAPTURE_STREAM) == mic
        except UserError:
            return False

    with _status(progress, f"waiting for the echo canceller to capture {mic} …"):
        return wait_until(capturing, LINK_TIMEOUT_S, interval_s=0.1)


# ----------------------------------------------------------------------------- setup


def setup(opts: SetupOptions, progress: bool = True) -> SetupResult:
    overrides = echo_config.parse_aec_args(opts.aec_args)
    with AudioServer.connect() as server:
        info = server.info()
        sources, sinks = server.sources(), server.sinks()
    pw_version = _pipewire_version(info)
    conf_path = paths.echo_cancel_conf()
    old_bytes = fileops.read_or_none(conf_path)
    old_pins = echo_config.pinned_devices(old_bytes.decode(errors="replace")) if old_bytes else None
    mic = _pick_mic(opts.mic, sources, info, old_pins[0] if old_pins else None)
    speaker = _pick_speaker(opts.speaker, sinks, info, old_pins[1] if old_pins else None)
    cfg = EchoConfig(mic, speaker, pw_version, {**echo_config.DEFAULT_AEC_ARGS, **overrides})
    text = cfg.render()
    new_bytes = text.encode()
    write = old_bytes != new_bytes
    source_exists = any(n.name == SOURCE_NAME for n in sources)
    need_restart = write or not source_exists
    saved = wireplumber_state.persisted_defaults()
    persisted = saved.get(wireplumber_state.SOURCE_KEY)
    # The *configured* default is what survives a reboot, not the current one: source_ec
    # can be the default by priority alone while WirePlumber has another name saved.
    set_source = write or info.default_source != SOURCE_NAME or persisted != SOURCE_NAME
    set_sink = cfg.uses_sink and (
        write
        or info.default_sink != SINK_NAME
        or saved.get(wireplumber_state.SINK_KEY) != SINK_NAME
    )
    wp_version = versions.installed_wireplumber()

    result = SetupResult(
        operation="setup",
        changed=False,
        dry_run=opts.dry_run,
        config_path=str(conf_path),
        mic=mic,
        speaker=speaker,
        pipewire_version=pw_version,
        wireplumber_version=wp_version,
        template=f"echo-cancel-{cfg.generation}",
        aec_args=cfg.aec_args,
        default_source=info.default_source,
        default_sink=info.default_sink,
    )

    if opts.dry_run:
        result.config_text = text
        plan = restart.plan()
        if write:
            if old_bytes is not None:
                result.actions.append(f"back up {conf_path} to {paths.backup_dir()}/")
            result.actions.append(f"write {conf_path}")
        if need_restart:
            result.actions.append(
                plan.describe() if opts.restart else "skip the restart (--no-restart)"
            )
            result.actions.append(f"wait up to {opts.timeout_s:.0f} s for {SOURCE_NAME}")
        if set_source:
            result.actions.append(
                f"set the default source to {SOURCE_NAME} (was {info.default_source})"
            )
        if set_sink:
            result.actions.append(f"set the default sink to {SINK_NAME} (was {info.default_sink})")
        result.changed = bool(result.actions)
        if not result.actions:
            result.notes.append("nothing to change: already set up")
        return result

    first_setup = False
    if write or set_source or set_sink:
        first_setup = undo_record.create(conf_path, old_bytes, info, saved, new_bytes)
        if not first_setup:
            result.notes.append("--undo still puts back what was there before the first setup")

    if write:
        try:
            if old_bytes is not None:
                result.backup_path = str(fileops.backup(conf_path, paths.backup_dir()))
                result.actions.append(f"backed up the previous config to {result.backup_path}")
                if first_setup:
                    undo_record.update(backup_path=result.backup_path)
            fileops.atomic_write(conf_path, new_bytes)
        except UserError:
            if first_setup:  # nothing was changed: nothing to undo
                paths.setup_undo_file().unlink(missing_ok=True)
            raise
        result.actions.append(f"wrote {conf_path} ({result.template})")

    if need_restart and not restart_and_report(result, opts, progress):
        still_there = _node_exists(SOURCE_NAME, "source")
        if not still_there or write:
            result.complete = False
            result.changed = bool(result.actions)
            return result
    needed = [(SOURCE_NAME, "source")] + ([(SINK_NAME, "sink")] if cfg.uses_sink else [])
    wait_ready(needed, opts, need_restart, progress)

    with AudioServer.connect() as server:
        info_now = server.info()
        saved = wireplumber_state.persisted_defaults()
        saved_source = saved.get(wireplumber_state.SOURCE_KEY)
        if info_now.default_source != SOURCE_NAME or saved_source != SOURCE_NAME:
            with _status(progress, f"setting the default source to {SOURCE_NAME} …"):
                server.set_default_source(SOURCE_NAME)
            result.actions.append(
                f"set the default source to {SOURCE_NAME} "
                f"({_was(info_now.default_source, saved_source)})"
            )
        saved_sink = saved.get(wireplumber_state.SINK_KEY)
        if cfg.uses_sink and (info_now.default_sink != SINK_NAME or saved_sink != SINK_NAME):
            server.set_default_sink(SINK_NAME)
            result.actions.append(
                f"set the default sink to {SINK_NAME} ({_was(info_now.default_sink, saved_sink)})"
            )
        final = server.info()
    result.default_source = final.default_source
    result.default_sink = final.default_sink
    if not _wait_capturing(mic, progress):
        result.notes.append(
            f"the echo canceller does not capture {mic} yet: see `pivoicectl doctor`"
        )

    with _status(progress, "checking that WirePlumber keeps it across reboots …"):
        result.persisted = wireplumber_state.wait_persisted(
            wireplumber_state.SOURCE_KEY, SOURCE_NAME
        )
    if result.persisted:
        result.persistence = wireplumber_state.how_it_persists(wp_version)
    else:
        result.persistence = (
            "WirePlumber did not save the default source; source_ec still wins at login "
            "through priority.session=3000"
        )
        result.notes.append(
            f"{paths.wireplumber_default_nodes()} does not name {SOURCE_NAME}: "
            "is WirePlumber running?"
        )
    result.changed = bool(result.actions)
    if not result.changed:
        result.notes.append("nothing to change: already set up")
    return result


# ----------------------------------------------------------------------------- rendering


def render(result: SetupResult, json_out: bool) -> None:
    if json_out:
        output.print_json(result)
        return
    c = output.out()
    title = "setup --undo" if result.operation == "undo" else "setup"
    if result.dry_run:
        c.print(f"[bold]{title} --dry-run[/]: nothing was changed")
        if result.config_text:
            c.print(f"[dim]--- {output.esc(result.config_path)}[/]")
            c.print(result.config_text, markup=False)
        c.print("[bold]would:[/]" if result.actions else "nothing to change: already set up")
        for a in result.actions:
            c.print(f"  • {a}", markup=False)
        return
    if result.mic:
        c.print(
            f"mic [bold]{output.esc(result.mic)}[/] · "
            f"speaker [bold]{output.esc(result.speaker)}[/] · "
            f"PipeWire {output.esc(result.pipewire_version)} ({output.esc(result.template)}) · "
            f"WirePlumber {output.esc(result.wireplumber_version or '?')}"
        )
    for a in result.actions:
        c.print(f"  [green]✓[/] {output.esc(a)}", markup=True)
    for n in result.notes:
        c.print(f"  [yellow]![/] {output.esc(n)}")
    if result.operation == "undo":
        c.print(f"default source: [bold]{output.esc(result.default_source)}[/]")
    elif result.complete:
        c.print(f"default source: [bold]{output.esc(result.default_source)}[/]")
        if result.persistence:
            c.print(f"across reboots: {output.esc(result.persistence)}")
    elif not result.complete:
        c.print("[yellow]setup is not complete[/]: see the notes above")
