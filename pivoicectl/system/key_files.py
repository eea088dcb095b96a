"""Where the OpenAI API key may be kept on disk, and whether other users can read it.

The key lives in the `[run]` table of config.toml or, for the boot service, in the
environment file `service install` writes; either must be mode 0600, because on a shared
Pi any other account (or a web server's) could otherwise spend it.
"""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

from pivoicectl.system import paths

KEY_VARIABLE = "OPENAI_API_KEY"


def service_environment_file() -> Path:
    """Holds the API key for the boot service when it came from the environment."""
    return paths.config_home() / "pivoicectl" / "service.env"


def config_has_key() -> bool:
    """Whether `api_key` is set in the [run] table of config.toml (unreadable: no)."""
    try:
        data = tomllib.loads(paths.user_config_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    run = data.get("run")
    return isinstance(run, dict) and bool(str(run.get("api_key", "")).strip())


def files_holding_key() -> list[Path]:
    found = []
    if config_has_key():
        found.append(paths.user_config_file())
    env_file = service_environment_file()
    if env_file.exists():
        found.append(env_file)
    return found


def readable_by_others(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH))
