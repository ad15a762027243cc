"""Seeded per-user holdout split of an interaction matrix, and validation splits carved with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from ..errors import DataError
from .dataset import Dataset, cold_counts
from .sparse import binary_csr, canonical_csr


def holdout_split(
    matrix: sp.csr_matrix, fraction: float, seed: int
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split each user's items into (kept, held out); held out = round(fraction * degree).

    Users with >= 2 interactions hold out between 1 and degree - 1 items, chosen by
    ``np.random.default_rng(seed)`` (one uniform key per stored entry, in user order);
    users with fewer keep everything. Both outputs are binary float32 CSR of the input's
    shape and partition its nonzero entries.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"holdout fraction must be in (0, 1), got {fraction!r}")
    m = canonical_csr(matrix)
    degree = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), degree)
    n_out = np.clip(np.rint(fraction * degree), 1, np.maximum(degree - 1, 1)).astype(np.int64)
    n_out[degree < 2] = 0
    keys = np.random.default_rng(seed).random(m.nnz)
    order = np.lexsort((keys, rows))
    rank = np.empty(m.nnz, dtype=np.int64)
    rank[order] = np.arange(m.nnz) - m.indptr[rows[order]]
    out = rank < n_out[rows]
    keep = ~out
    return (
        binary_csr(rows[keep], m.indices[keep], m.shape),
        binary_csr(rows[out], m.indices[out], m.shape),
    )


def carve_validation(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """The dataset with its train split by :func:`holdout_split` into train (kept) and valid (held out).

    Test is unchanged; the cold counts of ``stats`` are recomputed against the new train,
    and ``stats`` records ``validation="carved"`` with the fraction and seed.
    """
    if dataset.valid is not None:
        raise DataError(f"{dataset.name} already has a validation split ({dataset.n_valid:,} interactions)")
    kept, held_out = holdout_split(dataset.train, fraction, seed)
    stats = {k: v for k, v in dataset.stats.items() if not k.startswith("cold_")}
    stats.update(validation="carved", validation_fraction=fraction, validation_seed=seed,
                 **cold_counts(kept, held_out, dataset.test))
    return dataclasses.replace(dataset, train=kept, valid=held_out, stats=stats)


def time_cut(times: np.ndarray, cut: float | int) -> np.ndarray:
    """Which interactions are at or after ``cut`` (the global time split's test)."""
    return np.asarray(times) >= cut


def time_share_cut(times: np.ndarray, share: float) -> float | int:
    """The time from which the latest ``share`` of ``times`` lies (at least one; ties at the cut go with it)."""
    ordered = np.sort(np.asarray(times))
    n_out = min(max(1, int(round(share * len(ordered)))), len(ordered))
    return ordered[len(ordered) - n_out]


def last_n_mask(users: np.ndarray, times: np.ndarray, items: np.ndarray, n: int) -> np.ndarray:
    """Each user's ``n`` latest interactions (ties in time: the larger item index is later); a user keeps one."""
    order = np.lexsort((items, times, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    degree = np.diff(np.r_[starts, len(order)])
    group = np.repeat(np.arange(len(starts)), degree)
    from_end = np.repeat(starts + degree, degree) - 1 - np.arange(len(order))
    held = from_end < np.minimum(n, degree - 1)[group]
    out = np.zeros(len(order), dtype=bool)
    out[order] = held
    return out
