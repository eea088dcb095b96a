"""`pivoicectl setup --undo`: put back the config file, the default nodes and
WirePlumber's saved defaults that the first setup found.

Kept apart from setup itself so each can be read on its own; both share setup's options,
result and its restart-and-wait steps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pivoicectl.commands.setup import SetupOptions, SetupResult, restart_and_report, wait_ready
from pivoicectl.core.echo_config import SOURCE_NAME
from pivoicectl.system import (
    fileops,
    paths,
    pw_metadata,
    restart,
    undo_record,
    versions,
    wireplumber_state,
)
from pivoicectl.system.audio_server import AudioServer


def _describe_stack(names: list[str]) -> str:
    return ", then ".join(names) if names else "nothing"


def _restore_saved(saved_before: dict[str, list[str]], result: SetupResult) -> None:
    """Put WirePlumber's saved defaults back as they were before the first setup.

    Deleting a configured key makes WirePlumber 0.5 forget its whole list of earlier
    choices; writing the old names back oldest first rebuilds that list in order. This
    goes through the metadata, not the Pulse protocol, because earlier names may
    belong to devices that are unplugged now.
    """
    whole = wireplumber_state.rebuilds_lists(versions.installed_wireplumber())
    want = wireplumber_state.restorable(saved_before, whole)
    now = wireplumber_state.restorable(
        wireplumber_state.configured(wireplumber_state.persisted_defaults()), whole
    )
    for key, names in want.items():
        if now.get(key) == names:
            continue
        if whole or not names:
            pw_metadata.delete("default", key)
        for name in reversed(names):
            pw_metadata.write("default", key, json.dumps({"name": name}), "Spa:String:JSON")
        kind = key.rsplit(".", 1)[-1]
        result.actions.append(
            f"put back WirePlumber's saved default {kind}: {_describe_stack(names)}"
        )
    result.persisted = wireplumber_state.wait_configured(want, whole)
    if not result.persisted:
        result.notes.append(
            f"WirePlumber did not save the previous defaults in "
            f"{paths.wireplumber_default_nodes()}: is WirePlumber running?"
        )
    elif not whole:
        result.notes.append(
            f"WirePlumber 0.4 keeps {SOURCE_NAME} in its list of earlier choices (it never "
            "forgets one); it would only pick it again if it came back"
        )


def _restore_defaults_v1(record: dict[str, Any], result: SetupResult) -> None:
    """Undo records written before WirePlumber's saved state was kept: set the
    previous default source and sink again."""
    prev_source = record.get("previous_default_source") or ""
    prev_sink = record.get("previous_default_sink") or ""
    saved = wireplumber_state.persisted_defaults()
    with AudioServer.connect() as server:
        now = server.info()
        for kind, prev, current, key, set_default in (
            (
                "source",
                prev_source,
                now.default_source,
                wireplumber_state.SOURCE_KEY,
                server.set_default_source,
            ),
            (
                "sink",
                prev_sink,
                now.default_sink,
                wireplumber_state.SINK_KEY,
                server.set_default_sink,
            ),
        ):
            # Current and saved: WirePlumber may show the old default (source_ec is
            # gone) while it still has source_ec saved for the next boot.
            if not prev or (current == prev and saved.get(key) in (None, prev)):
                continue
            if server.find(prev, kind):
                set_default(prev)
                result.actions.append(f"set the default {kind} back to {prev}")
            else:
                result.notes.append(f"the previous default {kind} {prev} is gone")
    if prev_source:
        result.persisted = wireplumber_state.wait_persisted(
            wireplumber_state.SOURCE_KEY, prev_source
        )


def undo(opts: SetupOptions, progress: bool = True) -> SetupResult:
    record = undo_record.load()
    conf_path = Path(record["config_path"])
    current = fileops.read_or_none(conf_path)
    result = SetupResult(
        operation="undo", changed=False, dry_run=opts.dry_run, config_path=str(conf_path)
    )
    saved_before: dict[str, list[str]] | None = record.get("previous_saved_defaults")
    backup_path = record.get("backup_path")
    user_edited = current is not None and fileops.sha256(current) != record["written_sha256"]

    steps: list[str] = []
    if backup_path:
        steps.append(f"restore {conf_path} from {backup_path}")
    elif current is not None:
        steps.append(f"remove {conf_path}")
    for d in reversed(record.get("created_dirs", [])):
        steps.append(f"remove the empty directory {d}")
    steps.append(restart.plan().describe() if opts.restart else "skip the restart (--no-restart)")
    if saved_before is not None:
        for key, names in saved_before.items():
            kind = key.rsplit(".", 1)[-1]
            steps.append(f"put back WirePlumber's saved default {kind}: {_describe_stack(names)}")
    else:
        for kind in ("source", "sink"):
            if record.get(f"previous_default_{kind}"):
                steps.append(f"set the default {kind} back to {record[f'previous_default_{kind}']}")
    if opts.dry_run:
        result.actions = steps
        result.changed = True
        return result

    if user_edited:
        saved = fileops.backup(conf_path, paths.backup_dir())
        result.notes.append(f"{conf_path} was edited after setup; kept a copy at {saved}")
    with fileops.boundary(conf_path, "restore" if backup_path else "remove"):
        if backup_path:
            os.replace(backup_path, conf_path)
        elif current is not None:
            conf_path.unlink()
    if backup_path:
        result.actions.append(f"restored {conf_path} from {backup_path}")
    elif current is not None:
        result.actions.append(f"removed {conf_path}")
    for d in reversed(record.get("created_dirs", [])):
        try:
            Path(d).rmdir()
            result.actions.append(f"removed the empty directory {d}")
        except OSError:
            pass  # not empty: something else lives there now

    restarted = restart_and_report(result, opts, progress)
    wait_ready([], opts, restarted, progress)
    if saved_before is not None:
        _restore_saved(saved_before, result)
    else:
        _restore_defaults_v1(record, result)
    with AudioServer.connect() as server:
        final = server.info()
    result.default_source = final.default_source
    result.default_sink = final.default_sink
    with fileops.boundary(paths.setup_undo_file(), "remove"):
        paths.setup_undo_file().unlink()
    result.changed = True
    return result
