"""GMF, MLP and NeuMF (He et al., WWW 2017): scores and loss against NumPy transcriptions, gradients against
finite differences, the negative sampler's invariants, pre-training (fusion formula, checkpointed parts),
determinism, resume, save/load, refusals, the preset."""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from bspm_jax.config import get_preset
from bspm_jax.errors import ConfigError
from bspm_jax.models import GMF, MLP, MODELS, NeuMF, load_model, make_model, neumf_from_parts
from bspm_jax.training import (
    CHECKPOINT,
    PairSampler,
    TrainSettings,
    checkpoint_info,
    epoch_key,
    objective,
    train,
)
from bspm_jax.training.losses import BCELoss, BPRLoss, bce_loss, bpr_loss
from bspm_jax.training.pretrain import initial_model, part_seed
from bspm_jax.training.sampling import PAIR_SAMPLERS, NegativeSampler, host_rng

from oracles import leaves, same, toy


def randomized(model, seed: int = 0, scale: float = 0.5):
    """``model`` with every parameter array replaced by N(0, scale^2) draws (non-zero biases included)."""
    params, rest = eqx.partition(model, eqx.is_array)
    flat, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    flat = [jnp.asarray(scale * rng.standard_normal(x.shape), x.dtype) for x in flat]
    return eqx.combine(jax.tree.unflatten(treedef, flat), rest)


N_USERS, N_ITEMS = 5, 7
EMPTY = sp.csr_matrix((N_USERS, N_ITEMS), dtype=np.float32)
U = np.array([0, 1, 1, 4, 2, 3, 0])
I = np.array([0, 3, 5, 6, 2, 1, 6])
Y = np.array([1, 0, 1, 0, 0, 1, 0], np.float32)


def tiny(cls, **settings):
    return randomized(cls(**settings).init(jax.random.key(1), EMPTY))


# ---------------------------------------------------------------- NumPy transcriptions of the formulas


def np_tower(tower, x):
    for layer in tower:
        x = np.maximum(x @ np.asarray(layer.weight, np.float64) + np.asarray(layer.bias, np.float64), 0.0)
    return x


def np_predict(predict, x):
    return x @ np.asarray(predict.weight, np.float64)[:, 0] + float(predict.bias[0])


def np_logits(model, u, i):
    f = lambda a: np.asarray(a, np.float64)
    if isinstance(model, GMF):
        return np_predict(model.predict, f(model.user_embedding)[u] * f(model.item_embedding)[i])
    if isinstance(model, MLP):
        x = np.concatenate([f(model.user_embedding)[u], f(model.item_embedding)[i]], axis=1)
        return np_predict(model.predict, np_tower(model.tower, x))
    gmf = f(model.gmf_user_embedding)[u] * f(model.gmf_item_embedding)[i]
    mlp = np_tower(model.tower, np.concatenate([f(model.mlp_user_embedding)[u], f(model.mlp_item_embedding)[i]], axis=1))
    return np_predict(model.predict, np.concatenate([gmf, mlp], axis=1))


CASES = [(GMF, {"factors": 3}), (MLP, {"layers": (6, 4, 3)}), (MLP, {"layers": (4,)}),
         (NeuMF, {"factors": 3, "layers": (6, 4, 3)}), (NeuMF, {"factors": 2, "layers": (4,)})]


@pytest.mark.parametrize("cls, settings", CASES)
def test_pair_scores_are_the_logits_of_the_formula_and_score_users_agrees(cls, settings):
    model = tiny(cls, **settings)
    np.testing.assert_allclose(np.asarray(model.pair_scores(jnp.asarray(U), jnp.asarray(I))), np_logits(model, U, I),
                               rtol=1e-5, atol=1e-6)
    users = np.array([3, 0, 4])
    grid = np_logits(model, np.repeat(users, N_ITEMS), np.tile(np.arange(N_ITEMS), users.size)).reshape(users.size, -1)
    np.testing.assert_allclose(np.asarray(model.score_users(jnp.asarray(users))), grid, rtol=1e-5, atol=1e-6)


