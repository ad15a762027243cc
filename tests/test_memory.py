"""Memory planning: batch sizes from the available memory, refusals before allocating."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import bspm_jax.memory as memory
from bspm_jax import ResourceError, build_graph, load_sample, make_model
from bspm_jax.models.base import rank_rows


@pytest.fixture(scope="module")
def fitted():
    data = load_sample()
    return data, make_model("bspm", rank=32).fit(data.train)


def test_plan_matches_the_budget_arithmetic(fitted):
    data, model = fitted
    n_users, n_items = data.train.shape
    per_user = 4 * ((5 + 1 + 1 + 1) * n_items + n_users)  # input, ODE states, Horner, ideal, result; one n_users row
    assert model.scoring_bytes_per_user(n_users, n_items) == per_user
    graph_arrays = [np.asarray(x) for x in jax.tree.leaves(model.graph)]
    assert memory.model_bytes(model) == sum(a.nbytes for a in graph_arrays) > 0  # the item side only
    for available in (10**8, 3 * 10**8, 10**9, 10**11):
        for devices in (1, 4):
            got = memory.plan_batch_size(model, n_users, n_items, devices, available)
            budget = 0.6 * available - memory.model_bytes(model) * devices
            expect = int(min(memory.MAX_BATCH, budget // (per_user * devices)))
            assert got == (n_users if expect >= n_users else expect if expect < 64 else expect - expect % 64)
            assert got * per_user * devices <= budget


def test_refusals_name_what_is_needed_and_available(fitted, monkeypatch):
    data, model = fitted
    with pytest.raises(ResourceError, match=r"needs .* but only .* is available"):
        memory.plan_batch_size(model, *data.train.shape, available=10**6)
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 40 * 2**20)
    with pytest.raises(ResourceError, match=r"scoring batches of 4,000 users needs .* use batch_size=\d+"):
        rank_rows(model, data.train, 20, 4000)
    ok = rank_rows(model, data.train[:200], 20, "auto")  # the planner picks what fits
    assert len(ok.batches[0]) == memory.plan_batch_size(model, 200, data.n_items, available=40 * 2**20) == 200
    with pytest.raises(ResourceError, match="SVD .* needs"):
        monkeypatch.setattr(memory, "available_bytes", lambda device=None: 10**5)
        import bspm_jax.graph as graph

        monkeypatch.setattr(graph, "DENSE_SVD_LIMIT", 10)
        build_graph(data.train, 64)


def test_auto_batch_scores_like_a_fixed_batch(fitted):
    data, model = fitted
    auto = rank_rows(model, data.train, 20, "auto")
    fixed = rank_rows(model, data.train, 20, 1024)
    np.testing.assert_array_equal(auto.items, fixed.items)
