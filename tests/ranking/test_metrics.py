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
from helpers import sample


class LinearScores(AbstractRecommender):
    """Test model: score = rows @ W for a fixed matrix W."""

    weights: jnp.ndarray | None = None
    train: None = None
    name: ClassVar[str] = "linear"

    def fit(self, train):
        return self

    def search_space(self):
        return {}

    def score(self, rows):
        return rows @ self.weights


def brute_force(train: np.ndarray, test: np.ndarray, scores: np.ndarray, ks, excluded: np.ndarray | None = None) -> dict[str, float]:
    """The protocol written out user by user: rank candidates by (-score, item index).

    Candidates are the items not in ``excluded`` (default: ``train``); novelty counts train degrees.
    """
    n_users, n_items = train.shape
    excluded = train if excluded is None else excluded
    deg = train.sum(axis=0)
    info = -np.log2(np.maximum(deg, 1) / max(deg.sum(), 1))
    out = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "precision", "ndcg", "hit", "novelty")}
    recommended = {k: set() for k in ks}
    n_rec = {k: 0 for k in ks}
    users = [u for u in range(n_users) if test[u].any()]
    for u in users:
        candidates = [i for i in range(n_items) if not excluded[u, i]]
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
    from bspm_jax import make_model

    data = sample()
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


# ---------------------------------------------------------------- validation split: the DiffRec protocol


@st.composite
def three_splits(draw):
    """Disjoint random train/valid/test masks; items and users may be cold (absent from train)."""
    n_users, n_items = draw(st.integers(2, 10)), draw(st.integers(8, 16))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    which = rng.choice(4, size=(n_users, n_items), p=[0.55, 0.2, 0.15, 0.1])  # none, train, valid, test
    which[0, 0], which[1, 1] = 2, 3  # someone to evaluate in each split
    train, valid, test = which == 1, which == 2, which == 3
    w = rng.integers(0, 3, (n_items, n_items)) if draw(st.booleans()) else rng.random((n_items, n_items))
    return train, valid, test, w.astype(np.float32)


def _csr(mask: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix(mask.astype(np.float32))


PER_USER_KEYS = ("recall", "ndcg", "precision", "hit")


def _check(result, expected, truth) -> None:
    for key, value in expected.items():
        if key.split("@")[0] in PER_USER_KEYS:
            assert result.metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert result.n_users == int(truth.any(axis=1).sum())
    assert result.users.tolist() == np.flatnonzero(truth.any(axis=1)).tolist()


@settings(max_examples=30, deadline=None)
@given(three_splits(), st.sampled_from([1, 3, 64]))
def test_valid_and_test_protocol_equal_brute_force(problem, batch_size):
    """valid: train excluded; test: train and valid excluded; history train, or train + valid when refitted."""
    train, valid, test, w = problem
    ks = [1, 3]
    data = Dataset(_csr(train), _csr(test), "t", valid=_csr(valid))
    model = LinearScores(weights=jnp.asarray(w))
    seen = train | valid
    runs = [("valid", "train", train, train, valid), ("test", "train", train, seen, test),
            ("test", "train+valid", seen, seen, test)]
    for split, history, rows, excluded, truth in runs:
        result = evaluate(model, data, ks=ks, batch_size=batch_size, split=split, history=history)
        _check(result, brute_force(rows, truth, rows.astype(np.float32) @ w, ks, excluded), truth)


@settings(max_examples=20, deadline=None)
@given(three_splits())
def test_popularity_protocol_equal_brute_force(problem):
    """Popularity fitted on train (or train + valid): scores are the fit matrix's item degrees."""
    from bspm_jax import make_model

    train, valid, test, _ = problem
    data = Dataset(_csr(train), _csr(test), "t", valid=_csr(valid))
    seen = train | valid
    for split, history, fit, excluded, truth in [("valid", "train", train, train, valid),
                                                 ("test", "train", train, seen, test),
                                                 ("test", "train+valid", seen, seen, test)]:
        model = make_model("popularity").fit(_csr(fit))
        scores = np.broadcast_to(fit.sum(axis=0).astype(np.float32), fit.shape)
        result = evaluate(model, data, ks=[2, 5], split=split, history=history)
        _check(result, brute_force(fit, truth, scores, [2, 5], excluded), truth)


def test_bspm_with_cold_items_and_users_equals_brute_force():
    """BSPM scores cold items (and a cold user's empty history) 0, without NaN; the protocol matches."""
    from bspm_jax import make_model

    rng = np.random.default_rng(7)
    which = rng.choice(4, size=(40, 30), p=[0.5, 0.3, 0.1, 0.1])
    which[:, [4, 11]] = np.where(which[:, [4, 11]] == 1, 3, which[:, [4, 11]])  # items 4, 11: cold
    which[3] = np.where(which[3] == 1, 2, which[3])  # user 3: cold
    train, valid, test = which == 1, which == 2, which == 3
    data = Dataset(_csr(train), _csr(test), "t", valid=_csr(valid))
    model = make_model("bspm", rank=8).fit(data.train)
    scores = np.asarray(model.score(jnp.asarray(train.astype(np.float32))))
    assert np.isfinite(scores).all() and not scores[:, [4, 11]].any() and not scores[3].any()
    for split, excluded, truth in [("valid", train, valid), ("test", train | valid, test)]:
        result = evaluate(model, data, ks=[5, 10], split=split)
        _check(result, brute_force(train, truth, scores, [5, 10], excluded), truth)
        assert all(np.isfinite(v) for v in result.metrics.values())


def test_split_and_history_refusals():
    train = sp.csr_matrix(np.eye(4, dtype=np.float32))
    plain = Dataset(train, sp.csr_matrix(np.roll(np.eye(4, dtype=np.float32), 1, axis=1)), "plain")
    model = LinearScores(weights=jnp.eye(4))
    with pytest.raises(ConfigError, match="plain has no validation split"):
        evaluate(model, plain, ks=[1], split="valid")
    with pytest.raises(ConfigError, match="needs a validation split"):
        evaluate(model, plain, ks=[1], history="train+valid")
    with pytest.raises(ConfigError, match="split must be one of valid, test"):
        evaluate(model, plain, ks=[1], split="train")
    with pytest.raises(ConfigError, match="history must be one of"):
        evaluate(model, plain, ks=[1], history="all")
    split = Dataset(train, plain.test, "v", valid=sp.csr_matrix(np.roll(np.eye(4, dtype=np.float32), 2, axis=1)))
    with pytest.raises(ConfigError, match="validation is scored from the train history only"):
        evaluate(model, split, ks=[1], split="valid", history="train+valid")


def test_rank_rows_exclude():
    """``exclude`` replaces the rows as the items never recommended; its shape is checked."""
    from bspm_jax.ranking import rank_rows

    rows = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float32))
    model = LinearScores(weights=jnp.asarray(np.tile(np.array([4.0, 3.0, 2.0, 1.0], np.float32), (4, 1))))
    exclude = sp.csr_matrix(np.array([[0, 0, 1, 1], [1, 1, 1, 0]], dtype=np.float32))
    assert rank_rows(model, rows, 2).items.tolist() == [[1, 2], [0, 2]]
    ranking = rank_rows(model, rows, 2, exclude=exclude)
    assert ranking.items.tolist() == [[0, 1], [3, 0]] and np.isneginf(ranking.scores[1, 1])
    with pytest.raises(ConfigError, match="exclude has shape"):
        rank_rows(model, rows, 2, exclude=exclude[:1])
