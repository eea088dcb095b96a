"""Fakes of systemctl, loginctl and journalctl, at the command boundary only.

systemd cannot run on the test machines (PID 1 is not systemd), so these small programs
stand in for the three tools: they log their arguments and keep the unit's state in a
JSON file, as far as `pivoicectl service` and `doctor` read it. Everything else (the
unit file, the key file, `systemd-analyze verify`) is real.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

_SYSTEMCTL = r"""
import json, sys
state_file, log_file = sys.argv[1], sys.argv[2]
args = sys.argv[3:]
with open(log_file, "a") as f:
    f.write(" ".join(args) + "\n")
state = json.load(open(state_file))
assert args[0] == "--user", args
args = args[1:]
if state.get("fail") and args[0] in state["fail"]:
    print(f"Failed to {args[0]} unit: Access denied", file=sys.stderr)
    sys.exit(1)
if args[0] == "show":
    props = state["props"]
    for a in args[2:]:
        key = a.split("=", 1)[1]
        print(f"{key}={props.get(key, '')}")
elif args[0] == "enable":
    state["props"]["UnitFileState"] = "enabled"
elif args[0] == "restart":
    state["props"].update(state.get("after_start", {"ActiveState": "active", "SubState": "running"}))
elif args[0] == "disable":
    state["props"]["UnitFileState"] = "disabled"
    state["props"]["ActiveState"] = "inactive"
json.dump(state, open(state_file, "w"))
"""

_LOGINCTL = r"""
import json, sys
state_file, log_file = sys.argv[1], sys.argv[2]
args = sys.argv[3:]
with open(log_file, "a") as f:
    f.write("loginctl " + " ".join(args) + "\n")
state = json.load(open(state_file))
if args[0] == "show-user":
    print("yes" if state["linger"] else "no")
elif args[0] == "enable-linger":
    if not state.get("linger_allowed", True):
        print("Could not enable linger: Access denied", file=sys.stderr)
        sys.exit(1)
    state["linger"] = True
json.dump(state, open(state_file, "w"))
"""

_JOURNALCTL = r"""
import json, sys
state_file, log_file = sys.argv[1], sys.argv[2]
with open(log_file, "a") as f:
    f.write("journalctl " + " ".join(sys.argv[3:]) + "\n")
for line in json.load(open(state_file)).get("journal", []):
    print(line)
"""


@dataclass
class FakeSystemd:
    root: Path
    env: dict[str, str]

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def log_file(self) -> Path:
        return self.root / "calls.log"

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def set(self, **changes: object) -> None:
        state = self.state()
        state.update(changes)
        self.state_file.write_text(json.dumps(state))

    def props(self, **changes: str) -> None:
        state = self.state()
        state["props"].update(changes)
        self.state_file.write_text(json.dumps(state))

    def calls(self) -> list[str]:
        if not self.log_file.exists():
            return []
        return self.log_file.read_text().splitlines()

    def changing_calls(self) -> list[str]:
        """Calls other than the read-only ones (show, show-user, journalctl)."""
        return [
            c
            for c in self.calls()
            if not c.startswith(("--user show", "loginctl show")) and not c.startswith("journalctl")
        ]


def install_fakes(root: Path, base_env: dict[str, str], linger: bool = True) -> FakeSystemd:
    """Fake tools in root/bin, first on PATH; a user manager 'running' in root/run."""
    bindir = root / "bin"
    bindir.mkdir(parents=True)
    run = root / "run"
    (run / "systemd").mkdir(parents=True)
    run.chmod(0o700)
    (run / "systemd" / "private").touch()
    fake = FakeSystemd(root, {})
    fake.state_file.write_text(
        json.dumps(
            {
                "props": {"LoadState": "not-found", "ActiveState": "inactive"},
                "linger": linger,
                "journal": [],
            }
        )
    )
    for name, body in (
        ("systemctl", _SYSTEMCTL),
        ("loginctl", _LOGINCTL),
        ("journalctl", _JOURNALCTL),
    ):
        script = bindir / f"{name}.py"
        script.write_text(body)
        wrapper = bindir / name
        wrapper.write_text(
            f'#!/bin/sh\nexec {sys.executable} {script} {fake.state_file} {fake.log_file} "$@"\n'
        )
        wrapper.chmod(0o755)
    fake.env = {
        **base_env,
        "PATH": f"{bindir}:{base_env.get('PATH', os.defpath)}",
        "XDG_RUNTIME_DIR": str(run),
        "XDG_CONFIG_HOME": str(root / "config"),
        "XDG_STATE_HOME": str(root / "state"),
        "HOME": str(root / "home"),
        "USER": "pi",
    }
    return fake
