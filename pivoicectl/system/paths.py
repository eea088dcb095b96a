"""Every file location pivoicectl uses, derived from the standard environment.

Commands must talk to whatever audio server and config tree the environment points at
(a user's session, or a simulated room exported by `pivoicectl sim up`), so no path is
hard-coded anywhere else: all of them come from here.
"""

from __future__ import annotations

import os
from pathlib import Path

ECHO_CANCEL_CONF_NAME = "60-echo-cancel.conf"


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var, "")
    # The XDG spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / default


def config_home() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config")


def state_home() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state")


def pipewire_conf_dir() -> Path:
    """Where PipeWire reads user drop-in fragments for the main daemon."""
    return config_home() / "pipewire" / "pipewire.conf.d"


def echo_cancel_conf() -> Path:
    return pipewire_conf_dir() / ECHO_CANCEL_CONF_NAME


def pivoicectl_state_dir() -> Path:
    return state_home() / "pivoicectl"


def setup_undo_file() -> Path:
    """What `setup` changed, so `setup --undo` can put it back."""
    return pivoicectl_state_dir() / "setup-undo.json"


def last_measure_file() -> Path:
    """The last `measure` result, which doctor (echo guard advice) and run read back."""
    return pivoicectl_state_dir() / "last-measure.json"


def backup_dir() -> Path:
    return pivoicectl_state_dir() / "backups"


def wireplumber_default_nodes() -> Path:
    """WirePlumber 0.4 and 0.5 both persist the configured defaults here."""
    return state_home() / "wireplumber" / "default-nodes"


def runtime_dir() -> Path | None:
    value = os.environ.get("XDG_RUNTIME_DIR", "")
    return Path(value) if value else None


def pipewire_socket() -> Path | None:
    """The main PipeWire socket (PIPEWIRE_RUNTIME_DIR wins over XDG_RUNTIME_DIR)."""
    base = os.environ.get("PIPEWIRE_RUNTIME_DIR") or os.environ.get("XDG_RUNTIME_DIR")
    if not base:
        return None
    name = os.environ.get("PIPEWIRE_REMOTE", "pipewire-0")
    return Path(name) if os.path.isabs(name) else Path(base) / name


def pulse_socket() -> Path | None:
    """The pipewire-pulse socket libpulse will use, when it is a local unix socket."""
    server = os.environ.get("PULSE_SERVER", "")
    if server:
        path = server.removeprefix("unix:")
        return Path(path) if os.path.isabs(path) else None
    base = os.environ.get("PULSE_RUNTIME_PATH")
    if base:
        return Path(base) / "native"
    rd = runtime_dir()
    return rd / "pulse" / "native" if rd else None


def user_config_file() -> Path:
    """pivoicectl's own settings (TOML)."""
    return config_home() / "pivoicectl" / "config.toml"
