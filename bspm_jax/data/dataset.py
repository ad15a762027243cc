"""The in-memory dataset: a binary train matrix, a test matrix and optional id maps."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.sparse as sp


def binary_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary float32 CSR with sorted, deduplicated indices from (row, col) pairs."""
    m = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (np.asarray(rows), np.asarray(cols))),
        shape=shape,
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train/test interactions as binary CSR matrices of shape (n_users, n_items).

    ``user_ids[u]`` / ``item_ids[i]`` give the original id of index ``u`` / ``i`` when
    the loader remapped ids (pairs files); they are ``None`` when ids were used as is.
    ``stats`` counts what loading cleaned up (e.g. ``duplicates_train``).
    """

    train: sp.csr_matrix
    test: sp.csr_matrix
    name: str
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.train.shape != self.test.shape:
            raise ValueError(f"train shape {self.train.shape} != test shape {self.test.shape}")

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

    def summary(self) -> dict[str, Any]:
        """The dataset block of the JSON output contract."""
        return {
            "name": self.name,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }

    def user_index(self, original_id: Any) -> int:
        """Index of a user given in the user's own id."""
        return _lookup(self.user_ids, original_id, self.n_users, "user")

    def item_label(self, index: np.ndarray) -> np.ndarray:
        """Original ids of item indices (the indices themselves when ids were not remapped)."""
        return np.asarray(index) if self.item_ids is None else self.item_ids[np.asarray(index)]


def _lookup(ids: np.ndarray | None, original: Any, n: int, what: str) -> int:
    from ..errors import DataError

    if ids is None:
        try:
            idx = int(original)
        except (TypeError, ValueError):
            raise DataError(f"{what} id {original!r} is not an integer") from None
        if not 0 <= idx < n:
            raise DataError(f"{what} id {idx} is outside 0..{n - 1}")
        return idx
    matches = np.flatnonzero(ids.astype(str) == str(original))
    if len(matches) == 0:
        raise DataError(f"unknown {what} id {original!r}")
    return int(matches[0])
