"""Training of MF-BPR: loss and gradient against closed forms, sampler invariants, early stopping,
divergence, refusals, checkpoints (round trip, corruption, SIGKILL and resume), curves, config."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.sparse as sp

from bspm_jax.config import Config, get_preset
from bspm_jax.errors import BSPMError, ConfigError, TrainingError
from bspm_jax.models import MFBPR, make_model
from bspm_jax.ranking import rank_rows, recommend_indices
from bspm_jax.figures.curves import plot_curves
from bspm_jax.training import (
    CHECKPOINT,
    BPRLoss,
    PairSampler,
    UserPairSampler,
    TrainSettings,
    TrainState,
    bpr_loss,
    checkpoint_info,
    epoch_key,
    fingerprint,
    init_optimizer,
    load_checkpoint,
    save_checkpoint,
    stacked_batches,
    train,
    train_step,
    train_steps,
    write_curves,
)

from oracles import leaves, resume_matches_whole, same, toy
from helpers import TESTS, sample



def small_model(dim: int = 4, reg: float = 0.1, n_users: int = 5, n_items: int = 7) -> MFBPR:
    return MFBPR(dim=dim, reg=reg, init_scale=0.5).init(jax.random.key(1), sp.csr_matrix((n_users, n_items)))


KEY = jax.random.key(0)
BATCH = (np.array([0, 1, 1, 4, 2]), np.array([0, 3, 5, 6, 2]), np.array([1, 2, 0, 0, 6]))


# ---------------------------------------------------------------- loss and gradient


def test_bpr_loss_matches_numpy_closed_form():
    model = small_model()
    P, Q = np.asarray(model.user_embedding, np.float64), np.asarray(model.item_embedding, np.float64)
    u, i, j = BATCH
    d = np.sum(P[u] * Q[i], 1) - np.sum(P[u] * Q[j], 1)
    expected = np.mean(np.log1p(np.exp(-d))) + 0.1 / 2 * np.mean(
        np.sum(P[u] ** 2, 1) + np.sum(Q[i] ** 2, 1) + np.sum(Q[j] ** 2, 1))
    got = bpr_loss(model, *(jnp.asarray(a) for a in BATCH))
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)


def hand_gradient(P: np.ndarray, Q: np.ndarray, reg: float, u: np.ndarray, i: np.ndarray, j: np.ndarray):
    """d loss / d (P, Q) by hand: g_n = -sigmoid(-d_n) / b; dp_u = g (q_i - q_j) + reg p_u / b, ..."""
    b = len(u)
    d = np.sum(P[u] * (Q[i] - Q[j]), 1)
    g = -1.0 / (1.0 + np.exp(d)) / b
    dP, dQ = np.zeros_like(P), np.zeros_like(Q)
    for n in range(b):
        dP[u[n]] += g[n] * (Q[i[n]] - Q[j[n]]) + reg * P[u[n]] / b
        dQ[i[n]] += g[n] * P[u[n]] + reg * Q[i[n]] / b
        dQ[j[n]] += -g[n] * P[u[n]] + reg * Q[j[n]] / b
    return dP, dQ


def test_sgd_step_follows_the_hand_derived_gradient():
    model, lr = small_model(), 0.3
    P, Q = np.asarray(model.user_embedding, np.float64), np.asarray(model.item_embedding, np.float64)
    dP, dQ = hand_gradient(P, Q, 0.1, *BATCH)
    sgd = optax.sgd(lr)
    new, _, loss = train_step(model, init_optimizer(sgd, model), sgd, BPRLoss(), tuple(jnp.asarray(a) for a in BATCH), KEY)
    np.testing.assert_allclose(np.asarray(new.user_embedding), P - lr * dP, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new.item_embedding), Q - lr * dQ, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(loss), float(bpr_loss(model, *map(jnp.asarray, BATCH))), rtol=1e-6)


def test_gradient_matches_central_finite_differences():
    model = small_model(dim=3, reg=0.05)
    batch = tuple(jnp.asarray(a) for a in BATCH)
    grads = eqx.filter_grad(bpr_loss)(model, *batch)
    with jax.enable_x64(True):
        P, Q = (jnp.asarray(np.asarray(a), jnp.float64) for a in (model.user_embedding, model.item_embedding))
        f = lambda P, Q: float(bpr_loss(dataclasses.replace(model, user_embedding=P, item_embedding=Q), *batch))
        eps = 1e-6
        for (r, c) in [(1, 0), (4, 2), (0, 1)]:
            e = jnp.zeros_like(P).at[r, c].set(eps)
            fd = (f(P + e, Q) - f(P - e, Q)) / (2 * eps)
            np.testing.assert_allclose(float(grads.user_embedding[r, c]), fd, rtol=1e-4, atol=1e-7)
        for (r, c) in [(0, 0), (6, 2), (3, 1)]:
            e = jnp.zeros_like(Q).at[r, c].set(eps)
            fd = (f(P, Q + e) - f(P, Q - e)) / (2 * eps)
            np.testing.assert_allclose(float(grads.item_embedding[r, c]), fd, rtol=1e-4, atol=1e-7)


def test_scanned_steps_equal_steps_one_by_one():
    model, adam = small_model(), optax.adam(0.05)
    rng = np.random.default_rng(0)
    stacked = tuple(jnp.asarray(rng.integers(0, n, (3, 4))) for n in (5, 7, 7))
    keys = jax.random.split(KEY, 3)
    m1, s1, losses = train_steps(model, init_optimizer(adam, model), adam, BPRLoss(), stacked, keys)
    m2, s2 = model, init_optimizer(adam, model)
    for k in range(3):
        m2, s2, loss = train_step(m2, s2, adam, BPRLoss(), tuple(a[k] for a in stacked), keys[k])
        np.testing.assert_allclose(float(losses[k]), float(loss), rtol=1e-6)
    for x, y in zip(leaves((m1, s1)), leaves((m2, s2))):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- sampler


def test_sampler_covers_every_pair_once_with_unseen_negatives_deterministically():
    R = toy(n_items=12, p=0.6)  # dense rows: many rejections
    sampler = PairSampler.from_matrix(R)
    key = jax.random.key(5)
    users, pos, neg = sampler.epoch(epoch_key(key, 1))
    truth = set(zip(*R.nonzero()))
    assert sorted(zip(users.tolist(), pos.tolist())) == sorted((int(a), int(b)) for a, b in truth)
    assert len(users) == R.nnz
    assert not any((int(u), int(j)) in truth for u, j in zip(users, neg))
    assert neg.min() >= 0 and neg.max() < R.shape[1]
    again = sampler.epoch(epoch_key(key, 1))
    assert all(np.array_equal(a, b) for a, b in zip((users, pos, neg), again))
    other = sampler.epoch(epoch_key(key, 2))
    assert not np.array_equal(users * 100 + pos, other[0] * 100 + other[1])
    batches = list(sampler.batches(epoch_key(key, 1), 16))
    assert [len(b[0]) for b in batches] == [16] * (R.nnz // 16) + ([R.nnz % 16] if R.nnz % 16 else [])
    assert all(np.array_equal(np.concatenate([b[k] for b in batches]), (users, pos, neg)[k]) for k in range(3))
    full, rest = stacked_batches((users, pos, neg), 16)
    assert full[0].shape == (R.nnz // 16, 16) and rest[0].shape == (R.nnz % 16,)


def test_sampler_negatives_are_uniform_over_unseen_items():
    R = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0]] * 1, np.float32))
    R = sp.vstack([R] * 3000).tocsr()
    _, _, neg = PairSampler.from_matrix(R).epoch(jax.random.key(0))
    counts = np.bincount(neg, minlength=6)
    assert counts[:2].sum() == 0
    np.testing.assert_allclose(counts[2:] / neg.size, 0.25, atol=0.02)


def test_sampler_refuses_a_user_who_saw_every_item():
    R = toy()
    R = sp.csr_matrix(np.vstack([R.toarray(), np.ones((1, R.shape[1]), np.float32)]))
    with pytest.raises(ConfigError, match="user 30 has interacted with every item"):
        PairSampler.from_matrix(R)


def test_user_first_sampler_draws_users_uniformly_then_one_of_their_items():
    # users 0..3 with 1, 2, 4 and 8 items (of 20), user 4 with none: draws weigh users equally, not pairs
    rows = [list(range(n)) for n in (1, 2, 4, 8)] + [[]]
    R = sp.csr_matrix((np.ones(15, np.float32), np.concatenate(rows), np.cumsum([0] + [len(r) for r in rows])),
                      shape=(5, 20))
    sampler = UserPairSampler.from_matrix(sp.vstack([R] * 400).tocsr())  # 2,000 users, 6,000 pairs
    users, pos, neg = sampler.epoch(epoch_key(jax.random.key(7), 1))
    assert len(users) == sampler.n_pairs == 6000 and users.dtype == pos.dtype == neg.dtype == np.int32
    kind = users % 5
    np.testing.assert_allclose(np.bincount(kind, minlength=5) / users.size, [0.25, 0.25, 0.25, 0.25, 0.0], atol=0.02)
    truth = sampler.seen(users, pos)
    assert truth.all() and not sampler.seen(users, neg).any()
    for k, n in enumerate((1, 2, 4, 8)):  # the positive is uniform over the user's items
        np.testing.assert_allclose(np.bincount(pos[kind == k], minlength=n) / np.sum(kind == k), 1 / n, atol=0.04)
    again = sampler.epoch(epoch_key(jax.random.key(7), 1))
    assert all(np.array_equal(a, b) for a, b in zip((users, pos, neg), again))


def test_a_bpr_model_trains_on_the_sampler_its_sampling_setting_names():
    from bspm_jax.models import PAIR_SAMPLINGS, LightGCN
    from bspm_jax.training import objective
    from bspm_jax.training.sampling import PAIR_SAMPLERS

    assert tuple(PAIR_SAMPLERS) == PAIR_SAMPLINGS
    R = toy()
    assert type(objective(MFBPR(), R).sampler) is PairSampler
    assert type(objective(LightGCN(sampling="users"), R).sampler) is UserPairSampler
    assert make_model("lightgcn", sampling="users").config()["sampling"] == "users"
    with pytest.raises(ConfigError, match="sampling must be one of pairs, users, got 'user'"):
        MFBPR(sampling="user")
    settings = TrainSettings(epochs=3, lr=0.05, batch_size=16, seed=4)
    a = train(MFBPR(dim=4, sampling="users"), R, settings)
    b = train(MFBPR(dim=4, sampling="users"), R, settings)
    c = train(MFBPR(dim=4), R, settings)
    assert same(a.model, b.model) and not same(a.model, c.model)


# ---------------------------------------------------------------- the loop


def scripted(values: list[float], seen: list[MFBPR]):
    def validate(model: MFBPR) -> dict[str, float]:
        seen.append(model)
        return {"recall@20": values[len(seen) - 1], "ndcg@20": 0.0}
    return validate


def test_early_stopping_stops_at_the_right_epoch_and_returns_the_best_parameters():
    R = toy()
    settings = TrainSettings(epochs=20, lr=0.01, batch_size=32, eval_every=1, patience=3, seed=2)
    seen: list[MFBPR] = []
    result = train(MFBPR(dim=4), R, settings, scripted([0.1, 0.3, 0.2, 0.3, 0.25, 0.9], seen))
    assert (result.epochs_run, result.best_epoch, result.best_metric) == (5, 2, 0.3)
    assert result.stopped_early and len(seen) == 5
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5]
    assert [row["recall@20"] for row in result.history] == [0.1, 0.3, 0.2, 0.3, 0.25]
    assert same(result.model, seen[1])
    two = train(MFBPR(dim=4), R, dataclasses.replace(settings, epochs=2))  # an independent run to epoch 2
    assert same(result.model, two.model) and two.epochs_run == 2 and not two.stopped_early


def test_validation_every_few_epochs_and_patience_counts_validations():
    R = toy()
    settings = TrainSettings(epochs=9, lr=0.01, batch_size=32, eval_every=2, patience=2, seed=2)
    seen: list[MFBPR] = []
    values = [0.5, 0.6, 0.4, 0.3, 0.9]  # after epochs 2, 4, 6, 8 and the last (9)
    result = train(MFBPR(dim=4), R, settings, scripted(values, seen))
    assert [r["epoch"] for r in result.history if "recall@20" in r] == [2, 4, 6, 8]  # 2 validations worse than 0.6
    assert (result.epochs_run, result.best_epoch, result.best_metric) == (8, 4, 0.6) and same(result.model, seen[1])
    seen2: list[MFBPR] = []
    r2 = train(MFBPR(dim=4), R, dataclasses.replace(settings, patience=5), scripted(values, seen2))
    assert [r["epoch"] for r in r2.history if "recall@20" in r] == [2, 4, 6, 8, 9]
    assert (r2.epochs_run, r2.best_epoch, r2.stopped_early) == (9, 9, False)


def test_training_lowers_the_loss_and_is_deterministic_for_a_seed():
    R = toy()
    settings = TrainSettings(epochs=15, lr=0.05, batch_size=16, seed=4)
    a = train(MFBPR(dim=8, reg=1e-4), R, settings)
    b = train(MFBPR(dim=8, reg=1e-4), R, settings)
    c = train(MFBPR(dim=8, reg=1e-4), R, dataclasses.replace(settings, seed=5))
    assert a.history[-1]["loss"] < 0.5 * a.history[0]["loss"]
    assert same(a.model, b.model) and not same(a.model, c.model)


class NaNUser(MFBPR):
    """MF-BPR whose user 3 has NaN embeddings."""

    def init(self, key, train):
        model = super().init(key, train)
        return dataclasses.replace(model, user_embedding=model.user_embedding.at[3].set(jnp.nan))


def test_a_nan_loss_stops_naming_the_epoch_and_the_step():
    R, batch = toy(), 8
    settings = TrainSettings(epochs=3, batch_size=batch, seed=6)
    users, _, _ = PairSampler.from_matrix(R).epoch(epoch_key(jax.random.key(6), 1))
    step = int(np.flatnonzero(users == 3)[0]) // batch + 1
    n_steps = -(-R.nnz // batch)
    with pytest.raises(TrainingError, match=rf"at epoch 1, step {step} of {n_steps}") as err:
        train(NaNUser(dim=4), R, settings)
    assert isinstance(err.value, BSPMError) and "nan" in str(err.value)


def test_a_huge_learning_rate_stops_with_a_training_error():
    with pytest.raises(TrainingError, match=r"at epoch \d+, step \d+"):
        train(MFBPR(dim=4), toy(), TrainSettings(epochs=50, lr=1e30, batch_size=8))


@pytest.mark.parametrize("changes, message", [
    ({"lr": 0}, "train.lr must be a finite number > 0"),
    ({"lr": -1e-3}, "train.lr"),
    ({"lr": float("nan")}, "train.lr"),
    ({"batch_size": 0}, "train.batch_size must be an integer >= 1"),
    ({"batch_size": 2.5}, "train.batch_size"),
    ({"epochs": 0}, "train.epochs"),
    ({"eval_every": 0}, "train.eval_every"),
    ({"patience": 0}, "train.patience"),
    ({"checkpoint_every": 0}, "train.checkpoint_every"),
    ({"seed": -1}, "train.seed"),
    ({"metric": "recall"}, "train.metric must be recall"),
    ({"metric": "recall@0"}, "train.metric must be recall"),
    ({"metric": "@20"}, "train.metric must be recall"),
])
def test_impossible_settings_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainSettings(**changes)


@pytest.mark.parametrize("settings, message", [
    ({"dim": 0}, "dim"), ({"dim": 2.0}, "dim"), ({"reg": -1.0}, "reg"),
    ({"init_scale": float("inf")}, "init_scale"), ({"init_scale": 0.0}, "init_scale"),
])
def test_impossible_model_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        make_model("mf-bpr", **settings)


def test_other_refusals():
    R = toy()
    with pytest.raises(ConfigError, match="TrainSettings"):
        train(MFBPR(), R, {"epochs": 1})
    with pytest.raises(ConfigError, match="not trained by gradient descent"):
        train(make_model("popularity"), R, TrainSettings(epochs=1))
    with pytest.raises(ConfigError, match="validate returned no 'recall@20'"):
        train(MFBPR(dim=2), R, TrainSettings(epochs=1), lambda m: {"ndcg@20": 0.1})
    assert not hasattr(MFBPR(), "fit")  # trained models are trained, not fitted in closed form
    with pytest.raises(ConfigError, match="unknown key optimizer in \\[train\\]"):
        TrainSettings.from_table({"optimizer": "sgd"})


def test_recommend_ranks_unseen_items_by_dot_product():
    R = toy()
    model = train(MFBPR(dim=4), R, TrainSettings(epochs=2, batch_size=16)).model
    users = np.array([0, 7, 29, 3])
    items, scores = recommend_indices(model, R, users=users, k=5, batch_size=3)
    S = np.asarray(model.user_embedding)[users] @ np.asarray(model.item_embedding).T
    S[R[users].toarray() > 0] = -np.inf
    expected = np.argsort(-S, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(items, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(S, expected, 1), rtol=1e-5)
    with pytest.raises(ConfigError, match="new users .* cannot be scored"):
        rank_rows(model, R[:2], 5)  # rows without user indices
    with pytest.raises(ConfigError, match="new users .* cannot be scored"):
        rank_rows(model, R[:2], 5, users=np.array([0, R.shape[0]]))


# ---------------------------------------------------------------- checkpoints


def fresh_state(R: sp.csr_matrix, seed: int = 0) -> tuple[TrainState, MFBPR]:
    model = MFBPR(dim=3).init(jax.random.key(seed), R).with_train(R)
    return TrainState(model, init_optimizer(optax.adam(0.01), model), jax.random.key(seed), best_model=model), model


def test_checkpoint_round_trip(tmp_path):
    R, settings = toy(), TrainSettings(epochs=4)
    like, model = fresh_state(R)
    adam = optax.adam(0.01)
    m, s, _ = train_step(model, like.opt_state, adam, BPRLoss(), tuple(jnp.asarray(a) for a in BATCH), KEY)
    state = TrainState(m, s, jax.random.key(9), epoch=3, best_model=model, best_metric=0.25, best_epoch=2,
                       bad_evals=1, history=({"epoch": 1, "loss": 0.7, "seconds": 0.1},), seconds=1.5)
    stamp = fingerprint(model, R, settings)
    path = save_checkpoint(tmp_path, state, stamp)
    assert path == tmp_path / CHECKPOINT and sorted(os.listdir(tmp_path)) == [CHECKPOINT]
    back = load_checkpoint(tmp_path, like, stamp)
    assert same((back.model, back.opt_state, back.best_model), (state.model, state.opt_state, state.best_model))
    assert np.array_equal(jax.random.key_data(back.key), jax.random.key_data(state.key))
    assert (back.epoch, back.best_metric, back.best_epoch, back.bad_evals, back.history, back.seconds, back.finished) == (
        3, 0.25, 2, 1, state.history, 1.5, False)
    assert checkpoint_info(tmp_path)["epoch"] == 3 and checkpoint_info(tmp_path / "none") is None
    with np.load(path, allow_pickle=False) as z:  # loads without pickle
        assert "meta" in z.files
    other = fingerprint(model, R, dataclasses.replace(settings, lr=0.5))
    with pytest.raises(ConfigError, match=rf"checkpoint {path} is from another run \(settings"):
        load_checkpoint(tmp_path, like, other)
    with pytest.raises(ConfigError, match="from another run \\(data"):
        load_checkpoint(tmp_path, like, fingerprint(model, toy(seed=1), settings))


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_a_damaged_checkpoint_is_refused_naming_it(tmp_path, damage):
    R, settings = toy(), TrainSettings(epochs=3, batch_size=16)
    train(MFBPR(dim=3), R, dataclasses.replace(settings, epochs=1), checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT
    data = path.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        middle = len(data) // 3
        data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
    elif damage == "garbage":
        data = b"not a checkpoint" * 10
    else:
        data = b""
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=rf"checkpoint {path} is corrupted"):
        train(MFBPR(dim=3), R, dataclasses.replace(settings, epochs=1), checkpoint_dir=tmp_path, resume=True)
    assert path.read_bytes() == data  # left as it was


def test_checkpoint_folder_rules(tmp_path):
    R, settings = toy(), TrainSettings(epochs=2, batch_size=16)
    train(MFBPR(dim=3), R, settings, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(ConfigError, match="holds a checkpoint: resume it"):
        train(MFBPR(dim=3), R, settings, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(ConfigError, match="from another run \\(model"):
        train(MFBPR(dim=4), R, settings, checkpoint_dir=tmp_path / "ck", resume=True)
    done = train(MFBPR(dim=3), R, settings, checkpoint_dir=tmp_path / "ck", resume=True)  # finished: nothing to do
    assert done.resumed_from == 2 and done.epochs_run == 2
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ConfigError, match="is a file"):
        train(MFBPR(dim=3), R, settings, checkpoint_dir=tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"
    with pytest.raises(ConfigError, match="needs a checkpoint folder"):
        train(MFBPR(dim=3), R, settings, resume=True)


def _drop_model_setting(folder: Path, key: str) -> None:
    """Rewrite the checkpoint in ``folder`` as one written before the model had the setting ``key``."""
    path = folder / CHECKPOINT
    with np.load(path) as z:
        arrays = {n: z[n] for n in z.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    del meta["fingerprint"]["model"][key]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_a_checkpoint_from_before_a_setting_existed_resumes_only_with_its_default(tmp_path):
    R = toy()
    settings = TrainSettings(epochs=4, lr=0.05, batch_size=16, seed=1)
    whole = train(MFBPR(dim=4), R, settings)
    cut = train(MFBPR(dim=4), R, settings, checkpoint_dir=tmp_path, time_limit=1e-9)
    assert cut.interrupted and checkpoint_info(tmp_path)["epoch"] == 1
    _drop_model_setting(tmp_path, "sampling")
    with pytest.raises(ConfigError, match="from another run .*'sampling': 'pairs'.*'sampling': 'users'"):
        train(MFBPR(dim=4, sampling="users"), R, settings, checkpoint_dir=tmp_path, resume=True)
    resumed = train(MFBPR(dim=4), R, settings, checkpoint_dir=tmp_path, resume=True)
    assert resumed.resumed_from == 1 and same(resumed.model, whole.model)


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path):
    settings = TrainSettings(epochs=6, lr=0.05, batch_size=16, checkpoint_every=2, seed=1)
    probe = lambda model: np.sum(np.asarray(model.user_embedding)[:3])  # noqa: E731 (deterministic in the model)
    whole, resumed = resume_matches_whole(MFBPR(dim=4), toy(), settings, probe, tmp_path)  # from epoch 4's checkpoint
    assert (resumed.best_epoch, resumed.best_metric) == (whole.best_epoch, whole.best_metric)


@pytest.mark.parametrize("name", ["mf-bpr", "lightgcn", "mult-vae", "mult-dae", "neumf", "giffcf"])
def test_sigkill_and_resume_gives_bit_identical_parameters(tmp_path, name):
    """Each trained model (NeuMF with its GMF and MLP pre-training) killed after epoch 2, resumed: same as one run."""
    script = TESTS / "_train_run.py"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen([sys.executable, str(script), name, str(killed), str(tmp_path / "never.npz"), "3"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            info = checkpoint_info(killed) if (killed / CHECKPOINT).is_file() else None
            if info is not None and info["epoch"] >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint_info(killed)["epoch"] == 2 and not (tmp_path / "never.npz").exists()
    subprocess.run([sys.executable, str(script), name, str(killed), str(tmp_path / "resumed.npz")], env=env, check=True)
    subprocess.run([sys.executable, str(script), name, str(whole), str(tmp_path / "whole.npz")], env=env, check=True)
    with np.load(tmp_path / "resumed.npz") as a, np.load(tmp_path / "whole.npz") as b:
        assert int(a["resumed_from"]) == 2 and int(b["resumed_from"]) == 0
        assert sorted(a.files) == sorted(b.files)
        assert all(np.array_equal(a[n], b[n]) for n in a.files if n != "resumed_from")
    with np.load(killed / CHECKPOINT) as a, np.load(whole / CHECKPOINT) as b:  # final model, Adam state, best model
        leaves = [n for n in a.files if n.startswith("leaf_")]
        assert leaves and sorted(leaves) == sorted(n for n in b.files if n.startswith("leaf_"))
        assert all(a[n].dtype == b[n].dtype and np.array_equal(a[n], b[n]) for n in leaves)
    ca, cb = checkpoint_info(killed), checkpoint_info(whole)
    assert [r.get("loss") for r in ca["history"]] == [r.get("loss") for r in cb["history"]]  # no loss at epoch 0
    assert [r["recall@5"] for r in ca["history"]] == [r["recall@5"] for r in cb["history"]]


# ---------------------------------------------------------------- curves and config


def test_learning_curves_are_written_as_training_goes(tmp_path):
    R = toy()
    settings = TrainSettings(epochs=4, batch_size=16, eval_every=2)
    result = train(MFBPR(dim=3), R, settings, lambda m: {"recall@20": 0.5, "ndcg@20": 0.25}, out_dir=tmp_path / "out")
    lines = (tmp_path / "out" / "learning_curve.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,seconds,step_seconds,recall@20,ndcg@20"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3", "4"]
    assert lines[1].endswith(",,") and lines[2].endswith(",0.5,0.25")
    assert float(lines[1].split(",")[1]) == result.history[0]["loss"]
    logged = json.loads((tmp_path / "out" / "learning_curve.json").read_text())
    assert logged["history"] == result.history and logged["fingerprint"]["settings"]["eval_every"] == 2
    pytest.importorskip("matplotlib")
    paths = plot_curves(result.history, tmp_path / "out" / "curve")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in paths[1].read_bytes()[:2000]
    assert write_curves([], tmp_path)[0].read_text() == "epoch,loss,seconds,step_seconds\n"


def test_train_table_in_configs_and_overrides():
    config = Config({}).with_overrides(["train.lr=0.01", "train.epochs=7", "train.metric=\"ndcg@10\""])
    settings = TrainSettings.from_table(config["train"])
    assert (settings.lr, settings.epochs, settings.metric, settings.batch_size) == (0.01, 7, "ndcg@10", 1024)
    assert TrainSettings.from_table({}) == TrainSettings()
    with pytest.raises(ConfigError, match="unknown key optimizer in \\[train\\]"):
        Config({}).with_overrides(["train.optimizer=1"])
    preset = get_preset("ml1m-mf-bpr")
    model = make_model(preset.model_name, **preset.model_settings)
    assert isinstance(model, MFBPR) and preset.description
    TrainSettings.from_table(preset["train"])


def test_tune_refuses_a_trained_model():
    from bspm_jax.tuning import tune

    with pytest.raises(ConfigError, match="bspm tune searches training-free models"):
        tune("mf-bpr", {}, {"dim": [8, 16]}, sample())


def _lightgcn_folder(folder: Path, seed: int = 0) -> Path:
    """A small LightGCN folder with train, valid and test files (each user has items in all three)."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    lines = {"train": [], "valid": [], "test": []}
    for u in range(60):
        items = rng.choice(40, 9, replace=False)
        for split, part in zip(lines, (items[:5], items[5:7], items[7:])):
            lines[split].append(" ".join(map(str, [u, *part])))
    for split, rows in lines.items():
        (folder / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return folder


def test_cli_trains_early_stopped_on_validation_saves_and_loads(tmp_path, capsys):
    from bspm_jax.cli import main

    data = _lightgcn_folder(tmp_path / "data")
    out, saved, loaded = tmp_path / "run.json", tmp_path / "model", tmp_path / "load.json"
    common = ["--data", str(data), "--model", "mf-bpr", "--set", "dim=8", "--set", "train.epochs=4",
              "--set", "train.batch_size=64", "--set", "train.eval_every=2", "--quiet"]
    code = main(["run", *common, "--train-dir", str(tmp_path / "t"), "--json", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert "training 4 epochs" in printed
    result = json.loads(out.read_text())
    record = result["training"]
    assert record["epochs_run"] == 4 and record["best_epoch"] in (2, 4) and record["settings"]["epochs"] == 4
    assert result["config"]["train"]["batch_size"] == 64 and result["dataset"]["n_valid"] == 120
    curve = json.loads((tmp_path / "t" / "learning_curve.json").read_text())
    rows = curve["history"] if isinstance(curve, dict) else curve
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert record["best_validation"]["recall@20"] == max(r["recall@20"] for r in rows if "recall@20" in r)
    assert main(["fit", *common, "--save", str(saved)]) == 0
    assert main(["run", "--load", str(saved), "--json", str(loaded), "--quiet"]) == 0
    assert json.loads(loaded.read_text())["metrics"] == result["metrics"]  # same seed, same training, same scores


def test_refit_with_valid_retrains_on_train_and_validation_for_the_best_epoch_count():
    from bspm_jax.data import Dataset
    from bspm_jax.data.sparse import matrix_digest
    from bspm_jax.evaluation.fit import FitOptions, fitting_matrix, fit_model

    R, V, T = toy(1), toy(2, p=0.05), toy(3, p=0.05)
    V = sp.csr_matrix(V - V.multiply(R))
    T = sp.csr_matrix(T - T.multiply((R + V) > 0))
    ds = Dataset(R, T, "toy", valid=V)
    s = TrainSettings(epochs=6, lr=0.05, batch_size=16, eval_every=1, patience=2, seed=3)
    first, record = fit_model(MFBPR(dim=4), ds, FitOptions(train=s))
    refit, record2 = fit_model(MFBPR(dim=4), ds, FitOptions(refit_with_valid=True, train=s))
    assert record2["best_epoch"] == record["best_epoch"] and record2["refit_with_valid"]["epochs"] == record["best_epoch"]
    both = fitting_matrix(ds, True)
    assert refit.fitted_on.digest == matrix_digest(both) != first.fitted_on.digest
    alone = train(MFBPR(dim=4), both, dataclasses.replace(s, epochs=record["best_epoch"])).model
    assert same(refit, alone)


def test_refit_stopped_by_its_time_limit_resumes_to_the_uninterrupted_model(tmp_path):
    from bspm_jax.data import Dataset
    from bspm_jax.evaluation.fit import fitting_matrix, refit_trained

    R, V, T = toy(1), toy(2, p=0.05), toy(3, p=0.05)
    V = sp.csr_matrix(V - V.multiply(R))
    ds = Dataset(R, sp.csr_matrix(T - T.multiply((R + V) > 0)), "toy", valid=V)
    s = TrainSettings(epochs=50, lr=0.05, batch_size=16, seed=3, checkpoint_every=2)
    cut = refit_trained(MFBPR(dim=4), ds, s, 5, tmp_path, resume=True, time_limit=1e-9)
    assert cut.interrupted and cut.epochs_run == 1  # stops after the first epoch past the limit, checkpointed
    done = refit_trained(MFBPR(dim=4), ds, s, 5, tmp_path, resume=True)
    assert not done.interrupted and done.epochs_run == 5 and done.resumed_from == 1
    alone = train(MFBPR(dim=4), fitting_matrix(ds, True), dataclasses.replace(s, epochs=5)).model
    assert same(done.model, alone)


def _probe_metric(model) -> dict[str, float]:
    """A deterministic validation metric of an MF-BPR model (the first user's first embedding value)."""
    return {"recall@20": float(np.asarray(model.user_embedding)[0, 0])}


def test_restarts_train_each_start_then_the_best_start_whole(tmp_path):
    from bspm_jax.training.settings import restart_seed

    R = toy()
    settings = TrainSettings(epochs=6, lr=0.05, batch_size=16, seed=2, restarts=3, restart_epochs=2)
    assert [restart_seed(settings, n) for n in range(3)][0] == 2
    seeds = [restart_seed(settings, n) for n in range(3)]
    assert len(set(seeds)) == 3 and all(0 <= s < 2**31 for s in seeds)
    assert seeds[1:] != [restart_seed(dataclasses.replace(settings, seed=3), n) for n in (1, 2)]
    starts = [train(MFBPR(dim=4), R, dataclasses.replace(settings, seed=s, epochs=2, restarts=1), _probe_metric)
              for s in seeds]  # each start alone, 2 epochs: what the restarts must compare
    best = int(np.argmax([r.best_metric for r in starts]))
    whole = train(MFBPR(dim=4), R, dataclasses.replace(settings, seed=seeds[best], restarts=1), _probe_metric)
    got = train(MFBPR(dim=4), R, settings, _probe_metric, checkpoint_dir=tmp_path)
    assert [t["seed"] for t in got.restarts] == seeds and [t["chosen"] for t in got.restarts] == [n == best for n in range(3)]
    assert [t["best_metric"] for t in got.restarts] == [r.best_metric for r in starts]
    untimed = lambda history: [{k: v for k, v in r.items() if "seconds" not in k} for r in history]  # noqa: E731
    assert same(got.model, whole.model) and untimed(got.history) == untimed(whole.history)
    assert all((tmp_path / "restarts" / f"start-{n}" / CHECKPOINT).is_file() for n in range(3))
    again = train(MFBPR(dim=4), R, settings, _probe_metric, checkpoint_dir=tmp_path, resume=True)  # nothing retrained
    assert same(again.model, whole.model) and again.resumed_from == got.epochs_run
    with pytest.raises(ConfigError, match="train.restarts chooses a start on validation"):
        train(MFBPR(dim=4), R, settings)


def test_restarts_one_is_the_plain_run_and_old_checkpoints_resume(tmp_path):
    R = toy()
    plain = TrainSettings(epochs=3, lr=0.05, batch_size=16, seed=1)
    assert TrainSettings(epochs=3, lr=0.05, batch_size=16, seed=1, restarts=1, restart_epochs=7).restarts == 1
    whole = train(MFBPR(dim=4), R, plain)
    cut = train(MFBPR(dim=4), R, plain, checkpoint_dir=tmp_path, time_limit=1e-9)
    path = tmp_path / CHECKPOINT  # rewrite it as a checkpoint written before train.restarts existed
    with np.load(path) as z:
        arrays = {n: z[n] for n in z.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    for key in ("restarts", "restart_epochs"):
        del meta["fingerprint"]["settings"][key]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    assert cut.interrupted
    resumed = train(MFBPR(dim=4), R, plain, checkpoint_dir=tmp_path, resume=True)
    assert resumed.resumed_from == 1 and same(resumed.model, whole.model)
    with pytest.raises(ConfigError, match="train.restarts must be an integer >= 1"):
        TrainSettings(restarts=0)
