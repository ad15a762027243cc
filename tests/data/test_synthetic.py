"""The seeded power-law generator of the scale benchmark."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bspm_jax import ConfigError
from bspm_jax.data.synthetic import power_law_interactions, synthetic_dataset


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 60), st.integers(4, 80), st.data())
def test_exact_size_binary_and_every_user_has_two(n_users, n_items, data):
    n = data.draw(st.integers(2 * n_users, n_users * n_items // 2))
    m = power_law_interactions(n_users, n_items, n, seed=data.draw(st.integers(0, 9)))
    assert m.shape == (n_users, n_items) and m.nnz == n and set(np.unique(m.data)) == {1.0}
    assert np.diff(m.indptr).min() >= 2


def test_seeded_and_heavy_tailed():
    a = power_law_interactions(2000, 3000, 40_000, seed=1)
    b = power_law_interactions(2000, 3000, 40_000, seed=1)
    c = power_law_interactions(2000, 3000, 40_000, seed=2)
    assert (a != b).nnz == 0 and (a != c).nnz > 0
    item_degree = np.sort(np.bincount(a.indices, minlength=3000))[::-1]
    assert item_degree[:30].sum() / a.nnz > 0.1  # the top 1% of items hold > 10% (uniform: 1%)
    user_degree = np.sort(np.diff(a.indptr))[::-1]
    assert user_degree[0] > 5 * np.median(user_degree)


def test_dataset_split_and_errors():
    d = synthetic_dataset(300, 400, 6000, seed=0)
    assert d.n_train + d.n_test == 6000 and d.train.multiply(d.test).nnz == 0
    assert (np.diff(d.test.indptr) > 0).all()
    for args in [(1, 10, 5), (10, 10, 10), (10, 10, 60)]:
        with pytest.raises(ConfigError):
            power_law_interactions(*args)
