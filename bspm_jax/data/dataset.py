"""The in-memory dataset: binary train, optional validation and test matrices, optional id maps."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp



def data_folder(path: str | Path, expected: str) -> Path:
    """``path`` as a folder, or a DataError saying it is missing or not a folder (and what it should hold)."""
    from ..errors import DataError

    folder = Path(path)
    if not folder.exists():
        raise DataError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise DataError(f"not a folder: {folder} (expected a folder with {expected})")
    return folder


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train/test (and optional validation) interactions as binary CSR matrices of shape (n_users, n_items).

    ``valid`` is the validation split (None when the data has none; see :func:`bspm_jax.data.carve_validation`).
    ``user_ids[u]`` / ``item_ids[i]`` give the original id of index ``u`` / ``i`` when
    the loader remapped ids (pairs files); they are ``None`` when ids were used as is.
    ``stats`` counts what loading cleaned up (e.g. ``duplicates_train``) and, for loaders of
    split files, the ids of valid/test that never occur in train (e.g. ``cold_items_test``).
    """

    train: sp.csr_matrix
    test: sp.csr_matrix
    name: str
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    valid: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        if self.train.shape != self.test.shape:
            raise ValueError(f"train shape {self.train.shape} != test shape {self.test.shape}")
        if self.valid is not None and self.valid.shape != self.train.shape:
            raise ValueError(f"train shape {self.train.shape} != valid shape {self.valid.shape}")

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.train.nnz)

    @property
    def n_test(self) -> int:
        return int(self.test.nnz)

    @property
    def n_valid(self) -> int:
        """Validation interactions (0 without a validation split)."""
        return 0 if self.valid is None else int(self.valid.nnz)

    @property
    def test_users(self) -> np.ndarray:
        """Indices of the users with test interactions (the users evaluated), ascending."""
        return np.flatnonzero(np.diff(self.test.indptr) > 0)

    @property
    def valid_users(self) -> np.ndarray:
        """Indices of the users with validation interactions, ascending (none without a split)."""
        if self.valid is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.diff(self.valid.indptr) > 0)

    def summary(self) -> dict[str, Any]:
        """The dataset block of the JSON output contract (``n_valid`` only with a validation split)."""
        out = {
            "name": self.name,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }
        if self.valid is not None:
            out["n_valid"] = self.n_valid
        return out

    def user_index(self, original_id: Any) -> int:
        """Index of a user given in the user's own id."""
        return int(self.user_indices([original_id])[0])

    def user_indices(self, original_ids: Sequence[Any]) -> np.ndarray:
        """Indices of users given in their own ids (DataError naming unknown ids)."""
        return _lookup(self.user_ids, original_ids, self.n_users, "user")

    def item_indices(self, original_ids: Sequence[Any]) -> np.ndarray:
        """Indices of items given in their own ids (DataError naming unknown ids)."""
        return _lookup(self.item_ids, original_ids, self.n_items, "item")

    def user_label(self, index: np.ndarray) -> np.ndarray:
        """Original ids of user indices (the indices themselves when ids were not remapped)."""
        return np.asarray(index) if self.user_ids is None else self.user_ids[np.asarray(index)]

    def item_label(self, index: np.ndarray) -> np.ndarray:
        """Original ids of item indices (the indices themselves when ids were not remapped)."""
        return np.asarray(index) if self.item_ids is None else self.item_ids[np.asarray(index)]


def cold_counts(train: sp.csr_matrix, valid: sp.csr_matrix | None, test: sp.csr_matrix) -> dict[str, int]:
    """Users and items of valid/test that have no train interaction: ``cold_{items,users}_{valid,test}``."""
    in_train = {"users": np.diff(train.indptr) > 0, "items": np.bincount(train.indices, minlength=train.shape[1]) > 0}
    out: dict[str, int] = {}
    for split, m in (("valid", valid), ("test", test)):
        if m is None:
            continue
        present = {"users": np.diff(m.indptr) > 0, "items": np.bincount(m.indices, minlength=m.shape[1]) > 0}
        for what in ("items", "users"):
            out[f"cold_{what}_{split}"] = int(np.count_nonzero(present[what] & ~in_train[what]))
    return out


def _lookup(ids: np.ndarray | None, originals: Sequence[Any], n: int, what: str) -> np.ndarray:
    """Indices of ``originals`` in ``ids`` (compared as text), or integer ids in 0..n-1."""
    from ..errors import DataError

    if ids is None:
        out = []
        for original in originals:
            text = str(original).strip()
            if not text.lstrip("-").isdigit():
                raise DataError(f"{what} id {original!r} is not an integer")
            if not 0 <= int(text) < n:
                raise DataError(f"{what} id {int(text)} is outside 0..{n - 1}")
            out.append(int(text))
        return np.asarray(out, dtype=np.int64)
    table = {str(v): i for i, v in enumerate(ids.tolist())}
    unknown = [o for o in originals if str(o).strip() not in table]
    if unknown:
        shown = ", ".join(repr(o) for o in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise DataError(f"unknown {what} id {shown} ({len(unknown)} of {len(originals)} not in the data)")
    return np.asarray([table[str(o).strip()] for o in originals], dtype=np.int64)
