"""`pivoicectl service`: run the assistant at boot as a systemd user unit, and look after it.

`install` writes the unit (`core.service_unit`), and the API key, when it came from
the environment, into a mode-0600 environment file; then reloads, enables and
(re)starts it. It changes only what differs: a second install with the same options
does nothing and says so, and a different unit already there is backed up first.
`status`, `logs` and `remove` read and undo that. systemd itself is reached only
through `system.systemd`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pivoicectl import render as output
from pivoicectl.core import service_unit
from pivoicectl.core.service_unit import UNIT_NAME, UnitSpec
from pivoicectl.errors import UserError
from pivoicectl.system import fileops, paths, systemd
from pivoicectl.system.key_files import (
    KEY_VARIABLE,
    readable_by_others,
    service_environment_file,
)

if TYPE_CHECKING:
    from pivoicectl.realtime.settings import RunSettings

START_WAIT_S = 20.0
"""How long `install` watches the unit start before reporting what it sees."""
LOG_LINES = 8


def unit_path() -> Path:
    return systemd.user_unit_dir() / UNIT_NAME


@dataclass(frozen=True)
class InstallOptions:
    run_args: tuple[str, ...] = ()
    dry_run: bool = False
    enable_linger: bool = False


@dataclass
class ServiceResult:
    """What install or remove did, or would do under --dry-run."""

    operation: str  # "install" or "remove"
    changed: bool
    dry_run: bool
    unit_path: str
    environment_file: str | None = None
    actions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unit_text: str | None = None
    backup_path: str | None = None
    linger: bool | None = None
    state: str | None = None


@dataclass
class ServiceStatus:
    installed: bool
    unit_path: str
    current: bool | None
    """Whether the installed unit is one `install` wrote (None when not installed)."""
    enabled: str
    active: str
    sub_state: str
    since: str
    last_exit: str
    result: str
    status_text: str
    restarts: str
    linger: bool | None
    user: str
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.installed and self.active == "active"


# ----------------------------------------------------------------------------- planning


def program() -> tuple[str, ...]:
    """This installation's own `pivoicectl`, by absolute path, so a venv or pipx install
    keeps working from a unit that has no PATH of the user's shell."""
    python = Path(sys.executable)
    if not python.is_absolute():
        python = Path(os.path.abspath(python))
    script = python.parent / "pivoicectl"
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (str(python), "-m", "pivoicectl")


def check_run_args(run_args: tuple[str, ...]) -> RunSettings:
    """The settings `run` will have under the service, parsed and checked exactly as
    `run` does: its options, then config.toml, without this shell's PIVOICECTL_*
    variables (the unit does not have them). A bad option or value is a UserError now
    rather than a unit that fails at every boot."""
    from typer.main import get_command

    from pivoicectl.main import app

    if any(a in ("-h", "--help") for a in run_args):
        raise UserError("--help is not a run option to install", "see `pivoicectl run --help`")
    group = get_command(app)
    # Typer builds on click (its own copy in recent releases): only the command objects'
    # public methods are used here, so either works.
    with group.context_class(group, info_name="pivoicectl") as parent:
        command = group.get_command(parent, "run")  # type: ignore[attr-defined]
        if command is None:
            raise RuntimeError("the app has no run command")
        try:
            ctx = command.make_context("run", list(run_args), parent=parent)
        except Exception as exc:
            if not hasattr(exc, "format_message"):  # not a usage error: a bug
                raise
            raise UserError(
                f"not a valid run option: {exc.format_message()}",
                "give the options as `pivoicectl service install -- --voice marin ...`; "
                "see `pivoicectl run --help`",
            ) from exc
    from pivoicectl.realtime.settings import load_run_settings

    flags = {k: v for k, v in ctx.params.items() if k != "json_out"}
    return load_run_settings(flags, paths.user_config_file(), environ={})


def _environment_file_text(key: str) -> str:
    if not key or any(c.isspace() or c in "\"'\\$`" for c in key):
        raise UserError(
            f"{KEY_VARIABLE} holds spaces or quotes: it is not an API key",
            f"export {KEY_VARIABLE} with the key alone, then install again",
        )
    return (
        "# Written by `pivoicectl service install` for pivoicectl.service; mode 0600.\n"
        f"{KEY_VARIABLE}={key}\n"
    )


def _needs_key(settings: RunSettings) -> bool:
    """No key on the device with the stand-in server or a token backend."""
    return not (settings.service.local or settings.service.token_url)


# ----------------------------------------------------------------------------- install