def test_initialisation_follows_he_et_al():
    R = sp.csr_matrix((1000, 600), dtype=np.float32)
    model = NeuMF(factors=8, layers=(64, 32, 16, 8)).init(jax.random.key(0), R)
    for table, shape in ((model.gmf_user_embedding, (1000, 8)), (model.gmf_item_embedding, (600, 8)),
                         (model.mlp_user_embedding, (1000, 32)), (model.mlp_item_embedding, (600, 32))):
        assert table.shape == shape and table.dtype == jnp.float32
        assert abs(float(np.std(table)) - 0.01) < 5e-4 and abs(float(np.mean(table))) < 5e-4
    assert [layer.weight.shape for layer in model.tower] == [(64, 32), (32, 16), (16, 8)]
    for layer in model.tower:  # Glorot uniform, zero bias
        n_in, n_out = layer.weight.shape
        limit = math.sqrt(6 / (n_in + n_out))
        assert float(jnp.max(jnp.abs(layer.weight))) <= limit and float(jnp.max(jnp.abs(layer.weight))) > 0.8 * limit
        assert not np.any(np.asarray(layer.bias))
    w = np.asarray(model.predict.weight)  # LeCun uniform over the 16 fused features
    assert w.shape == (16, 1) and np.max(np.abs(w)) <= math.sqrt(3 / 16) and float(model.predict.bias[0]) == 0.0
    mlp = MLP().init(jax.random.key(0), R)
    assert mlp.user_embedding.shape == (1000, 32) and mlp.predict.weight.shape == (8, 1)
    assert GMF().init(jax.random.key(0), R).user_embedding.shape == (1000, 8)


# ---------------------------------------------------------------- loss and gradient


@pytest.mark.parametrize("cls, settings", CASES)
def test_bce_loss_matches_numpy(cls, settings):
    model = tiny(cls, reg=0.1, **settings)
    z = np_logits(model, U, I)
    p = 1 / (1 + np.exp(-z))
    bce = np.mean(-(Y * np.log(p) + (1 - Y) * np.log(1 - p)))
    tables = model.embedding_tables()
    l2 = 0.1 / 2 * np.mean(sum(np.sum(np.asarray(P, np.float64)[U] ** 2, 1) + np.sum(np.asarray(Q, np.float64)[I] ** 2, 1)
                               for P, Q in tables))
    batch = tuple(jnp.asarray(a) for a in (U, I, Y))
    np.testing.assert_allclose(float(bce_loss(model, *batch)), bce + l2, rtol=1e-5)
    assert float(BCELoss()(model, batch, jax.random.key(0), jnp.int32(0))) == float(bce_loss(model, *batch))
    assert len(tables) == (2 if cls is NeuMF else 1)
    big = dataclasses.replace(model, predict=dataclasses.replace(model.predict, bias=jnp.array([200.0])))
    assert np.isfinite(float(bce_loss(big, *batch)))  # log-sigmoid: no log(0) for saturated logits


@pytest.mark.parametrize("cls, settings", CASES)
def test_bpr_loss_of_an_ncf_model_matches_numpy(cls, settings):
    model = tiny(cls, reg=0.1, loss="bpr", **settings)
    neg = np.array([2, 0, 4, 1, 6, 5, 3])
    margin = np_logits(model, U, I) - np_logits(model, U, neg)
    f = lambda a: np.asarray(a, np.float64)
    l2 = 0.1 / 2 * np.mean(sum(np.sum(f(P)[U] ** 2, 1) + np.sum(f(Q)[I] ** 2, 1) + np.sum(f(Q)[neg] ** 2, 1)
                               for P, Q in model.embedding_tables()))
    batch = tuple(jnp.asarray(a) for a in (U, I, neg))
    np.testing.assert_allclose(float(bpr_loss(model, *batch)), np.mean(np.log1p(np.exp(-margin))) + l2, rtol=1e-5)


