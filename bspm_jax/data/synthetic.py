"""A seeded synthetic interaction matrix with power-law (Zipf-like) user and item degrees."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError
from .dataset import Dataset
from .sparse import binary_csr
from .split import holdout_split


def power_law_interactions(
    n_users: int, n_items: int, n_interactions: int, user_exponent: float = 0.5, item_exponent: float = 0.8,
    seed: int = 0,
) -> sp.csr_matrix:
    """Binary (n_users, n_items) CSR with exactly ``n_interactions`` distinct pairs.

    Users and items are drawn with probabilities proportional to ``(rank + 1)^-exponent`` (their
    own exponents; ranks shuffled by the seed), so degrees follow Zipf-like laws; every user
    gets at least two interactions (one for train and one for a holdout test split).
    """
    if min(n_users, n_items) < 2 or not 2 * n_users <= n_interactions <= 0.5 * n_users * n_items:
        raise ConfigError(
            f"need >= 2 users and items and 2 * n_users <= n_interactions <= half the matrix, got "
            f"{n_users} x {n_items} with {n_interactions}"
        )
    rng = np.random.default_rng(seed)

    def weights(n: int, exponent: float) -> np.ndarray:
        w = (np.arange(1, n + 1, dtype=np.float64)) ** -exponent
        return rng.permutation(w / w.sum())

    pu, pi = weights(n_users, user_exponent), weights(n_items, item_exponent)
    first, second = rng.choice(n_items, n_users, p=pi), rng.choice(n_items, n_users, p=pi)
    second = np.where(second == first, (first + 1) % n_items, second)  # two distinct items per user
    users = np.arange(n_users, dtype=np.int64) * n_items
    keys = np.union1d(users + first, users + second)
    while len(keys) < n_interactions:
        need = n_interactions - len(keys)
        draw = int(need * 1.2) + 1000
        new = rng.choice(n_users, draw, p=pu).astype(np.int64) * n_items + rng.choice(n_items, draw, p=pi)
        new = np.setdiff1d(np.unique(new), keys, assume_unique=True)
        keys = np.union1d(keys, rng.permutation(new)[:need])
    users, items = np.divmod(keys[:n_interactions], n_items)
    return binary_csr(users, items, (n_users, n_items))


def synthetic_dataset(
    n_users: int, n_items: int, n_interactions: int, seed: int = 0, test: float = 0.2
) -> Dataset:
    """:func:`power_law_interactions` split per user into train and test (seeded holdout)."""
    train, held_out = holdout_split(power_law_interactions(n_users, n_items, n_interactions, seed=seed), test, seed)
    return Dataset(train, held_out, f"synthetic-{n_users}x{n_items}-{n_interactions}")
