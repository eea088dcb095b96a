"""How to restart PipeWire here: the systemd user manager, a configured command, or by hand.

systemd is a boundary the tests cannot run, so the choice is a small pure function of
the environment, and the one place that executes it is `execute`.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from pivoicectl.errors import UserError
from pivoicectl.system import systemd

SYSTEMD_COMMAND = "systemctl --user restart pipewire pipewire-pulse wireplumber"
ENV_VAR = "PIVOICECTL_RESTART_CMD"


@dataclass(frozen=True)
class RestartPlan:
    method: str  # "systemd", "command" or "manual"
    command: str

    def describe(self) -> str:
        if self.method == "manual":
            return f"restart PipeWire yourself: {self.command}"
        return f"restart PipeWire: {self.command}"


def plan() -> RestartPlan:
    if systemd.manager_running():
        return RestartPlan("systemd", SYSTEMD_COMMAND)
    custom = os.environ.get(ENV_VAR, "").strip()
    if custom:
        return RestartPlan("command", custom)
    return RestartPlan("manual", SYSTEMD_COMMAND)


def execute(p: RestartPlan, timeout_s: float = 60.0) -> None:
    if p.method == "manual":
        raise UserError("cannot restart PipeWire from here", p.describe(), exit_code=1)
    try:
        out = subprocess.run(
            p.command, shell=True, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise UserError(
            f"restarting PipeWire took longer than {timeout_s:.0f} s: {p.command}",
            "check `systemctl --user status pipewire`",
            exit_code=1,
        ) from e
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip().splitlines()
        raise UserError(
            f"restarting PipeWire failed (exit {out.returncode}): "
            f"{detail[-1] if detail else p.command}",
            f"run it by hand to see why: {p.command}",
            exit_code=1,
        )