def test_gradients_match_central_finite_differences():
    with jax.enable_x64(True):
        model = tiny(NeuMF, factors=2, layers=(4, 3, 2), reg=0.05)
        model = jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, model)
        batch = (jnp.asarray(U), jnp.asarray(I), jnp.asarray(Y, jnp.float64))
        grads = eqx.filter_jit(eqx.filter_grad(bce_loss))(model, *batch)
        loss = eqx.filter_jit(bce_loss)
        params, rest = eqx.partition(model, eqx.is_array)
        flat, treedef = jax.tree.flatten(params)
        gflat = jax.tree.leaves(grads)
        rng, eps, checked = np.random.default_rng(0), 1e-6, 0
        for n, (x, g) in enumerate(zip(flat, gflat)):
            for _ in range(2):
                idx = tuple(int(rng.integers(0, s)) for s in x.shape)
                shifted = []
                for sign in (1, -1):
                    moved = list(flat)
                    moved[n] = np.asarray(x).copy()  # moved in NumPy (the same float64 sum): no eager op per shape
                    moved[n][idx] += sign * eps
                    moved[n] = jnp.asarray(moved[n])
                    shifted.append(float(loss(eqx.combine(jax.tree.unflatten(treedef, moved), rest), *batch)))
                fd = (shifted[0] - shifted[1]) / (2 * eps)
                np.testing.assert_allclose(float(g[idx]), fd, rtol=1e-5, atol=1e-8)
                checked += 1
        assert checked == 2 * len(flat) == 2 * 10  # 4 tables, 2 tower layers x (W, b), prediction (W, b)


# ---------------------------------------------------------------- sampler


def test_negative_sampler_covers_every_pair_once_with_unseen_negatives_deterministically():
    R = toy(n_items=12, p=0.6)  # dense rows: many rejections
    sampler = NegativeSampler.from_matrix(R, 3)
    key = jax.random.key(5)
    users, items, labels = sampler.epoch(epoch_key(key, 1))
    assert users.dtype == items.dtype == np.int32 and labels.dtype == np.float32
    assert len(users) == len(items) == len(labels) == 4 * R.nnz == sampler.n_examples
    truth = sorted((int(a), int(b)) for a, b in zip(*R.nonzero()))
    pos = labels == 1
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert sorted(zip(users[pos].tolist(), items[pos].tolist())) == truth  # every pair once, as a positive
    dense = R.toarray() > 0
    assert not np.any(dense[users[~pos], items[~pos]])  # negatives: all unseen
    degree = np.diff(R.indptr)
    np.testing.assert_array_equal(np.bincount(users[~pos], minlength=R.shape[0]), 3 * degree)  # 3 per positive
    assert not np.all(labels[: R.nnz] == 1)  # positives and negatives shuffled together
    again = sampler.epoch(epoch_key(key, 1))
    assert all(np.array_equal(a, b) for a, b in zip((users, items, labels), again))
    other = sampler.epoch(epoch_key(key, 2))
    assert not np.array_equal(users * 100 + items, other[0] * 100 + other[1])


def test_negatives_are_uniform_over_unseen_items():
    R = sp.vstack([sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0]], np.float32))] * 1000).tocsr()
    users, items, labels = NegativeSampler.from_matrix(R, 4).epoch(jax.random.key(0))
    counts = np.bincount(items[labels == 0], minlength=6)
    assert counts[:2].sum() == 0 and counts.sum() == 8000
    np.testing.assert_allclose(counts[2:] / 8000, 0.25, atol=0.02)


