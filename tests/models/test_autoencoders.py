"""Mult-VAE and Mult-DAE (Liang et al., WWW 2018): the multinomial likelihood, the KL term and its annealing
against NumPy transcriptions, the first layer from the nonzeros against the dense product, gradients against
finite differences (and the native kernel's backward against autodiff), new-user scoring, bit-identical
training and resume, save/load, refused settings, and learning on synthetic data."""

from __future__ import annotations

import dataclasses
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from bspm_jax import MODELS, MultDAE, MultVAE, load_model, make_model

from bspm_jax.runtime import native
from bspm_jax.data import Dataset
from bspm_jax.errors import ConfigError
from bspm_jax.evaluation import evaluate
from bspm_jax.models.autoencoder import AbstractAutoencoder
from bspm_jax.models.mult_vae import kl_divergence
from bspm_jax.filtering.rows import SparseRows
from bspm_jax.training import TrainSettings, UserSampler, objective, train
from bspm_jax.training.losses import MultinomialLoss, multinomial_log_likelihood
from oracles import resume_matches_whole, toy

KERNELS = ["jax", *(["auto"] if native.available() else [])]
SETTINGS = TrainSettings(epochs=3, batch_size=10, lr=1e-2, seed=2)  # 30 users: 3 full batches, one compiled scan
SMALL_VAE = {"hidden": (6,), "latent": 3, "reg": 0.01, "anneal_steps": 100}
SMALL_DAE = {"latent": 4, "reg": 0.01}
# Tests share these settings and the matrix toy() so that they share compiled functions.


def vae(R: sp.csr_matrix | None = None, **settings) -> MultVAE:
    R = toy() if R is None else R
    return MultVAE(**{**SMALL_VAE, **settings}).init(jax.random.key(3), R).with_train(R)


def dae(R: sp.csr_matrix | None = None, **settings) -> MultDAE:
    R = toy() if R is None else R
    return MultDAE(**{**SMALL_DAE, **settings}).init(jax.random.key(4), R).with_train(R)


def f64(layer) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(layer.weight, np.float64), np.asarray(layer.bias, np.float64)


def np_normalized(X: np.ndarray) -> np.ndarray:
    norm = np.sqrt((X**2).sum(1, keepdims=True))
    return np.where(norm > 0, X / np.where(norm > 0, norm, 1), 0)


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def np_vae(model: MultVAE, x: np.ndarray, eps: np.ndarray | None):
    """Liang's Mult-VAE written out for hidden = (h,), from the network's input ``x`` (normalised, dropped out):
    the logits and the KL of each row (eps None: z = mu)."""
    (W0, b0), (W1, b1) = map(f64, model.encoder)
    (W2, b2), (W3, b3) = map(f64, model.decoder)
    out = np.tanh(x @ W0 + b0) @ W1 + b1
    k = model.latent
    mu, logvar = out[:, :k], out[:, k:]
    z = mu if eps is None else mu + np.exp(0.5 * logvar) * eps
    kl = 0.5 * np.sum(-logvar + np.exp(logvar) + mu**2 - 1, axis=1)
    return np.tanh(z @ W2 + b2) @ W3 + b3, kl


def np_dae(model: MultDAE, x: np.ndarray) -> np.ndarray:
    """Liang's Mult-DAE [n_items -> latent -> n_items] written out, from the network's input ``x``: the logits."""
    (W0, b0), (W1, b1) = f64(model.encoder[0]), f64(model.decoder[0])
    return np.tanh(x @ W0 + b0) @ W1 + b1


def np_dropout_mask(rows: SparseRows, key: jax.Array, keep: float) -> np.ndarray:
    """The model's dropout mask on the entries of ``rows`` (drawn as it draws it), as a dense 0/1 matrix."""
    kept = np.asarray(jax.random.bernoulli(key, keep, rows.value.shape))
    valid = np.asarray(rows.row) < rows.n_rows
    mask = np.zeros(rows.shape)
    mask[np.asarray(rows.row)[valid], np.asarray(rows.col)[valid]] = kept[valid]
    return mask


@eqx.filter_jit
def _batch_loss(loss: MultinomialLoss, model: AbstractAutoencoder, users, key, step):
    return loss(model, (users,), key, step)


def batch_loss(loss: MultinomialLoss, model: AbstractAutoencoder, users, key, step):
    """The loss of a batch of user indices, compiled once per model structure (eager calls are slow)."""
    return _batch_loss(loss, model, jnp.asarray(users, jnp.int32), key, jnp.asarray(step, jnp.int32))


