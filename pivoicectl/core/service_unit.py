"""The systemd user unit that runs the assistant unattended, as text (pure).

Why each line is there:
- `Wants=`/`After=` the user's PipeWire, pipewire-pulse and WirePlumber: started with
  them at boot, stopped before them. A user unit cannot wait for the system's
  network-online.target; `run`'s reconnect backoff covers a network that comes late.
- `Type=notify` and `WatchdogSec=`: systemd counts the assistant as started only once
  `run` says READY (session up, audio flowing), and restarts it when the event loop
  stops pinging (wedged, not crashed).
- `Restart=on-failure` with a delay, but `RestartPreventExitStatus=2`: exit code 2 is a
  configuration or account problem (bad option, bad key, no quota) that a restart
  cannot fix; restarting it would only flood the journal.
- `StartLimitIntervalSec=0`: a Pi that boots without network or audio for a long while
  must keep trying, not give up after five attempts.
- `EnvironmentFile=`: the API key, when it came from the environment, lives in a
  mode-0600 file; unit files are world-readable and `systemctl show` prints
  `Environment=`, so the key is never written into the unit or its command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pivoicectl.errors import UserError

UNIT_NAME = "pivoicectl.service"
AUDIO_UNITS = ("pipewire.service", "pipewire-pulse.service", "wireplumber.service")
WATCHDOG_S = 30
"""Watchdog timeout: a loop that answers audio every 20 ms and pings every 15 s is far
from it; a wedged one is restarted within half a minute."""
RESTART_DELAY_S = 5
STOP_TIMEOUT_S = 15
CONFIG_EXIT_CODE = 2


@dataclass(frozen=True)
class UnitSpec:
    """What the unit runs: `command` is the absolute program and its fixed arguments
    (e.g. a venv's `pivoicectl`, or its python with `-m pivoicectl`)."""

    command: tuple[str, ...]
    run_args: tuple[str, ...] = ()
    environment_file: Path | None = None


def quote_arg(arg: str) -> str:
    """One `ExecStart=` word that systemd splits back into exactly `arg`.

    systemd expands `%` specifiers and `$VAR` in ExecStart and splits on whitespace with
    C-like quoting; doubling `%` and `$` and quoting with `\\"` escapes keeps every
    argument literal. Control characters (a newline would end the line) are refused.
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in arg):
        raise UserError(
            f"the argument {arg!r} holds a control character",
            "give options without newlines or tabs",
        )
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and not any(c in escaped for c in " \"'\\;"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(spec: UnitSpec) -> str:
    """The unit file text for `spec`."""
    if not spec.command or not spec.command[0].startswith("/"):
        raise ValueError(f"the unit's program must be an absolute path, got {spec.command!r}")
    exec_start = " ".join(quote_arg(a) for a in (*spec.command, "run", *spec.run_args))
    audio = " ".join(AUDIO_UNITS)
    lines = [
        "# Written by `pivoicectl service install`; remove with `pivoicectl service remove`.",
        "[Unit]",
        "Description=pivoicectl voice assistant",
        f"Wants={audio}",
        f"After={audio}",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
    ]
    if spec.environment_file is not None:
        # A path, not a command line: no quoting, only specifiers escaped.
        lines.append("EnvironmentFile=-" + str(spec.environment_file).replace("%", "%%"))
    lines += [
        "Environment=PYTHONUNBUFFERED=1",
        "WorkingDirectory=%h",
        "Restart=on-failure",
        f"RestartSec={RESTART_DELAY_S}",
        f"RestartPreventExitStatus={CONFIG_EXIT_CODE}",
        f"WatchdogSec={WATCHDOG_S}",
        "TimeoutStartSec=infinity",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        "SyslogIdentifier=pivoicectl",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)