def test_the_pair_sampler_draws_what_it_drew_before_its_rejection_loop_was_shared():
    R = toy(n_items=12, p=0.6)
    sampler, key = PairSampler.from_matrix(R), jax.random.key(3)
    rng = host_rng(key)  # the pre-refactoring PairSampler.epoch, transcribed
    order = rng.permutation(sampler.n_pairs)
    users, pos = sampler.users[order], sampler.items[order]
    neg = rng.integers(0, sampler.n_items, size=sampler.n_pairs, dtype=np.int32)
    redraw = np.flatnonzero(sampler.seen(users, neg))
    while redraw.size:
        neg[redraw] = rng.integers(0, sampler.n_items, size=redraw.size, dtype=np.int32)
        redraw = redraw[sampler.seen(users[redraw], neg[redraw])]
    assert all(np.array_equal(a, b) for a, b in zip(sampler.epoch(key), (users, pos, neg)))


def test_the_objective_of_ncf_models_is_bce_on_sampled_negatives():
    R = toy()
    for model in (GMF(negatives=2), MLP(negatives=2), NeuMF(negatives=2)):
        plan = objective(model, R)
        assert isinstance(plan.loss, BCELoss) and isinstance(plan.sampler, NegativeSampler)
        assert plan.sampler.negatives == 2 and plan.sampler.n_examples == 3 * R.nnz


@pytest.mark.parametrize("sampling", ["pairs", "users"])
def test_with_loss_bpr_an_ncf_model_trains_on_the_triples_its_sampling_names(sampling):
    R = toy()
    for model in (GMF(loss="bpr", sampling=sampling), MLP(loss="bpr", sampling=sampling),
                  NeuMF(loss="bpr", sampling=sampling)):
        plan = objective(model, R)
        assert isinstance(plan.loss, BPRLoss) and type(plan.sampler) is PAIR_SAMPLERS[sampling]
        assert plan.sampler.n_pairs == R.nnz


# ---------------------------------------------------------------- pre-training


