"""`pivoicectl doctor`: gather facts about the audio stack, judge them, optionally fix.

The verdicts live in `pivoicectl.core.doctor_rules` (pure); this module only looks at the
machine, applies the safe fixes and renders.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from pivoicectl import render as output
from pivoicectl.core.doctor_rules import FAIL, PASS, SAFE_FIXES, SKIP, WARN, Check, Facts, evaluate
from pivoicectl.core.echo_config import EC_CAPTURE_STREAM, SINK_NAME, SOURCE_NAME
from pivoicectl.core.realtime_rule import PW_LIMITS_FILE, DaemonScheduling
from pivoicectl.errors import UserError
from pivoicectl.system import (
    last_measure,
    paths,
    restart,
    session_manager,
    systemd,
    wireplumber_state,
)
from pivoicectl.system.audio_server import AudioServer
from pivoicectl.system.polling import wait_until

FIX_TIMEOUT_S = 10.0
"""How long `--fix` waits for source_ec and WirePlumber, e.g. just after a restart."""
SETTLE_S = 5.0
"""How long doctor waits for a WirePlumber that is not ready yet before judging: after a
restart it starts a moment after PipeWire (1.1 s on a booted VM)."""


@dataclass
class DoctorReport:
    checks: list[Check]
    fixed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [
                {"id": c.id, "title": c.title, "status": c.status, "detail": c.detail, "fix": c.fix}
                for c in self.checks
            ],
            "fixed": self.fixed,
        }


def _socket_accepts(path: str | None) -> bool:
    if not path or not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def _api_key_facts(f: Facts) -> None:
    """Where the key is (never what it is), and which files holding it others can read."""
    from pivoicectl.system import key_files

    files = key_files.files_holding_key()
    if os.environ.get(key_files.KEY_VARIABLE, "").strip():
        f.api_key_where = key_files.KEY_VARIABLE
    elif files:
        f.api_key_where = str(files[0])
    f.api_key_present = bool(f.api_key_where)
    f.exposed_key_files = [str(p) for p in files if key_files.readable_by_others(p)]


def _service_facts(f: Facts) -> None:
    from pivoicectl.commands.service import unit_path
    from pivoicectl.core.service_unit import UNIT_NAME

    f.service_installed = unit_path().exists()
    if not (f.service_installed and f.systemd_user):
        return
    try:
        props = systemd.show(UNIT_NAME)
    except UserError:
        return
    f.service_enabled = props["UnitFileState"]
    f.service_active = props["ActiveState"]
    f.service_result = props["Result"] if props["Result"] != "success" else ""
    f.service_status = props["StatusText"]


RTKIT_FILES = (
    "/usr/share/dbus-1/system-services/org.freedesktop.RealtimeKit1.service",
    "/usr/libexec/rtkit-daemon",
)
"""Either one means rtkit is installed (Debian: the D-Bus activation file and the daemon)."""


def _scheduling_facts(f: Facts) -> None:
    """The running audio daemons' realtime threads, and what could grant them."""
    import grp

    from pivoicectl.system import scheduling

    pulse = paths.pulse_socket()
    daemons = []
    for name, sock in (("pipewire", f.pipewire_socket), ("pipewire-pulse", pulse)):
        for pid in scheduling.serving_pids(name, str(sock) if sock else None):
            threads = scheduling.thread_scheduling(pid)
            realtime = tuple(f"{t.name} {t.policy} {t.rt_priority}" for t in threads if t.realtime)
            daemons.append(DaemonScheduling(name, pid, realtime, scheduling.rtprio_limit(pid)))
    f.audio_daemons = daemons
    f.rtkit_installed = any(os.path.exists(p) for p in RTKIT_FILES)
    f.user_groups = [g.gr_name for g in grp.getgrall() if f.user in g.gr_mem]
    try:
        grp.getgrnam("pipewire")
        pipewire_group = True
    except KeyError:
        pipewire_group = False
    f.pipewire_group_limits = pipewire_group and os.path.exists(PW_LIMITS_FILE)


def _settle() -> None:
    """Give a WirePlumber that is starting up a moment, so a check run just after a
    restart does not report it (and the defaults it restores) as missing."""
    if session_manager.ready():
        return
    with output.err().status("waiting for WirePlumber to be ready …"):
        wait_until(session_manager.ready, SETTLE_S, interval_s=0.1)


