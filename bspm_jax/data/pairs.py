"""A dataset from a CSV, TSV or Parquet file of interactions (any ids): split in one of four ways, or with a test file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError
from .checks import check_disjoint
from .dataset import Dataset
from .interactions import Interactions, apply_min_weight, encode_ids, read_interactions
from .sparse import binary_csr
from .tables import FileColumns, read_columns


def load_pairs(
    path: str | Path,
    *,
    test_path: str | Path | None = None,
    split: str = "random",
    holdout: float = 0.2,
    seed: int = 0,
    cut: Any = None,
    last_n: int = 1,
    validation: float | int | None = None,
    validation_seed: int = 0,
    **columns: Any,
) -> Dataset:
    """The interactions of ``path`` read by :func:`~bspm_jax.data.read_interactions` (``columns``: its keyword
    arguments, e.g. ``user_col``, ``item_col``, ``time_col``, ``sep``, ``name``), split by
    :meth:`~bspm_jax.data.Interactions.split` (``split``, ``holdout``, ``seed``, ``cut``, ``last_n``,
    ``validation``, ``validation_seed``), or with ``test_path``'s pairs (in the same columns) as test.

    Ids are mapped to sorted contiguous indices; ``stats`` records the header, the duplicates
    collapsed in each file and the split.
    """
    data = read_interactions(path, **columns)
    header = data.stats["header"]
    if test_path is None:
        dataset = data.split(split, holdout=holdout, seed=seed, cut=cut, last_n=last_n, validation=validation,
                             validation_seed=validation_seed)
        stats = {"header": header, "duplicates_train": data.stats["duplicates"], **_drop(dataset.stats)}
        return dataclasses.replace(dataset, stats=stats)
    if split != "random" or validation is not None:
        raise DataError("a test file gives the test split: split and validation do not apply (use data.validation "
                        "to carve validation from train)")
    roles = {r: columns.get(f"{r}_col", d) for r, d in (("user", 0), ("item", 1), ("time", None), ("weight", None))}
    roles = {r: c for r, c in roles.items() if c is not None}
    test_read = apply_min_weight(read_columns(Path(test_path), roles, columns.get("sep"), header),
                                 columns.get("min_weight"))
    users = _index(test_read, data, "user")
    items = _index(test_read, data, "item")
    shape = (data.n_users, data.n_items)
    test = binary_csr(users, items, shape)
    train = data.matrix()
    check_disjoint(train, test, Path(path).name, Path(test_path).name, data.user_ids, data.item_ids)
    stats = {"header": header, "duplicates_train": data.stats["duplicates"],
             "duplicates_test": len(users) - test.nnz, "split": "file"}
    return Dataset(train=train, test=test, name=data.name, user_ids=data.user_ids, item_ids=data.item_ids, stats=stats)


def _drop(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k not in ("rows", "duplicates", "header")}


def _index(read: FileColumns, data: Interactions, role: str) -> np.ndarray:
    """Indices of a test file's ids in the train file's id map; an id not in train raises DataError."""
    ids = data.user_ids if role == "user" else data.item_ids
    col = read.columns[role]
    if ids.dtype.kind == "U":  # train's ids are text: this file's are compared as text too, digits or not
        codes, uniques = encode_ids(read.as_text(False), pc.cast(col, pa.string()), role)
    else:
        codes, uniques = encode_ids(read, col, role)
    values = uniques[codes]
    if values.dtype.kind != ids.dtype.kind:  # train's ids are integers, and some of these are not
        bad = np.flatnonzero(~(np.char.isdigit(values) & (np.char.str_len(values) <= 18)))
        pos = np.zeros(len(values), dtype=np.int64)
    else:
        pos = np.minimum(np.searchsorted(ids, values), len(ids) - 1)
        bad = np.flatnonzero(ids[pos] != values)
    if len(bad):
        k = int(bad[0])
        raise DataError(f"{read.line(k)}: {role} {str(values[k])!r} is not in "
                        f"the train file ({len(bad)} test row{'s' if len(bad) > 1 else ''} with unknown {role}s)")
    return pos
