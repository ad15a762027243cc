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
