"""Evaluation protocol against a brute-force NumPy computation on random data."""

from __future__ import annotations

import math
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bspm_jax import ConfigError, Dataset, evaluate
from bspm_jax.models.base import AbstractRecommender, AbstractTrainingFree


class LinearScores(AbstractRecommender):
    """Test model: score = rows @ W for a fixed matrix W."""

    weights: jnp.ndarray | None = None
    train: None = None
    name: ClassVar[str] = "linear"

    def fit(self, train):
        return self

    def score(self, rows):
        return rows @ self.weights


def brute_force(train: np.ndarray, test: np.ndarray, scores: np.ndarray, ks) -> dict[str, float]:
    """The protocol written out user by user: rank candidates by (-score, item index)."""
    n_users, n_items = train.shape
    deg = train.sum(axis=0)
    info = -np.log2(np.maximum(deg, 1) / max(deg.sum(), 1))
    out = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "precision", "ndcg", "hit", "novelty")}
    recommended = {k: set() for k in ks}
    n_rec = {k: 0 for k in ks}
    users = [u for u in range(n_users) if test[u].any()]
    for u in users:
        candidates = [i for i in range(n_items) if not train[u, i]]
        ranked = sorted(candidates, key=lambda i: (-scores[u, i], i))
        truth = set(np.flatnonzero(test[u]))
        for k in ks:
            top = ranked[:k]
            hits = [1.0 if i in truth else 0.0 for i in top]
            out[f"recall@{k}"] += sum(hits) / len(truth)
            out[f"precision@{k}"] += sum(hits) / k
            out[f"hit@{k}"] += float(sum(hits) > 0)
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(truth), k)))
            out[f"ndcg@{k}"] += dcg / idcg
            recommended[k].update(top)
            out[f"novelty@{k}"] += sum(info[i] for i in top)
            n_rec[k] += len(top)
    for key in list(out):
        name, k = key.split("@")
        out[key] /= n_rec[int(k)] if name == "novelty" else len(users)
    for k in ks:
        out[f"coverage@{k}"] = len(recommended[k]) / n_items
    return out


@st.composite
def problems(draw):
    n_users = draw(st.integers(2, 12))
    n_items = draw(st.integers(6, 20))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    train = rng.random((n_users, n_items)) < draw(st.floats(0.05, 0.5))
    test = (rng.random((n_users, n_items)) < 0.3) & ~train
    test[0, np.flatnonzero(~train[0])[:1]] = True  # at least one user with test items
    ties = draw(st.booleans())
    w = rng.integers(0, 3, (n_items, n_items)) if ties else rng.random((n_items, n_items))
    return train, test, w.astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(problems(), st.integers(1, 8), st.sampled_from([1, 2, 5, 64]), st.sampled_from([None, 1, 2]))
def test_metrics_equal_brute_force(problem, k_small, batch_size, per_call):
    train, test, w = problem
    n_items = train.shape[1]
    ks = sorted({min(k_small, n_items - 1), min(5, n_items - 1)})
    # every user must have at least max(ks) candidates for a well-defined top-K
    if ((~train).sum(axis=1) < max(ks)).any():
        train = train & (np.arange(n_items) >= max(ks))[None, :]
        test = test & ~train
        test[0, 0] = True
    data = Dataset(sp.csr_matrix(train.astype(np.float32)), sp.csr_matrix(test.astype(np.float32)), "t")
    result = evaluate(
        LinearScores(weights=jnp.asarray(w)), data, ks=ks, batch_size=batch_size, batches_per_call=per_call
    )
    expected = brute_force(train, test, train.astype(np.float32) @ w, ks)
    assert set(result.metrics) == set(expected)
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert result.n_users == int(test.any(axis=1).sum())


def test_ties_broken_by_lower_index():
    train = sp.csr_matrix(np.zeros((1, 6), dtype=np.float32))
    test = sp.csr_matrix(np.array([[0, 0, 0, 1, 0, 0]], dtype=np.float32))
    data = Dataset(train, test, "ties")
    model = LinearScores(weights=jnp.zeros((6, 6)))
    # all scores tie: the top-3 are items 0, 1, 2, so item 3 is missed; top-4 hits it at rank 4
    assert evaluate(model, data, ks=[3]).metrics["recall@3"] == 0.0
    m = evaluate(model, data, ks=[4]).metrics
    assert m["recall@4"] == 1.0
    assert m["ndcg@4"] == pytest.approx(1 / math.log2(5))


def test_invalid_k_is_a_config_error():
    data = Dataset(sp.csr_matrix(np.eye(3, dtype=np.float32)), sp.csr_matrix(np.ones((3, 3)) - np.eye(3)), "x")
    with pytest.raises(ConfigError, match="K"):
        evaluate(LinearScores(weights=jnp.eye(3)), data, ks=[4])
    with pytest.raises(ConfigError, match="batch_size"):
        evaluate(LinearScores(weights=jnp.eye(3)), data, ks=[1], batch_size=0)
    with pytest.raises(ConfigError, match="batches_per_call"):
        evaluate(LinearScores(weights=jnp.eye(3)), data, ks=[1], batches_per_call=0)


@pytest.mark.parametrize("per_call", [None, 3])
def test_progress_advances_once_per_finished_batch_and_changes_nothing(per_call):
    """The progress iterable is stepped from inside the device program, once per batch."""
    from bspm_jax import load_sample, make_model

    data = load_sample()
    model = make_model("bspm", rank=16).fit(data.train)
    stepped: list[int] = []

    def progress(iterable, **_):
        for x in iterable:
            stepped.append(x)
            yield x

    quiet = evaluate(model, data, ks=(20,), batch_size=1000)
    shown = evaluate(model, data, ks=(20,), batch_size=1000, progress=progress, batches_per_call=per_call)
    n_batches = math.ceil(quiet.n_users / 1000)
    calls = [range(i, min(i + (per_call or n_batches), n_batches)) for i in range(0, n_batches, per_call or n_batches)]
    assert stepped == [j for c in calls for j in range(len(c))]
    assert shown.metrics == quiet.metrics
    np.testing.assert_array_equal(shown.ranking.items, quiet.ranking.items)
