"""Spectra on disk, so that a second run, a tune or a plot on the same data skips the SVD.

One ``.npz`` file per (train digest, rank, solver, tolerance) in a folder (``$BSPM_CACHE_DIR``,
else ``spectra/`` under the user's cache folder), holding the singular values, the right
vectors, the degrees and a JSON header with the key and each array's SHA-256. Entries are
written to a temporary file beside their target and renamed into place, so concurrent
writers of one key leave one whole entry and readers never see a partial file. An entry
that does not match its key or checksums (cut, flipped, foreign) is refused: read as a
miss, recomputed and replaced. The folder is kept under ``max_bytes`` by removing the
least recently used entries (a hit refreshes an entry's time).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..runtime.io import array_sha256, atomic_files
from .decomposition import Spectrum

FORMAT = "bspm_jax-spectrum"
FORMAT_VERSION = 1
CACHE_ENV = "BSPM_CACHE_DIR"
DEFAULT_MAX_BYTES = 4 * 2**30
ARRAYS = ("values", "vectors", "user_degree", "item_degree")


def default_spectrum_dir() -> Path:
    """$BSPM_CACHE_DIR, else $XDG_CACHE_HOME/bspm_jax/spectra, else ~/.cache/bspm_jax/spectra."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ["XDG_CACHE_HOME"]).expanduser() if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "bspm_jax" / "spectra"


class SpectrumStore:
    """A folder of spectra keyed by (train digest, rank, solver, tolerance), at most ``max_bytes``."""

    def __init__(self, folder: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = Path(folder) if folder is not None else default_spectrum_dir()
        self.max_bytes = int(max_bytes)

    @staticmethod
    def key(digest: str, rank: int, solver: str, tol: float) -> dict[str, object]:
        return {"digest": digest, "rank": int(rank), "solver": solver, "tol": float(tol)}

    def path(self, key: dict[str, object]) -> Path:
        name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        return self.folder / f"{name}.npz"

    def load(self, key: dict[str, object]) -> Spectrum | None:
        """The stored spectrum of ``key``, or None (absent, unreadable, or not what its header says)."""
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as npz:
                header = json.loads(str(npz["header"]))
                arrays = {name: np.array(npz[name]) for name in ARRAYS}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not (isinstance(header, dict) and header.get("format") == FORMAT and header.get("version") == FORMAT_VERSION
                and header.get("key") == key and isinstance(header.get("sha256"), dict)
                and all(header["sha256"].get(n) == array_sha256(a) for n, a in arrays.items())):
            return None
        values, vectors = arrays["values"], arrays["vectors"]
        if not (values.ndim == 1 and vectors.ndim == 2 and vectors.shape[0] == values.shape[0] == key["rank"]):
            return None
        try:
            os.utime(path)  # most recently used
        except OSError:
            pass
        return Spectrum(values, vectors, arrays["user_degree"], arrays["item_degree"])

    def save(self, key: dict[str, object], spectrum: Spectrum) -> Path | None:
        """Store ``spectrum`` under ``key`` (atomically), then trim the folder; None when it cannot be stored."""
        arrays = {"values": spectrum.values, "vectors": spectrum.vectors, "user_degree": spectrum.user_degree,
                  "item_degree": spectrum.item_degree}
        size = sum(np.asarray(a).nbytes for a in arrays.values())
        if size > self.max_bytes:
            return None
        header = {"format": FORMAT, "version": FORMAT_VERSION, "key": key,
                  "sha256": {n: array_sha256(np.asarray(a)) for n, a in arrays.items()}}
        path = self.path(key)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_files(path) as (f,):
                np.savez(f, header=np.array(json.dumps(header)), **arrays)
        except OSError:
            return None  # a cache that cannot be written is no cache: the run goes on
        self.trim(keep=path)
        return path

    def entries(self) -> list[Path]:
        return sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []

    def trim(self, keep: Path | None = None) -> None:
        """Remove the least recently used entries until the folder holds at most ``max_bytes``."""
        stats = []
        for p in self.entries():
            try:
                stats.append((p.stat().st_mtime, p.stat().st_size, p))
            except OSError:
                continue
        total = sum(size for _, size, _ in stats)
        for _, size, p in sorted(stats, key=lambda t: t[0]):
            if total <= self.max_bytes:
                break
            if p == keep:
                continue
            try:
                p.unlink()
                total -= size
            except OSError:
                continue