def test_neumf_from_parts_copies_the_parts_and_averages_their_logits():
    gmf, mlp = tiny(GMF, factors=3), randomized(MLP(layers=(6, 4, 3)).init(jax.random.key(2), EMPTY), seed=1)
    fused = neumf_from_parts(NeuMF(factors=3, layers=(6, 4, 3)), gmf, mlp)
    for a, b in ((fused.gmf_user_embedding, gmf.user_embedding), (fused.gmf_item_embedding, gmf.item_embedding),
                 (fused.mlp_user_embedding, mlp.user_embedding), (fused.mlp_item_embedding, mlp.item_embedding)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert same(fused.tower, mlp.tower)
    expected = 0.5 * np.concatenate([np.asarray(gmf.predict.weight), np.asarray(mlp.predict.weight)])
    np.testing.assert_array_equal(np.asarray(fused.predict.weight), expected)
    np.testing.assert_allclose(np.asarray(fused.predict.bias), 0.5 * (np.asarray(gmf.predict.bias) + np.asarray(mlp.predict.bias)),
                               rtol=1e-7)
    u, i = jnp.asarray(U), jnp.asarray(I)
    zg, zm, zf = (np.asarray(m.pair_scores(u, i), np.float64) for m in (gmf, mlp, fused))
    np.testing.assert_allclose(zf, 0.5 * zg + 0.5 * zm, rtol=1e-6, atol=1e-6)
    quarter = neumf_from_parts(NeuMF(factors=3, layers=(6, 4, 3)), gmf, mlp, alpha=0.25)
    np.testing.assert_allclose(np.asarray(quarter.pair_scores(u, i)), 0.25 * zg + 0.75 * zm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(fused.score_users(jnp.arange(N_USERS))),
                               0.5 * np.asarray(gmf.score_users(jnp.arange(N_USERS)))
                               + 0.5 * np.asarray(mlp.score_users(jnp.arange(N_USERS))), rtol=1e-5, atol=1e-6)


def test_neumf_from_parts_refuses_parts_that_do_not_fit():
    gmf, mlp = tiny(GMF, factors=3), tiny(MLP, layers=(6, 4, 3))
    with pytest.raises(ConfigError, match="factors"):
        neumf_from_parts(NeuMF(factors=4, layers=(6, 4, 3)), gmf, mlp)
    with pytest.raises(ConfigError, match="layers"):
        neumf_from_parts(NeuMF(factors=3, layers=(6, 3)), gmf, mlp)
    with pytest.raises(ConfigError, match="alpha"):
        neumf_from_parts(NeuMF(factors=3, layers=(6, 4, 3)), gmf, mlp, alpha=1.5)
    with pytest.raises(ConfigError, match="with parameters"):
        neumf_from_parts(NeuMF(factors=3, layers=(6, 4, 3)), GMF(factors=3), mlp)
    other = MLP(layers=(6, 4, 3)).init(jax.random.key(0), sp.csr_matrix((N_USERS + 1, N_ITEMS)))
    with pytest.raises(ConfigError, match="users"):
        neumf_from_parts(NeuMF(factors=3, layers=(6, 4, 3)), gmf, other)


# 3 x 157 examples an epoch (toy() has 157 pairs, 2 negatives each): three full batches, one compiled scan per model
SETTINGS = TrainSettings(epochs=3, lr=0.02, batch_size=157, eval_every=1, patience=10, seed=4, checkpoint_every=1)
PRE = {"factors": 4, "layers": (8, 4), "negatives": 2}


def scored(values=None):
    """A validation deterministic in the model (the mean score of three users), recording its calls."""
    calls = []

    def validate(model):
        calls.append(type(model).__name__)
        return {"recall@20": float(jnp.mean(model.score_users(jnp.arange(3)))) if values is None else values.pop(0)}
    validate.calls = calls
    return validate


@pytest.mark.parametrize("objective_settings", [{}, {"loss": "bpr", "sampling": "users"}])
def test_pretraining_starts_neumf_from_the_parts_trained_alone(objective_settings):
    R = toy()
    key = jax.random.fold_in(jax.random.key(SETTINGS.seed), 0)
    validate = scored()
    start = initial_model(NeuMF(pretrain=True, **PRE, **objective_settings), key, R, SETTINGS, validate, run=train)
    assert validate.calls == ["GMF"] * 3 + ["MLP"] * 3
    common = {"negatives": 2, **objective_settings}
    gmf = train(GMF(factors=4, **common), R, dataclasses.replace(SETTINGS, seed=part_seed(key, 1)), scored()).model
    mlp = train(MLP(layers=(8, 4), **common), R, dataclasses.replace(SETTINGS, seed=part_seed(key, 2)), scored()).model
    assert same(start, neumf_from_parts(NeuMF(pretrain=True, **PRE, **objective_settings), gmf, mlp))
    assert part_seed(key, 1) != part_seed(key, 2) and 0 <= part_seed(key, 1) < 2**31
    assert same(initial_model(NeuMF(**PRE), key, R, SETTINGS, run=train), NeuMF(**PRE).init(key, R))  # no pre-training
    assert same(initial_model(GMF(), key, R, SETTINGS, run=train), GMF().init(key, R))  # the default


# ---------------------------------------------------------------- the loop: determinism, resume


def test_training_lowers_the_loss_and_is_bit_identical_for_a_seed():
    R = toy()
    settings = dataclasses.replace(SETTINGS, epochs=4)
    for model in (GMF(factors=4, negatives=2), MLP(layers=(8, 4), negatives=2)):
        a, b = train(model, R, settings), train(model, R, settings)
        assert same(a.model, b.model) and a.history[-1]["loss"] < a.history[0]["loss"]
    a = train(NeuMF(**PRE), R, settings)
    b = train(NeuMF(**PRE), R, settings)
    c = train(NeuMF(**PRE), R, dataclasses.replace(settings, seed=5))
    assert same(a.model, b.model) and not same(a.model, c.model)
    assert a.history[-1]["loss"] < a.history[0]["loss"]
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    bpr = NeuMF(loss="bpr", sampling="users", **PRE)
    a, b = train(bpr, R, settings), train(bpr, R, settings)
    assert same(a.model, b.model) and a.history[-1]["loss"] < a.history[0]["loss"]


class Interrupt(Exception):
    pass


def interrupting(stop_at: int | None = None):
    validate = scored()

    def wrapped(model):
        if len(validate.calls) + 1 == stop_at:
            raise Interrupt  # e.g. Ctrl-C during a validation
        return validate(model)
    wrapped.calls = validate.calls
    return wrapped


@pytest.mark.parametrize("pretrain, stop_at, resumes", [
    (False, 3, {"": 2}),  # during NeuMF's epoch 3
    (True, 5, {"gmf": 3, "mlp": 1}),  # during the MLP's epoch 2: GMF done, no NeuMF checkpoint yet
    (True, 8, {"gmf": 3, "mlp": 3, "": 0}),  # during NeuMF's epoch 1: its start validated and checkpointed
    (True, 9, {"gmf": 3, "mlp": 3, "": 1}),  # during NeuMF's epoch 2
])
def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path, pretrain, stop_at, resumes):
    R = toy()
    model = NeuMF(pretrain=pretrain, **PRE)
    whole = train(model, R, SETTINGS, interrupting())
    with pytest.raises(Interrupt):
        train(model, R, SETTINGS, interrupting(stop_at), checkpoint_dir=tmp_path)
    for sub, epoch in resumes.items():
        assert checkpoint_info(tmp_path / sub)["epoch"] == epoch
    if pretrain:
        assert (tmp_path / "gmf" / "learning_curve.csv").is_file()
    validate = interrupting()
    resumed = train(model, R, SETTINGS, validate, checkpoint_dir=tmp_path, resume=True)
    assert same(resumed.model, whole.model)
    assert (resumed.best_epoch, resumed.best_metric) == (whole.best_epoch, whole.best_metric)
    assert resumed.history == [dict(r, seconds=s["seconds"]) | ({"step_seconds": s["step_seconds"]} if "loss" in r else {})
                               for r, s in zip(whole.history, resumed.history)]
    starts = pretrain and "" not in resumes  # a pre-trained start is validated once, at epoch 0
    redone = {"GMF": 3 - resumes.get("gmf", 3), "MLP": 3 - resumes.get("mlp", 3), "NeuMF": 3 - resumes.get("", 0) + starts}
    assert validate.calls == [name for name, n in redone.items() for _ in range(n)]  # finished parts are not redone
    with pytest.raises(ConfigError, match="holds a checkpoint: resume it"):
        train(model, R, SETTINGS, interrupting(), checkpoint_dir=tmp_path)


