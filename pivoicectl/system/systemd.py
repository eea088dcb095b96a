"""The user's systemd: `systemctl --user`, `loginctl` and `journalctl`, called as commands.

systemd is a boundary the tests cannot run (no user manager outside a booted system), so
everything goes through these few functions with argument lists (never a shell), and
tests put fakes of the three programs first on PATH.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pivoicectl.errors import UserError
from pivoicectl.system import paths

COMMAND_TIMEOUT_S = 30.0

UNIT_PROPERTIES = (
    "LoadState",
    "ActiveState",
    "SubState",
    "UnitFileState",
    "Result",
    "ExecMainStatus",
    "ExecMainCode",
    "ActiveEnterTimestamp",
    "InactiveEnterTimestamp",
    "StatusText",
    "NRestarts",
)
"""What `service status` reads with one `systemctl show`."""


def user_unit_dir() -> Path:
    """Where a user's own units live (read by the user manager at daemon-reload)."""
    return paths.config_home() / "systemd" / "user"


def user_name() -> str:
    return os.environ.get("USER") or getpass.getuser()


def manager_running() -> bool:
    """A user manager listens on $XDG_RUNTIME_DIR/systemd/private while it runs."""
    rd = paths.runtime_dir()
    return bool(rd and (rd / "systemd" / "private").exists() and shutil.which("systemctl"))


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    def last_line(self) -> str:
        lines = (self.stderr or self.stdout).strip().splitlines()
        return lines[-1] if lines else ""


def run(argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S) -> CommandResult:
    """Run one systemd tool; a missing program or a hang is a UserError, not a traceback."""
    program = argv[0]
    if shutil.which(program) is None:
        raise UserError(
            f"{program} is not installed: this needs systemd",
            "on Raspberry Pi OS and Debian it is part of the base system",
        )
    try:
        out = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise UserError(
            f"{' '.join(argv)} did not finish within {timeout_s:.0f} s",
            "check `systemctl --user status`",
            exit_code=1,
        ) from exc
    except OSError as exc:
        raise UserError(f"cannot run {program}: {exc.strerror}", exit_code=1) from exc
    return CommandResult(out.returncode, out.stdout, out.stderr)


def systemctl(*args: str) -> CommandResult:
    return run(["systemctl", "--user", *args])


def checked_systemctl(*args: str) -> CommandResult:
    """`systemctl --user ARGS`, failing with its own last line as the reason."""
    out = systemctl(*args)
    if out.returncode != 0:
        raise UserError(
            f"systemctl --user {' '.join(args)} failed: {out.last_line() or out.returncode}",
            "see `systemctl --user status` and `journalctl --user -e`",
            exit_code=1,
        )
    return out


def show(unit: str) -> dict[str, str]:
    """The unit's properties from `systemctl --user show` (empty values for unknown ones)."""
    out = systemctl("show", unit, *(f"--property={p}" for p in UNIT_PROPERTIES))
    props = dict.fromkeys(UNIT_PROPERTIES, "")
    if out.returncode != 0:
        return props
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in props:
            props[key] = value
    return props


def linger(user: str) -> bool | None:
    """Whether the user's manager runs without a login (None: cannot tell)."""
    if shutil.which("loginctl") is None:
        return None
    try:
        out = run(["loginctl", "show-user", user, "--property=Linger", "--value"], 5.0)
    except UserError:
        return None
    value = out.stdout.strip()
    return {"yes": True, "no": False}.get(value)


def enable_linger(user: str) -> CommandResult:
    return run(["loginctl", "enable-linger", user])


def journal_lines(unit: str, count: int) -> list[str]:
    """The unit's last `count` journal lines (empty when the journal cannot be read)."""
    if shutil.which("journalctl") is None:
        return []
    try:
        out = run(
            [
                "journalctl",
                "--user",
                "--unit",
                unit,
                "--lines",
                str(count),
                "--no-pager",
                "--output",
                "short-iso",
            ],
            10.0,
        )
    except UserError:
        return []
    if out.returncode != 0:
        return []
    return [line for line in out.stdout.splitlines() if not line.startswith("-- ")]


def follow_journal(unit: str, count: int, follow: bool) -> int:
    """Show the unit's journal on this terminal (until Ctrl+C with `follow`)."""
    if shutil.which("journalctl") is None:
        raise UserError("journalctl is not installed: this needs systemd")
    argv = ["journalctl", "--user", "--unit", unit, "--lines", str(count)]
    if follow:
        argv.append("--follow")
    else:
        argv.append("--no-pager")
    try:
        return subprocess.run(argv, check=False).returncode
    except OSError as exc:
        raise UserError(f"cannot run journalctl: {exc.strerror}", exit_code=1) from exc
