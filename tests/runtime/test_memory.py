"""Memory planning: batch sizes from the available memory, refusals before allocating."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import scipy.sparse as sp

import bspm_jax.spectral as spectral
import bspm_jax.spectral.svd as svd
from bspm_jax import ranking
import bspm_jax.runtime.memory as memory
from bspm_jax import ResourceError, make_model
from bspm_jax.filtering.graph import build_graph
from bspm_jax.ranking import rank_rows
from helpers import sample


@pytest.fixture(scope="module")
def fitted():
    data = sample()
    return data, make_model("bspm", rank=32).fit(data.train)


def test_plan_matches_the_budget_arithmetic(fitted):
    data, model = fitted
    n_users, n_items = data.train.shape
    per_user = 4 * ((5 + 1 + 1 + 1) * n_items + n_users)  # input, ODE states, Horner, ideal, result; one n_users row
    assert model.scoring_bytes_per_user(n_items) == per_user
    graph_arrays = [np.asarray(x) for x in jax.tree.leaves(model.graph)]
    assert ranking.model_bytes(model) == sum(a.nbytes for a in graph_arrays) > 0  # the item side only
    for available in (10**8, 3 * 10**8, 10**9, 10**11):
        for devices in (1, 4):
            got = ranking.plan_batch_size(model, n_users, n_items, devices, available)
            budget = 0.6 * available - ranking.model_bytes(model) * devices
            expect = int(min(ranking.MAX_BATCH, budget // (per_user * devices)))
            assert got == (n_users if expect >= n_users else expect if expect < 64 else expect - expect % 64)
            assert got * per_user * devices <= budget


def test_the_intermediate_is_as_long_as_the_training_users_whatever_rows_are_scored(fitted):
    """(X R~^T) R~ has one entry per training user, also when only a few rows are scored."""
    data, model = fitted
    n_users, n_items = data.train.shape
    assert model.graph.gram.intermediate_length() == n_users
    per_user = model.scoring_bytes_per_user(n_items)
    available = 10**8
    budget = 0.6 * available - ranking.model_bytes(model)
    assert ranking.plan_batch_size(model, 5000, n_items, available=available) == int(budget // per_user) // 64 * 64
    lgcn = make_model("lgcn-ide").fit(data.train)
    assert lgcn.scoring_bytes_per_user(n_items) == 4 * (3 * n_items + n_users)
    dense = make_model("bspm", rank=32, dense=True).fit(data.train)
    assert dense.graph.gram.intermediate_length() == 0  # a dense P~ has no intermediate row


def test_refusals_name_what_is_needed_and_available(fitted, monkeypatch):
    data, model = fitted
    with pytest.raises(ResourceError, match=r"needs .* but only .* is available"):
        ranking.plan_batch_size(model, *data.train.shape, available=10**6)
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 40 * 2**20)
    with pytest.raises(ResourceError, match=r"scoring batches of 4,000 users needs .* use batch_size=\d+"):
        rank_rows(model, data.train, 20, 4000)
    ok = rank_rows(model, data.train[:200], 20, "auto")  # the planner picks what fits
    planned = ranking.plan_batch_size(model, 200, data.n_items, available=40 * 2**20)
    assert len(ok.batches[0]) == planned and planned * model.scoring_bytes_per_user(data.n_items) <= 0.6 * 40 * 2**20
    assert sum(len(b) for b in ok.batches) == 200
    with pytest.raises(ResourceError, match="SVD .* needs"):
        monkeypatch.setattr(memory, "available_bytes", lambda device=None: 10**5)
        monkeypatch.setattr(svd, "DENSE_SVD_LIMIT", 10)
        build_graph(data.train, 64)


def test_auto_batch_scores_like_a_fixed_batch(fitted):
    data, model = fitted
    auto = rank_rows(model, data.train, 20, "auto")
    fixed = rank_rows(model, data.train, 20, 1024)
    np.testing.assert_array_equal(auto.items, fixed.items)


def _power_law(n_users, n_items, seed):
    """A normalised R~ of seeded power-law interactions."""
    from bspm_jax.data.synthetic import power_law_interactions

    norm, _, _ = spectral.normalize(power_law_interactions(n_users, n_items, 6 * max(n_users, n_items), seed=seed))
    return norm


@pytest.mark.parametrize("shape", [(400, 150), (150, 400)], ids=["tall", "wide"])
def test_every_svd_attempt_equals_the_dense_svd_or_says_it_did_not_converge(shape):
    norm = _power_law(*shape, seed=3)
    expected = np.linalg.svd(norm.toarray(), compute_uv=False)
    rank = 8 + int(np.argmax(expected[7:15] - expected[8:16]))  # cut at the widest gap of ranks 8..15
    assert expected[rank - 1] - expected[rank] > 1e-3  # so the subspace is well defined
    gram = (norm.T @ norm).toarray()
    converged = []
    for attempt in svd.svd_attempts(norm.shape, rank, "auto", tol=1e-10):  # the block solver in float64
        try:
            s, vt, residual = attempt.run(norm, rank, 0)
        except np.linalg.LinAlgError:  # PROPACK out of steps: the next attempt takes over
            continue
        converged.append(attempt.name)
        assert np.all(np.diff(s) <= 0)
        np.testing.assert_allclose(s, expected[:rank], rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(vt @ vt.T, np.eye(rank), atol=1e-9)
        np.testing.assert_allclose(vt @ gram, (s**2)[:, None] * vt, atol=1e-9)
        direct = np.linalg.norm(gram @ vt.T - vt.T * s**2, axis=0) / s / s[0]  # ||A^T u - s v|| / s_1, u = A v / s
        assert direct.max() <= 1e-9 and residual <= 1e-9  # small residuals, and the reported one says so
    assert {"block Krylov", "ARPACK on the Gram matrix"} <= set(converged) and len(converged) >= 3


def test_svd_attempt_memory_arithmetic():
    m, n, rank = 10**6, 2 * 10**5, 448
    block, propack6, propack10, gram = svd.svd_attempts((m, n), rank)
    assert [a.name for a in svd.svd_attempts((m, n), rank, "propack")] == [propack6.name, propack10.name]
    assert [a.name for a in svd.svd_attempts((m, n), rank, "arpack")] == [gram.name]
    assert [a.name for a in svd.svd_attempts((m, n), rank, "block")] == [block.name]
    # basis (2 * 576 + 64 vectors of the item side), three copies of H, 4 product blocks, the restart copy, the right vectors
    assert block.bytes == 8 * ((1152 + 64) * n + 3 * 1216**2 + 4 * 64 * n + 576 * n + rank * n) < 4 * 2**30
    assert propack6.bytes == 6 * rank * (m + n) * 8 > 24 * 2**30  # the 10^6-user case: PROPACK cannot fit 24 GiB
    assert propack10.bytes == 10 * rank * (m + n) * 8
    assert gram.bytes == ((2 * rank + 1) * n + rank * n) * 8 < 3 * 2**30  # the item side only
    wide = svd.svd_attempts((n, m), rank)[3]
    assert wide.bytes == ((2 * rank + 1) * n + rank * m) * 8  # the user side, and the right vectors


def test_svd_falls_back_to_the_gram_lanczos_when_propack_cannot_fit(monkeypatch):
    norm = _power_law(3000, 2500, seed=1)
    rank = 20
    monkeypatch.setattr(svd, "DENSE_SVD_LIMIT", 10)
    block, propack, _, gram = svd.svd_attempts(norm.shape, rank)
    assert gram.bytes < min(block.bytes, propack.bytes)
    ran, attempts = [], svd.svd_attempts
    monkeypatch.setattr(svd, "svd_attempts", lambda shape, k, solver, tol: [
        a._replace(run=lambda *args, _a=a: ran.append(_a.name) or _a.run(*args)) for a in attempts(shape, k, solver, tol)])
    monkeypatch.setattr(memory, "available_bytes",
                        lambda device=None: (gram.bytes + min(block.bytes, propack.bytes)) // 2)
    s, vt = svd.truncated_svd(norm, rank, tol=1e-9)
    assert ran == ["ARPACK on the Gram matrix"]  # neither the block solver nor PROPACK could fit, so they never ran
    expected = np.linalg.svd(norm.toarray(), compute_uv=False)
    np.testing.assert_allclose(s, expected[:rank], rtol=1e-9)
    np.testing.assert_allclose(vt @ (norm.T @ (norm @ vt.T)), np.diag(s**2), atol=1e-9)
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: gram.bytes - 1)
    with pytest.raises(ResourceError, match=r"SVD .* needs .*ARPACK on the Gram matrix.* but only .* is available"):
        svd.truncated_svd(norm, rank)
