"""The record of what the first `pivoicectl setup` found, so `setup --undo` can put it back.

Written before setup changes anything (atomically, beside the user's config), kept
through later setups (which only note what they wrote), and read by undo.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pivoicectl.errors import UserError
from pivoicectl.system import fileops, paths, wireplumber_state
from pivoicectl.system.audio_server import ServerInfo


def create(
    conf_path: Path, old_bytes: bytes | None, info: ServerInfo, saved: dict[str, str], new: bytes
) -> bool:
    """Record the state before the first setup; True if this is that first setup.

    A later setup only notes what it writes now: the record keeps what was there
    before the first one (file, defaults, WirePlumber's saved defaults), so a second
    setup cannot make `--undo` put back source_ec.
    """
    if paths.setup_undo_file().exists():
        update(written_sha256=fileops.sha256(new))
        return False
    record = {
        "version": 2,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config_path": str(conf_path),
        "had_file": old_bytes is not None,
        "old_sha256": fileops.sha256(old_bytes) if old_bytes is not None else None,
        "written_sha256": fileops.sha256(new),
        "backup_path": None,
        "created_dirs": [str(p) for p in fileops.missing_parents(conf_path)],
        "previous_default_source": info.default_source,
        "previous_default_sink": info.default_sink,
        "previous_saved_defaults": wireplumber_state.configured(saved),
    }
    fileops.atomic_write(paths.setup_undo_file(), json.dumps(record, indent=2).encode())
    return True


def update(**changes: Any) -> None:
    record = load()
    record.update(changes)
    fileops.atomic_write(paths.setup_undo_file(), json.dumps(record, indent=2).encode())


def load() -> dict[str, Any]:
    try:
        return json.loads(paths.setup_undo_file().read_text())
    except FileNotFoundError as e:
        raise UserError(
            "there is no setup to undo", f"{paths.setup_undo_file()} does not exist"
        ) from e
    except OSError as e:
        raise fileops.file_error(paths.setup_undo_file(), "read", e) from e
    except ValueError as e:
        raise UserError(
            f"the undo record {paths.setup_undo_file()} is damaged",
            "restore the file from its backup by hand",
        ) from e
