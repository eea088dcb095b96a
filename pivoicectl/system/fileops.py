"""Writing a user's files without ever losing one: atomic replace and dated backups.

Every OSError here comes out as one UserError that names the path and what to do (a
file where a directory belongs, a directory without write permission), never as a
traceback; nothing is left half-written when it happens.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pivoicectl.errors import UserError


def file_error(path: Path, action: str, exc: OSError) -> UserError:
    """The one-line error for an OSError while doing `action` ("read", "write", ...) on `path`."""
    why = exc.strerror or type(exc).__name__
    if isinstance(exc, NotADirectoryError):
        hint = f"a file stands where a directory of {path} belongs: move that file away"
    elif isinstance(exc, IsADirectoryError):
        hint = f"{path} is a directory: move it away"
    elif isinstance(exc, PermissionError):
        hint = f"check the owner and permissions of {path.parent}"
    else:
        hint = f"check {path.parent}"
    return UserError(f"cannot {action} {path}: {why}", hint=hint)


@contextmanager
def boundary(path: Path, action: str) -> Iterator[None]:
    """Turn an OSError inside the block into `file_error(path, action)`."""
    try:
        yield
    except OSError as exc:
        raise file_error(path, action, exc) from exc


def read_or_none(path: Path) -> bytes | None:
    """The file's bytes, or None if it does not exist; any other problem is a UserError."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise file_error(path, "read", exc) from exc


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temp file in the same directory and rename: never a half-written file."""
    with boundary(path, "write"):
        _atomic_write(path, data, mode)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
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
    with boundary(backup_dir, "back up into"):
        return _backup(path, backup_dir)


def _backup(path: Path, backup_dir: Path) -> Path:
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
