"""Atomic output files: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import ConfigError


def check_writable(path: str | Path) -> Path:
    """Fail early (before any long computation) if ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"cannot write {path}: folder {parent} does not exist")
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a folder")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write {path}: folder {parent} is not writable")
    return path


@contextlib.contextmanager
def atomic_files(*paths: str | Path) -> Iterator[list[BinaryIO]]:
    """Binary files to write that replace ``paths`` together when the block ends without error.

    Each is a temporary file beside its target; on success it gets the replaced file's mode
    (a new file: rw-r--r-- less the umask), is synced and renamed over the target. On any
    error (or interrupt) the temporary files are removed and the targets are untouched.
    """
    targets = [check_writable(p) for p in paths]
    temps: list[tuple[str, BinaryIO]] = []
    try:
        for path in targets:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append((tmp, os.fdopen(fd, "wb")))
        yield [f for _, f in temps]
        for (tmp, f), path in zip(temps, targets):
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        for (tmp, _), path in zip(temps, targets):
            os.replace(tmp, path)
    finally:
        for tmp, f in temps:
            f.close()
            Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    with atomic_files(path) as (f,):
        f.write(text.encode("utf-8"))
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def array_sha256(arr: np.ndarray) -> str:
    """SHA-256 of an array's bytes in C order (the checksum of saved models and cached spectra)."""
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
