"""Loader for DiffRec's NumPy format: ``train_list.npy``, ``valid_list.npy``, ``test_list.npy``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import DataError
from .checks import clip
from .dataset import Dataset, data_folder
from .lightgcn import ID_LIMIT, split_dataset

FILES = {"train": "train_list.npy", "valid": "valid_list.npy", "test": "test_list.npy"}
_MAGIC = b"\x93NUMPY"


def load_diffrec(path: str | Path, name: str | None = None) -> Dataset:
    """Load a DiffRec folder: (n, 2) integer arrays of (user, item) pairs; valid_list.npy is optional."""
    folder = data_folder(path, "train_list.npy and test_list.npy")
    pairs = {}
    for split, fname in FILES.items():
        file = folder / fname
        if split == "valid" and not file.exists():
            continue
        if not file.is_file():
            raise DataError(f"missing {fname} in {folder}: {file} does not exist")
        array = read_pairs_npy(file)
        pairs[split] = (array[:, 0], array[:, 1])
    return split_dataset(pairs, name or folder.resolve().name, {s: FILES[s] for s in pairs}, "DiffRec format")


def read_pairs_npy(file: Path) -> np.ndarray:
    """The (n, 2) int64 (user, item) pairs of one .npy file; DataError naming the file and the problem."""
    with file.open("rb") as f:
        if f.read(len(_MAGIC)) != _MAGIC:
            raise DataError(f"{file.name} is not a .npy file (it does not start with the NumPy magic bytes): {file}")
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise DataError(f"{file.name}: unsupported .npy format version {version[0]}.{version[1]}: {file}")
        except DataError:
            raise
        except Exception as exc:  # numpy's header parser raises several kinds for corrupt headers
            raise DataError(f"{file.name}: corrupt or truncated .npy header ({clip(str(exc), 120)}): {file}") from None
        offset = f.tell()
    if any(dim < 0 for dim in shape):
        raise DataError(f"{file.name}: corrupt .npy header (negative dimension in shape {shape}): {file}")
    if dtype.hasobject:
        raise DataError(f"{file.name} holds an object array (pickled Python objects), which is not loaded: {file}")
    if dtype.kind not in "iu":
        raise DataError(f"{file.name} has dtype {dtype}; user and item ids must be integers: {file}")
    if len(shape) != 2 or shape[1] != 2:
        raise DataError(f"{file.name} holds an array of shape {shape}; expected shape (n, 2) "
                        f"(columns user, item): {file}")
    expected = math.prod(shape) * dtype.itemsize
    if file.stat().st_size - offset < expected:
        raise DataError(f"{file.name} is truncated: its header announces {shape[0]:,} pairs ({expected:,} bytes) "
                        f"but {max(file.stat().st_size - offset, 0):,} bytes follow: {file}")
    try:
        array = np.load(file, allow_pickle=False)
    except Exception as exc:  # pragma: no cover - the checks above leave nothing for numpy to refuse
        raise DataError(f"{file.name}: unreadable .npy file ({clip(str(exc), 120)}): {file}") from None
    if array.shape[0] == 0:
        raise DataError(f"{file.name} has no interactions: {file}")
    for col, what in ((0, "user"), (1, "item")):
        values = array[:, col]
        bad = np.flatnonzero(values < 0) if dtype.kind == "i" else np.zeros(0, dtype=np.int64)
        if bad.size:
            raise DataError(f"{file.name} row {bad[0]}: negative {what} id {values[bad[0]]} "
                            f"({bad.size:,} negative {what} ids): {file}")
        bad = np.flatnonzero(values >= ID_LIMIT)
        if bad.size:
            raise DataError(f"{file.name} row {bad[0]}: {what} id {values[bad[0]]} is too large "
                            f"(ids must be < {ID_LIMIT}): {file}")
    return array.astype(np.int64)