def install(opts: InstallOptions, progress: bool = True) -> ServiceResult:
    settings = check_run_args(opts.run_args)
    unit = unit_path()
    env_file: Path | None = None
    env_text: str | None = None
    notes: list[str] = []
    key = os.environ.get(KEY_VARIABLE, "").strip()
    if _needs_key(settings):
        if settings.service.api_key:  # from config.toml: the environment was left out
            config = paths.user_config_file()
            if readable_by_others(config):
                notes.append(
                    f"{config} holds the API key and other users can read it: chmod 600 {config}"
                )
        elif key:
            env_file = service_environment_file()
            env_text = _environment_file_text(key)
        else:
            raise UserError(
                "no API key for the service",
                f"put api_key in the [run] table of {paths.user_config_file()}, or export "
                f"{KEY_VARIABLE} before installing (it is stored in a mode-0600 file), or "
                "install with `-- --local` to try it without one",
            )
    if any(name.startswith("PIVOICECTL_") for name in os.environ):
        notes.append(
            "PIVOICECTL_* variables of this shell do not reach the service: put those "
            f"settings in {paths.user_config_file()} or give them as options"
        )
    text = service_unit.render_unit(UnitSpec(program(), opts.run_args, env_file))
    result = ServiceResult(
        "install",
        changed=False,
        dry_run=opts.dry_run,
        unit_path=str(unit),
        environment_file=str(env_file) if env_file else None,
        unit_text=text,
        notes=notes,
    )
    if not opts.dry_run and not systemd.manager_running():
        raise UserError(
            f"the systemd user manager is not running for {systemd.user_name()}",
            "run this in a login session on the Pi (ssh is fine), not under sudo or su",
            exit_code=1,
        )
    old = fileops.read_or_none(unit)
    unit_changed = old != text.encode()
    env_changed = False
    if env_file is not None and env_text is not None:
        env_changed = fileops.read_or_none(env_file) != env_text.encode() or (
            readable_by_others(env_file)
        )
    _write_files(result, unit, old, text, env_file, env_text, unit_changed, env_changed)
    state = systemd.show(UNIT_NAME) if not opts.dry_run else {}
    enabled = state.get("UnitFileState") == "enabled"
    active = state.get("ActiveState") in ("active", "activating", "reloading")
    if unit_changed:
        _act(result, "reload the user manager", ("daemon-reload",))
    if not enabled:
        _act(result, f"enable {UNIT_NAME} (start at boot)", ("enable", UNIT_NAME))
    if unit_changed or env_changed or not active:
        _act(result, f"start {UNIT_NAME}", ("restart", "--no-block", UNIT_NAME))
    result.changed = bool(result.actions)
    _linger(result, opts)
    if opts.dry_run:
        return result
    if not result.changed:
        result.state = state.get("ActiveState") or None
        result.notes.insert(0, "nothing to change: the unit is installed, enabled and running")
        return result
    result.state = _wait_started(progress)
    return result


def _act(result: ServiceResult, description: str, args: tuple[str, ...]) -> None:
    result.actions.append(f"{description}: systemctl --user {' '.join(args)}")
    if not result.dry_run:
        systemd.checked_systemctl(*args)


def _write_files(
    result: ServiceResult,
    unit: Path,
    old: bytes | None,
    text: str,
    env_file: Path | None,
    env_text: str | None,
    unit_changed: bool,
    env_changed: bool,
) -> None:
    if unit_changed:
        if old is not None:
            result.actions.append(f"back up the existing {unit.name}")
            if not result.dry_run:
                result.backup_path = str(fileops.backup(unit, paths.backup_dir()))
        result.actions.append(f"write {unit}")
        if not result.dry_run:
            fileops.atomic_write(unit, text.encode(), mode=0o644)
    if env_file is not None and env_text is not None and env_changed:
        result.actions.append(f"write the API key to {env_file} (mode 0600)")
        if not result.dry_run:
            fileops.atomic_write(env_file, env_text.encode(), mode=0o600)


def _linger(result: ServiceResult, opts: InstallOptions) -> None:
    user = systemd.user_name()
    result.linger = systemd.linger(user)
    if result.linger is not False:
        return
    command = f"sudo loginctl enable-linger {user}"
    if opts.enable_linger:
        result.actions.append(f"turn on linger for {user}: loginctl enable-linger {user}")
        if opts.dry_run:
            return
        out = systemd.enable_linger(user)
        if out.returncode == 0:
            result.linger = True
            result.changed = True
            return
        result.actions.pop()
        result.notes.append(f"loginctl enable-linger failed ({out.last_line()}): run {command}")
        return
    result.notes.append(
        f"linger is off for {user}: the assistant stops when your last session ends and "
        f"does not start at boot until someone logs in. Run: {command} "
        "(or install with --enable-linger)"
    )


def _wait_started(progress: bool) -> str:
    """Watch the unit leave 'activating' (bounded): READY comes once the service session
    is up and audio flows, which can take a while at boot but seconds here."""
    deadline = time.monotonic() + START_WAIT_S
    shown = output.err().status("waiting for the assistant to start") if progress else None
    with shown or contextlib.nullcontext():
        while True:
            state = systemd.show(UNIT_NAME).get("ActiveState", "")
            if state in ("active", "failed", "inactive") or time.monotonic() >= deadline:
                return state or "unknown"
            time.sleep(0.5)


# ----------------------------------------------------------------------------- status, logs


