"""Writing a user's files without ever losing one: atomic replace and dated backups."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temp file in the same directory and rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def backup(path: Path, backup_dir: Path) -> Path:
    """Copy `path` (with its metadata) to a new, dated file in `backup_dir`."""
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = backup_dir / f"{path.name}.{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = backup_dir / f"{path.name}.{stamp}.{n}"
    shutil.copy2(path, target)
    return target


def missing_parents(path: Path) -> list[Path]:
    """Directories above `path` that do not exist yet, outermost first."""
    out = []
    p = path.parent
    while not p.exists():
        out.append(p)
        p = p.parent
    return list(reversed(out))