@eqx.filter_jit
def batch_rows(loss: MultinomialLoss, users) -> SparseRows:
    """The loss's rows of a batch of user indices (compiled: eager calls are slow)."""
    return loss.rows(jnp.asarray(users, jnp.int32))


def squared_weights(model: AbstractAutoencoder) -> float:
    return sum(float(np.sum(np.asarray(layer.weight, np.float64) ** 2)) for layer in (*model.encoder, *model.decoder))


# ---------------------------------------------------------------- likelihood, KL, annealing


def test_multinomial_log_likelihood_matches_numpy_on_weighted_rows():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(np.where(rng.random((4, 9)) < 0.4, rng.random((4, 9)) + 0.5, 0.0).astype(np.float32))
    logits = rng.normal(size=(4, 9)).astype(np.float32) * 3
    got = np.asarray(multinomial_log_likelihood(jnp.asarray(logits), SparseRows.from_scipy(X)))
    want = np.sum(X.toarray() * np_log_softmax(logits.astype(np.float64)), axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_kl_term_equals_the_gaussian_kl_closed_form():
    mu = np.array([[0.0, 1.5, -0.3]])
    sigma = np.array([[1.0, 0.4, 2.0]])
    want = np.sum(np.log(1 / sigma) + (sigma**2 + mu**2) / 2 - 0.5)
    got = float(kl_divergence(jnp.asarray(mu, jnp.float32), jnp.asarray(np.log(sigma**2), jnp.float32))[0])
    assert got == pytest.approx(want, rel=1e-5)


def test_vae_loss_is_the_annealed_negative_elbo_plus_weight_decay():
    R = toy()
    model = vae(R)  # dropout 0.5, reg 0.01, beta = min(0.2, step / 100)
    loss = MultinomialLoss.from_matrix(R)
    users = np.array([3, 0, 7, 12])
    key = jax.random.key(5)
    k_drop, k_code = jax.random.split(key)  # reconstruct's keys: dropout, then the code's noise
    mask = np_dropout_mask(batch_rows(loss, users), k_drop, 0.5)
    eps = np.asarray(jax.random.normal(k_code, (4, model.latent)), np.float64)
    X = R.toarray()[users].astype(np.float64)
    logits, kl = np_vae(model, np_normalized(X) * mask / 0.5, eps)
    nll = -np.sum(X * np_log_softmax(logits), axis=1)
    for step, beta in [(0, 0.0), (10, 0.1), (19, 0.19), (10**6, 0.2)]:
        assert float(model.divergence_weight(jnp.int32(step))) == pytest.approx(beta, abs=1e-7)
        got = float(batch_loss(loss, model, users, key, step))
        assert got == pytest.approx(np.mean(nll + beta * kl) + 0.01 * squared_weights(model), rel=1e-5)
    constant = MultVAE(anneal_steps=0, anneal_cap=0.3)
    assert float(constant.divergence_weight(jnp.int32(0))) == pytest.approx(0.3)


def test_dae_loss_is_the_multinomial_likelihood_plus_weight_decay_and_ignores_the_step():
    R = toy()
    model = dae(R)  # dropout 0.5, reg 0.01
    loss = MultinomialLoss.from_matrix(R)
    users = np.array([1, 29, 4])
    key = jax.random.key(1)
    mask = np_dropout_mask(batch_rows(loss, users), jax.random.split(key)[0], 0.5)
    X = R.toarray()[users].astype(np.float64)
    logits = np_dae(model, np_normalized(X) * mask / 0.5)
    want = np.mean(-np.sum(X * np_log_softmax(logits), axis=1)) + 0.01 * squared_weights(model)
    for step in (0, 1000):
        assert float(batch_loss(loss, model, users, key, step)) == pytest.approx(want, rel=1e-5)


def test_scores_are_the_logits_of_the_mean_code():
    R = toy()
    X = R.toarray()[:5].astype(np.float64)
    for model, logits in ((vae(R), lambda m, x: np_vae(m, x, None)[0]), (dae(R), np_dae)):
        got = np.asarray(model.score(SparseRows.from_scipy(R[:5])))
        np.testing.assert_allclose(got, logits(model, np_normalized(X)), rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(model.score(SparseRows.from_scipy(R[:5]))), got)  # deterministic


def test_default_settings_are_the_reference_ones():
    v, d = MultVAE(), MultDAE()
    assert (v.hidden, v.latent, v.dropout, v.anneal_cap, v.anneal_steps, v.reg) == ((600,), 200, 0.5, 0.2, 200_000, 0.0)
    assert (d.hidden, d.latent, d.dropout, d.reg) == ((), 200, 0.5, pytest.approx(0.01 / 500))
    R = toy()
    shapes = jax.eval_shape(lambda: MultVAE().init(jax.random.key(0), R))
    assert [layer.weight.shape for layer in shapes.encoder] == [(20, 600), (600, 400)]  # 400 = (mu, logvar)
    assert [layer.weight.shape for layer in shapes.decoder] == [(200, 600), (600, 20)]
    full = MultDAE().init(jax.random.key(0), R)
    assert [layer.weight.shape for layer in (*full.encoder, *full.decoder)] == [(20, 200), (200, 20)]
    weight, bias = np.asarray(full.encoder[0].weight), np.asarray(full.encoder[0].bias)
    limit = np.sqrt(6 / (20 + 200))  # Xavier uniform: U(-limit, limit), sd limit / sqrt(3)
    assert np.abs(weight).max() <= limit and weight.std() == pytest.approx(limit / np.sqrt(3), rel=0.1)
    assert np.abs(bias).max() <= 0.002 and bias.std() == pytest.approx(0.00088, rel=0.2)  # N(0, 0.001^2) cut at 2 sd
    assert MODELS["mult-vae"][0] is MultVAE and MODELS["mult-dae"][0] is MultDAE


# ---------------------------------------------------------------- the first layer from the nonzeros


def test_batch_rows_are_the_users_train_rows_and_repeated_users_are_refused():
    R = toy()
    loss = MultinomialLoss.from_matrix(R)
    users = jnp.asarray([5, 1, 9, 2, 28])
    rows = batch_rows(loss, users)
    np.testing.assert_array_equal(np.asarray(rows.dense()), R.toarray()[np.asarray(users)])
    np.testing.assert_array_equal(np.asarray(rows.indptr()), np.concatenate([[0], np.cumsum(np.diff(R.indptr)[users])]))
    assert rows.value.size == loss.capacity[4] == np.sort(np.diff(R.indptr))[-5:].sum()
    heavy = int(np.argmax(np.diff(R.indptr)))
    assert 3 * np.diff(R.indptr)[heavy] > loss.capacity[2]
    with pytest.raises(Exception, match="repeated"):
        jax.block_until_ready(batch_rows(loss, [heavy] * 3))


@pytest.mark.parametrize("kernel", KERNELS)
def test_first_layer_from_the_nonzeros_equals_the_dense_normalised_product(kernel):
    R = toy()
    model = vae(R, kernel=kernel)
    users = np.array([5, 1, 9, 2, 28, 17])
    rows = batch_rows(MultinomialLoss.from_matrix(R), users)
    key = jax.random.key(2)
    got = np.asarray(eqx.filter_jit(lambda m, r: m.first_layer(m.dropped(m.normalized(r), key)))(model, rows))
    mask = np_dropout_mask(rows, key, 0.5)
    X = R.toarray()[users].astype(np.float64)
    W, b = f64(model.encoder[0])
    np.testing.assert_allclose(got, (np_normalized(X) * mask / 0.5) @ W + b, rtol=1e-5, atol=1e-6)
    assert 0 < mask.sum() < X.sum()  # some entries were dropped, some kept
    # rows to score (SparseRows of the data, dense rows): the same product without dropout
    sparse = np.asarray(model.first_layer(model.normalized(SparseRows.from_scipy(R[users]))))
    dense = np.asarray(model.first_layer(model.normalized(jnp.asarray(X, jnp.float32))))
    np.testing.assert_allclose(sparse, np_normalized(X) @ W + b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dense, sparse, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- gradients


def _loss_of(loss: MultinomialLoss, users, key, step):
    return lambda m: batch_loss(loss, m, users, key, step)


def test_gradient_matches_central_finite_differences():
    R = toy()
    loss = MultinomialLoss.from_matrix(R)
    with jax.enable_x64(True):
        model = jax.tree.map(lambda x: jnp.asarray(np.asarray(x), jnp.float64) if eqx.is_array(x) else x,
                             vae(R, kernel="jax", anneal_cap=1.0, anneal_steps=5))
        f = _loss_of(loss, np.array([0, 4, 11, 23]), jax.random.key(8), 3)  # beta = 0.6, dropout, the code's noise
        grads = eqx.filter_grad(f)(model)
        eps = 1e-6
        for pick, index in [(lambda m: m.encoder[0].weight, (3, 2)), (lambda m: m.encoder[0].bias, (4,)),
                            (lambda m: m.encoder[1].weight, (1, 4)), (lambda m: m.encoder[1].bias, (5,)),
                            (lambda m: m.decoder[0].weight, (2, 0)), (lambda m: m.decoder[1].weight, (5, 7)),
                            (lambda m: m.decoder[1].bias, (11,))]:
            leaf = np.asarray(pick(model))  # moved in NumPy (the same float64 sums): no eager op to compile per shape
            e = np.zeros_like(leaf)
            e[index] = eps
            moved = [eqx.tree_at(pick, model, jnp.asarray(leaf + sign * e)) for sign in (1, -1)]
            fd = (float(f(moved[0])) - float(f(moved[1]))) / (2 * eps)
            np.testing.assert_allclose(float(pick(grads)[index]), fd, rtol=1e-5, atol=1e-8)


@pytest.mark.skipif(not native.available(), reason="the native kernel is not available")
def test_the_native_kernels_backward_equals_autodiff_of_the_pure_jax_product():
    R = toy()
    loss = MultinomialLoss.from_matrix(R)
    f = _loss_of(loss, np.array([0, 4, 11, 23, 7]), jax.random.key(9), 0)
    native_model = vae(R, kernel="auto")
    got = eqx.filter_grad(f)(native_model)
    want = eqx.filter_grad(f)(dataclasses.replace(native_model, kernel="jax"))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- scoring new users


def test_a_new_user_with_a_known_users_history_gets_the_same_scores():
    R = toy()
    for model in (vae(R), dae(R)):
        rows = R[[2, 5]]
        known = np.asarray(model.score(SparseRows.from_scipy(rows, users=np.array([2, 5]))))
        new = np.asarray(model.score(SparseRows.from_scipy(rows)))
        dense = np.asarray(model.score(jnp.asarray(rows.toarray())))
        np.testing.assert_array_equal(new, known)
        np.testing.assert_allclose(dense, known, rtol=1e-5, atol=1e-5)
        assert model.scores_new_users
        # a history no train user has, and an empty one, score finitely
        unseen = sp.csr_matrix(([1.0, 1.0], ([0, 0], [3, 17])), shape=(2, R.shape[1]), dtype=np.float32)
        assert np.all(np.isfinite(np.asarray(model.score(SparseRows.from_scipy(unseen)))))


# ---------------------------------------------------------------- training: objective, determinism, resume


def test_objective_is_every_user_once_with_the_multinomial_loss():
    plan = objective(MultVAE(**SMALL_VAE), toy())
    assert isinstance(plan.sampler, UserSampler) and isinstance(plan.loss, MultinomialLoss)
    assert isinstance(objective(MultDAE(**SMALL_DAE), toy()).loss, MultinomialLoss)


@pytest.fixture(scope="module")
def trained_pairs():
    """Each model trained twice with the same seed on toy()."""
    R = toy()
    return {cls: (train(cls(**small), R, SETTINGS), train(cls(**small), R, SETTINGS))
            for cls, small in ((MultVAE, SMALL_VAE), (MultDAE, SMALL_DAE))}


@pytest.mark.parametrize("cls", [MultVAE, MultDAE])
def test_training_is_bit_identical_for_a_seed_and_changes_the_parameters(cls, trained_pairs):
    a, b = trained_pairs[cls]
    start = a.model.init(jax.random.fold_in(jax.random.key(SETTINGS.seed), 0), toy())
    assert not np.array_equal(np.asarray(a.model.encoder[0].weight), np.asarray(start.encoder[0].weight))
    for x, y in zip(jax.tree.leaves(a.model), jax.tree.leaves(b.model)):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    assert a.history[-1]["loss"] < a.history[0]["loss"]


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path):
    model = MultVAE(**SMALL_VAE)  # 3 steps an epoch: beta still rises (to 0.17) when interrupted and after
    s = dataclasses.replace(SETTINGS, epochs=6, checkpoint_every=2, seed=4)
    resume_matches_whole(model, toy(), s, lambda m: np.sum(np.asarray(m.decoder[-1].bias)), tmp_path)


# ---------------------------------------------------------------- saving


@pytest.mark.parametrize("cls", [MultVAE, MultDAE])
def test_save_and_load_round_trip_gives_bit_identical_scores(cls, trained_pairs, tmp_path):
    R = toy()
    model = trained_pairs[cls][0].model
    loaded = load_model(model.save(tmp_path / cls.name))
    assert type(loaded) is cls and loaded.config() == model.config() and loaded.fitted_on == model.fitted_on
    for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(model)):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    rows = SparseRows.from_scipy(R, users=np.arange(R.shape[0]))
    assert np.asarray(loaded.score(rows)).tobytes() == np.asarray(model.score(rows)).tobytes()
    header = json.loads((tmp_path / cls.name / "model.json").read_text())
    assert header["model"] == cls.name and header["settings"]["latent"] == model.latent


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("mult-vae", {"dropout": 1.0}, "dropout"),
        ("mult-vae", {"dropout": -0.1}, "dropout"),
        ("mult-vae", {"latent": 0}, "latent"),
        ("mult-vae", {"hidden": [0]}, "hidden"),
        ("mult-vae", {"hidden": 600}, "hidden"),
        ("mult-vae", {"anneal_cap": -0.5}, "anneal_cap"),
        ("mult-vae", {"anneal_steps": -1}, "anneal_steps"),
        ("mult-vae", {"anneal_steps": 2.5}, "anneal_steps"),
        ("mult-vae", {"reg": -1e-3}, "reg"),
        ("mult-vae", {"bias_scale": float("nan")}, "bias_scale"),
        ("mult-vae", {"kernel": "gpu"}, "kernel"),
        ("mult-dae", {"latent": True}, "latent"),
        ("mult-dae", {"dropout": 2}, "dropout"),
        ("mult-dae", {"reg": float("inf")}, "reg"),
        ("mult-dae", {"anneal_cap": 0.2}, "anneal_cap"),
    ],
)
def test_impossible_settings_are_refused(name, settings, message):
    with pytest.raises(ConfigError, match=message):
        make_model(name, **settings)