def status(log_lines: int = LOG_LINES) -> ServiceStatus:
    unit = unit_path()
    installed_bytes = fileops.read_or_none(unit)
    user = systemd.user_name()
    props = systemd.show(UNIT_NAME) if systemd.manager_running() else {}
    current = None
    if installed_bytes is not None:
        current = installed_bytes.startswith(b"# Written by `pivoicectl service install`")
    return ServiceStatus(
        installed=installed_bytes is not None,
        unit_path=str(unit),
        current=current,
        enabled=props.get("UnitFileState", ""),
        active=props.get("ActiveState", "") or ("unknown" if installed_bytes else ""),
        sub_state=props.get("SubState", ""),
        since=props.get("ActiveEnterTimestamp", ""),
        last_exit=_last_exit(props),
        result=props.get("Result", ""),
        status_text=props.get("StatusText", ""),
        restarts=props.get("NRestarts", ""),
        linger=systemd.linger(user),
        user=user,
        log=systemd.journal_lines(UNIT_NAME, log_lines) if installed_bytes is not None else [],
    )


def _last_exit(props: dict[str, str]) -> str:
    code = props.get("ExecMainStatus", "")
    if not code or props.get("ExecMainCode", "") in ("", "0"):
        return ""
    meaning = {
        "0": "clean exit",
        "1": "a failure (see the log)",
        "2": "a configuration or account problem: not restarted",
        "70": "an internal error",
        "130": "interrupted",
    }.get(code, "")
    return f"{code} ({meaning})" if meaning else code


def logs(lines: int, follow: bool) -> int:
    if not 1 <= lines <= 100_000:
        raise UserError(f"-n {lines} is out of range", "use 1 to 100000 lines")
    return systemd.follow_journal(UNIT_NAME, lines, follow)


# ----------------------------------------------------------------------------- remove


def remove(dry_run: bool = False) -> ServiceResult:
    unit = unit_path()
    env_file = service_environment_file()
    result = ServiceResult("remove", changed=False, dry_run=dry_run, unit_path=str(unit))
    has_unit = unit.exists()
    has_env = env_file.exists()
    if not has_unit and not has_env:
        result.notes.append("nothing to remove: the service is not installed")
        return result
    if not dry_run and has_unit and not systemd.manager_running():
        raise UserError(
            f"the systemd user manager is not running for {systemd.user_name()}",
            "run this in a login session on the Pi, not under sudo or su",
            exit_code=1,
        )
    if has_unit:
        _act(
            result, f"stop {UNIT_NAME} and do not start it at boot", ("disable", "--now", UNIT_NAME)
        )
        result.actions.append(f"back up and remove {unit}")
        if not dry_run:
            result.backup_path = str(fileops.backup(unit, paths.backup_dir()))
            with fileops.boundary(unit, "remove"):
                unit.unlink()
    if has_env:
        result.environment_file = str(env_file)
        result.actions.append(f"remove {env_file} (it holds the API key)")
        if not dry_run:
            with fileops.boundary(env_file, "remove"):
                env_file.unlink()
    if has_unit:
        _act(result, "reload the user manager", ("daemon-reload",))
    result.changed = True
    return result


# ----------------------------------------------------------------------------- rendering


def render(result: ServiceResult, json_out: bool) -> None:
    if json_out:
        output.print_json(result)
        return
    con = output.out()
    if result.dry_run and result.unit_text is not None:
        con.print(output.plain(f"# {result.unit_path}", "dim"))
        con.print(output.plain(result.unit_text.rstrip("\n")))
        con.print()
    verb = "would" if result.dry_run else "did"
    for action in result.actions:
        con.print(output.plain(f"{verb}: {action}"))
    if result.backup_path:
        con.print(output.plain(f"backup: {result.backup_path}"))
    if result.state:
        style = {"active": "green", "failed": "red"}.get(result.state, "yellow")
        con.print(output.plain(f"{UNIT_NAME}: {result.state}", style))
        if result.state != "active":
            con.print(output.plain("see why: pivoicectl service status", "dim"))
    for note in result.notes:
        con.print(output.plain(f"note: {note}", "yellow"))


def render_status(st: ServiceStatus, json_out: bool) -> None:
    if json_out:
        data = output.to_jsonable(st)
        data["ok"] = st.ok
        output.print_json(data)
        return
    con = output.out()
    if not st.installed:
        con.print(output.plain(f"{UNIT_NAME} is not installed ({st.unit_path})"))
        con.print(output.plain("install it: pivoicectl service install", "dim"))
        return
    state = st.active + (f" ({st.sub_state})" if st.sub_state else "")
    rows = [
        ("unit", st.unit_path + ("" if st.current else " (not written by pivoicectl)")),
        ("enabled", st.enabled or "unknown"),
        ("state", state),
        ("since", st.since or "-"),
        ("status", st.status_text or "-"),
        ("restarts", st.restarts or "-"),
        ("last exit", st.last_exit or "-"),
        ("linger", {True: "on", False: "off: stops when you log out", None: "unknown"}[st.linger]),
    ]
    for name, value in rows:
        style = "green" if name == "state" and st.active == "active" else ""
        if name == "state" and st.active in ("failed", "inactive"):
            style = "red"
        line = output.plain(f"{name:>9}  ")
        line.append_text(output.plain(value, style))
        con.print(line)
    if st.log:
        con.print(output.plain("recent log:", "dim"))
        for entry in st.log:
            con.print(output.plain("  " + entry))