def test_a_pretrained_start_is_validated_at_epoch_0_and_kept_when_training_only_lowers_the_metric():
    R = toy()
    model = NeuMF(pretrain=True, **PRE)
    key = jax.random.fold_in(jax.random.key(SETTINGS.seed), 0)
    start = initial_model(model, key, R, SETTINGS, scored(), run=train)  # parts validated by the mean score of three users
    assert start.part_epochs == tuple(
        train(part, R, dataclasses.replace(SETTINGS, seed=part_seed(key, n)), scored()).best_epoch
        for n, part in enumerate((GMF(factors=4, negatives=2), MLP(layers=(8, 4), negatives=2)), start=1))
    falling = scored()
    values = iter([0.5, 0.4, 0.3, 0.2])  # NeuMF's validations, epochs 0..3: only lower after the start

    def validate(m):
        return falling(m) if type(m).__name__ != "NeuMF" else (falling.calls.append("NeuMF") or {"recall@20": next(values)})
    result = train(model, R, dataclasses.replace(SETTINGS, patience=2), validate)
    assert falling.calls.count("NeuMF") == 3 and result.epochs_run == 2  # epoch 0, 1, 2: patience 2 runs out
    assert (result.best_epoch, result.best_metric) == (0, 0.5)
    assert same(result.model, start.with_train(R))
    assert result.history[0] == {"epoch": 0, "recall@20": 0.5, "seconds": result.history[0]["seconds"]}
    fresh = train(NeuMF(**PRE), R, SETTINGS, scored())  # a fresh start is not validated before training
    assert [r["epoch"] for r in fresh.history] == [1, 2, 3]