def test_a_matrix_without_items_is_refused():
    with pytest.raises(ConfigError, match="items"):
        MultDAE().init(jax.random.key(0), sp.csr_matrix((3, 0), dtype=np.float32))


# ---------------------------------------------------------------- learning, presets


def clustered(seed: int = 0, n_users: int = 120, n_items: int = 60, groups: int = 4) -> sp.csr_matrix:
    """Users who like the items of their own group, plus popular noise: structure popularity cannot see."""
    rng = np.random.default_rng(seed)
    group = np.arange(n_users) % groups
    item_group = np.arange(n_items) % groups
    p = np.where(group[:, None] == item_group[None, :], 0.45, 0.03)
    return sp.csr_matrix((rng.random((n_users, n_items)) < p).astype(np.float32))


def test_a_short_training_beats_popularity_on_held_out_items():
    full = clustered()
    coo = full.tocoo()
    held = np.random.default_rng(1).random(coo.nnz) < 0.2
    part = lambda m: sp.csr_matrix((np.ones(m.sum(), np.float32), (coo.row[m], coo.col[m])), shape=full.shape)
    train_m, valid = part(~held), part(held)
    ds = Dataset(train_m, valid, "clustered", valid=valid)
    pop = evaluate(make_model("popularity").fit(train_m), ds, ks=(10,), split="valid").metrics["recall@10"]
    for model in (MultVAE(hidden=(32,), latent=8, anneal_steps=100), MultDAE(latent=16)):
        trained = train(model, train_m, TrainSettings(epochs=10, batch_size=20, lr=1e-2, seed=0)).model
        got = evaluate(trained, ds, ks=(10,), split="valid").metrics["recall@10"]
        assert got > pop + 0.1, (model.name, got, pop)


def test_presets_hold_the_reference_settings_and_build():
    from bspm_jax.config import get_preset

    for name, cls in (("ml1m-mult-vae", MultVAE), ("ml1m-mult-dae", MultDAE)):
        preset = get_preset(name)
        assert "Liang et al." in preset.description and "validation" in preset.description
        model = make_model(preset.model_name, **preset.model_settings)
        selected = {"dropout": 0.2} if cls is MultDAE else {"dropout": 0.6}  # chosen on validation (see the preset)
        assert type(model) is cls and model.config() == {**cls().config(), "kernel": "auto", **selected}
        assert preset["train"]["batch_size"] == 500 and preset["train"]["lr"] == 1e-3