def gather() -> Facts:
    sock = paths.pipewire_socket()
    reachable = _socket_accepts(str(sock) if sock else None)
    if reachable:
        _settle()
    f = Facts(
        pipewire_socket=str(sock) if sock else None,
        pipewire_reachable=reachable,
        config_path=str(paths.echo_cancel_conf()),
        persisted_file=str(paths.wireplumber_default_nodes()),
        persisted=wireplumber_state.persisted_defaults(),
        restart_command=restart.plan().command,
        last_measure=last_measure.load(),
    )
    try:
        f.config_text = paths.echo_cancel_conf().read_text()
    except FileNotFoundError:
        f.config_text = None
    except (OSError, UnicodeDecodeError) as e:
        f.config_text = f"(unreadable: {e})"
    try:
        with AudioServer.connect(timeout_s=2.0) as server:
            info = server.info()
            f.server_name = info.server_name
            f.pipewire_version = info.pipewire_version
            f.default_source, f.default_sink = info.default_source, info.default_sink
            f.sources = [n.name for n in server.sources(info)]
            f.sinks = [n.name for n in server.sinks(info)]
            f.wireplumber_running = "WirePlumber" in server.client_names()
            f.ec_capture_from = server.capture_source_of(EC_CAPTURE_STREAM)
    except UserError as e:
        f.pulse_error = e.message
    try:
        from pivoicectl.system.portaudio import list_devices

        devices = list_devices()
        f.portaudio_names = [d.name for d in devices]
        f.portaudio_default_input = next((d.name for d in devices if d.default_input), None)
    except UserError as e:
        f.portaudio_error = e.message
    f.systemd_user = systemd.manager_running()
    try:
        f.user = getpass.getuser()
    except (KeyError, OSError):
        f.user = str(os.getuid())
    if f.systemd_user:
        f.linger = systemd.linger(f.user)
    _api_key_facts(f)
    _service_facts(f)
    if reachable:
        _scheduling_facts(f)
    return f


def _apply_fixes(checks: list[Check]) -> list[str]:
    failing = {c.id for c in checks if c.status in (FAIL, WARN) and c.id in SAFE_FIXES}
    fixed: list[str] = []
    if not failing:
        return fixed
    wanted = [(SOURCE_NAME, "source")] if failing & {"default-source", "default-persisted"} else []
    if "default-sink" in failing:
        wanted.append((SINK_NAME, "sink"))
    # Right after a restart WirePlumber may not take (or save) a default yet.
    session_manager.wait_ready(wanted, FIX_TIMEOUT_S)
    with AudioServer.connect() as server:
        if failing & {"default-source", "default-persisted"}:
            server.set_default_source(SOURCE_NAME)
            fixed.append(f"set the default source to {SOURCE_NAME}")
        if "default-sink" in failing:
            server.set_default_sink(SINK_NAME)
            fixed.append(f"set the default sink to {SINK_NAME}")
    wireplumber_state.wait_persisted(wireplumber_state.SOURCE_KEY, SOURCE_NAME, timeout_s=3.0)
    return fixed


def doctor(fix: bool = False) -> DoctorReport:
    checks = evaluate(gather())
    if not fix:
        return DoctorReport(checks)
    fixed = _apply_fixes(checks)
    return DoctorReport(evaluate(gather()) if fixed else checks, fixed)


_STYLE = {
    PASS: "[green]pass[/]",
    WARN: "[yellow]warn[/]",
    FAIL: "[bold red]FAIL[/]",
    SKIP: "[dim]skip[/]",
}


def render(report: DoctorReport, json_out: bool) -> None:
    if json_out:
        output.print_json(report)
        return
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="pivoicectl doctor", title_justify="left", show_lines=False)
    t.add_column("check")
    t.add_column("status")
    t.add_column("detail / fix")
    for c in report.checks:
        text = escape(c.detail)
        if c.fix and c.status in (FAIL, WARN):
            text += f"\n[bold]fix:[/] {escape(c.fix)}"
        t.add_row(escape(c.id), _STYLE[c.status], text)
    console = output.out()
    console.print(t)
    for f in report.fixed:
        console.print(f"[green]fixed:[/] {escape(f)}")
    fails = sum(1 for ch in report.checks if ch.status == FAIL)
    warns = sum(1 for ch in report.checks if ch.status == WARN)
    if fails:
        console.print(f"[bold red]{fails} check(s) failed[/], {warns} warning(s)")
    else:
        console.print(f"[green]no check failed[/] ({warns} warning(s))")