@pytest.mark.parametrize("epochs", [0, 2])
def test_the_refit_of_a_pretrained_neumf_trains_each_part_for_its_own_best_epoch_count(tmp_path, epochs):
    from bspm_jax.data import Dataset
    from bspm_jax.evaluation.fit import fitting_matrix, refit_trained

    R, V = toy(), toy(5)
    V = sp.csr_matrix(V - V.multiply(R))
    ds = Dataset(R, sp.csr_matrix(V.shape, dtype=np.float32), "toy", valid=V)
    best = NeuMF(pretrain=True, part_epochs=(2, 1), **PRE).init(jax.random.key(0), R).with_train(R)  # a run's best model
    refit = refit_trained(best, ds, SETTINGS, epochs, tmp_path, resume=True)
    both = fitting_matrix(ds, True)
    key = jax.random.fold_in(jax.random.key(SETTINGS.seed), 0)
    parts = [train(part, both, dataclasses.replace(SETTINGS, seed=part_seed(key, n), epochs=e)).model
             for n, (part, e) in enumerate(((GMF(factors=4, negatives=2), 2), (MLP(layers=(8, 4), negatives=2), 1)), 1)]
    fused = dataclasses.replace(neumf_from_parts(NeuMF(pretrain=True, **PRE), *parts), part_epochs=(2, 1))
    assert [checkpoint_info(tmp_path / sub)["epoch"] for sub in ("gmf", "mlp")] == [2, 1]
    if epochs == 0:
        assert refit.epochs_run == 0 and same(refit.model, fused.with_train(both))
    else:
        assert refit.epochs_run == 2 and same(refit.model, train(fused, both, dataclasses.replace(SETTINGS, epochs=2)).model)
    assert best.unfitted().config() == best.config() and not best.unfitted().is_fitted


def test_a_pretrained_neumf_with_finetune_lr_is_fine_tuned_by_plain_sgd():
    from bspm_jax.training.optimizer import run_optimizer

    g = {"w": jnp.array([0.3, -2.0, 1e-3])}
    first = lambda opt: opt.update(g, opt.init(g), g)[0]["w"]  # noqa: E731 - the first update of a gradient
    np.testing.assert_allclose(first(run_optimizer(NeuMF(pretrain=True, finetune_lr=0.1), SETTINGS)), -0.1 * g["w"],
                               rtol=1e-6)
    adam_step = -SETTINGS.lr * np.sign(g["w"])  # Adam's first step: -lr g / (|g| + eps)
    for model in (NeuMF(pretrain=True), NeuMF(finetune_lr=0.1), GMF()):  # no fused start to fine-tune: Adam
        np.testing.assert_allclose(first(run_optimizer(model, SETTINGS)), adam_step, rtol=1e-4)


def test_a_pretrained_run_resumed_without_resume_is_refused_in_the_part_folder(tmp_path):
    R = toy()
    with pytest.raises(Interrupt):
        train(NeuMF(pretrain=True, **PRE), R, SETTINGS, interrupting(2), checkpoint_dir=tmp_path)
    assert not (tmp_path / CHECKPOINT).exists() and (tmp_path / "gmf" / CHECKPOINT).is_file()
    with pytest.raises(ConfigError, match=r"gmf.*holds a checkpoint: resume it"):
        train(NeuMF(pretrain=True, **PRE), R, SETTINGS, interrupting(), checkpoint_dir=tmp_path)


# ---------------------------------------------------------------- saving, settings, presets


@pytest.mark.parametrize("cls, settings", CASES)
def test_save_and_load_give_identical_scores(tmp_path, cls, settings):
    R = toy(n_users=N_USERS, n_items=N_ITEMS, p=0.3)
    model = tiny(cls, **settings).with_train(R)
    model.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert type(back) is cls and back.config() == model.config() and same(back, model)
    users = jnp.arange(N_USERS)
    np.testing.assert_array_equal(np.asarray(back.score_users(users)), np.asarray(model.score_users(users)))


@pytest.mark.parametrize("name, settings, message", [
    ("gmf", {"factors": 0}, "factors"), ("gmf", {"factors": 2.0}, "factors"),
    ("gmf", {"negatives": 0}, "negatives"), ("mlp", {"negatives": 1.5}, "negatives"),
    ("neumf", {"negatives": True}, "negatives"),
    ("gmf", {"reg": -1.0}, "reg"), ("mlp", {"reg": float("nan")}, "reg"),
    ("neumf", {"init_scale": 0.0}, "init_scale"), ("mlp", {"init_scale": float("inf")}, "init_scale"),
    ("mlp", {"layers": [63, 32]}, r"layers\[0\]"), ("mlp", {"layers": []}, "layers"),
    ("mlp", {"layers": [64, 0]}, "layers"), ("neumf", {"layers": [64, 2.5]}, "layers"),
    ("neumf", {"layers": 64}, "layers"), ("neumf", {"factors": -1}, "factors"),
    ("neumf", {"pretrain": "yes"}, "pretrain"), ("neumf", {"alpha": 1.5}, "alpha"),
    ("neumf", {"alpha": -0.1}, "alpha"), ("mlp", {"factors": 8}, "has no setting factors"),
    ("neumf", {"part_epochs": [3]}, "part_epochs"), ("neumf", {"part_epochs": [3, 0]}, "part_epochs"),
    ("neumf", {"part_epochs": [3, 2.0]}, "part_epochs"), ("neumf", {"finetune_lr": 0.0}, "finetune_lr"),
    ("neumf", {"loss": "hinge"}, "loss must be one of bce, bpr, got 'hinge'"),
    ("gmf", {"sampling": "users"}, "sampling = 'users' needs loss = 'bpr'"),
    ("mlp", {"loss": "bpr", "sampling": "user"}, "sampling must be one of pairs, users"),
])
def test_impossible_settings_are_refused(name, settings, message):
    with pytest.raises(ConfigError, match=message):
        make_model(name, **settings)


def test_the_sampler_refuses_impossible_inputs():
    with pytest.raises(ConfigError, match="negatives"):
        NegativeSampler.from_matrix(toy(), 0)
    R = sp.csr_matrix(np.vstack([toy().toarray(), np.ones((1, 20), np.float32)]))
    with pytest.raises(ConfigError, match="user 30 has interacted with every item"):
        NegativeSampler.from_matrix(R)


def test_registry_and_preset():
    assert {MODELS[name][0] for name in ("gmf", "mlp", "neumf")} == {GMF, MLP, NeuMF}
    preset = get_preset("ml1m-neumf")
    model = make_model(preset.model_name, **preset.model_settings)
    assert isinstance(model, NeuMF) and model.layers == (64, 32, 16, 8) and model.factors == 8
    assert (model.negatives, model.pretrain, model.reg, model.init_scale) == (4, False, 0.0, 0.01)
    settings = TrainSettings.from_table(preset["train"])
    assert (settings.lr, settings.batch_size) == (0.001, 256) and "He et al." in preset.description
    import bspm_jax

    assert bspm_jax.NeuMF is NeuMF and bspm_jax.GMF is GMF and bspm_jax.MLP is MLP
