"""GiffCF against NumPy transcriptions of its paper's equations (Zhu et al., SIGIR 2024): the item graph
and its normalisation against dense NumPy, the forward filter, the denoiser, the sampling loop, the
training error; determinism for a seed, resume after an interruption, refused settings, learning."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from bspm_jax import GiffCF, make_model
from bspm_jax.data import Dataset
from bspm_jax.errors import ConfigError
from bspm_jax.evaluation import evaluate
from bspm_jax.models.giffcf import giffcf_graph
from bspm_jax.filtering.rows import SparseRows
from bspm_jax.training import GraphDiffusionLoss, TrainSettings, train
from oracles import resume_matches_whole
from oracles import toy as _toy

KEY = jax.random.key(0)


def toy(seed: int = 0, n_users: int = 40, n_items: int = 30, p: float = 0.2) -> sp.csr_matrix:
    return _toy(seed, n_users, n_items, p)


def fitted(R: sp.csr_matrix | None = None, **settings) -> GiffCF:
    R = toy() if R is None else R
    base = {"embed_dim": 6, "time_dim": 4, "kernel": "jax"}
    return GiffCF(**{**base, **settings}).init(jax.random.key(3), R).with_train(R)


# ---------------------------------------------------------------- NumPy transcriptions


def numpy_graph(X: np.ndarray) -> np.ndarray:
    """R = D_U^-1/4 X D_I^-1/2, with 0 where a degree is 0."""
    du, di = X.sum(1), X.sum(0)
    with np.errstate(divide="ignore"):
        return np.where(du[:, None] > 0, du[:, None] ** -0.25, 0) * X * np.where(di[None, :] > 0, di[None, :] ** -0.5, 0)


def numpy_smoothing(X: np.ndarray, ideal_weight: float = 0.0, cutoff: int = 1) -> np.ndarray:
    """The (n_items, n_items) matrix S with A x = x S: R^T R / lambda_1, mixed with V V^T."""
    R = numpy_graph(X.astype(np.float64))
    gram = R.T @ R
    w, v = np.linalg.eigh(gram)
    S = gram / w[-1]
    if ideal_weight > 0:
        V = v[:, ::-1][:, :cutoff]
        S = (S + ideal_weight * V @ V.T) / (1 + ideal_weight)
    return S


def np_affine(layer, x):
    return x @ np.asarray(layer.weight, np.float64) + np.asarray(layer.bias, np.float64)


def silu(x):
    return x / (1 + np.exp(-x))


def numpy_phi(model: GiffCF, z, c, ac, t: int) -> np.ndarray:
    """The denoiser written out: two scalar time codes, latent mixing over d, score mixing over items."""
    d = model.denoiser
    E = np.asarray(d.item_embedding, np.float64)
    n_items = E.shape[0]
    half = model.time_dim // 2
    freqs = 10_000.0 ** (-np.arange(half) / half)
    sinus = np.concatenate([np.cos(t * freqs), np.sin(t * freqs)])

    def code(tc):
        return np_affine(tc.out, silu(np_affine(tc.hidden, sinus)))[0]

    def mix(mixer, channels):
        x = np.stack(channels, axis=-1)
        return np_affine(mixer.out, silu(np_affine(mixer.hidden, x)))[..., 0]

    norm = np.maximum(np.abs(c).sum(-1, keepdims=True), 1.0)
    zc, cc = (z / n_items) @ E, (c / norm) @ E
    latent = mix(d.latent_mixer, [zc, cc, np.full_like(zc, code(d.time_latent))])
    mid = latent @ E.T
    return mix(d.score_mixer, [mid, c, ac, np.full_like(mid, code(d.time_score))])


def numpy_sample(model: GiffCF, X: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Sampling as the paper's Algorithm 2 with GiffCF's noise carry: z_T = F(x, T); z_s = F(x^, s) + decay (z_t - F(x^, t))."""
    T, a, decay = model.steps, model.alpha, model.noise_decay
    F = lambda x, t: x + a * t / T * (x @ S - x)  # noqa: E731
    z = F(X, T)
    for t in range(T, 0, -1):
        x_hat = numpy_phi(model, z, X, X @ S, t)
        z = F(x_hat, t - 1) + (decay * (z - F(x_hat, t)) if decay > 0 else 0.0)
    return z


# ---------------------------------------------------------------- the graph and the filter


def test_graph_is_the_degree_normalised_matrix_of_dense_numpy():
    R = toy(1)
    R[3] = 0  # a user without interactions
    R.eliminate_zeros()
    np.testing.assert_allclose(giffcf_graph(R).toarray(), numpy_graph(R.toarray().astype(np.float64)), rtol=1e-12)


@pytest.mark.parametrize("ideal_weight, cutoff", [(0.0, 1), (0.4, 5)])
def test_smoothing_is_the_scaled_item_gram_matrix_with_the_ideal_low_pass(ideal_weight, cutoff):
    R = toy(2)
    model = fitted(R, ideal_weight=ideal_weight, ideal_cutoff=cutoff)
    x = np.random.default_rng(0).random((5, R.shape[1])).astype(np.float32)
    S = numpy_smoothing(R.toarray(), ideal_weight, cutoff)
    np.testing.assert_allclose(np.asarray(model.smooth(jnp.asarray(x))), x @ S, rtol=1e-4, atol=1e-5)
    assert np.linalg.eigvalsh(numpy_smoothing(R.toarray())).max() == pytest.approx(1.0)  # A's spectrum in [0, 1]


def test_forward_filter_moves_from_the_signal_to_alpha_times_its_smoothing():
    model = fitted(alpha=1.5, steps=3)
    x = jnp.asarray(np.random.default_rng(1).random((4, 30)), jnp.float32)
    ax = model.smooth(x)
    for t in range(4):
        np.testing.assert_allclose(np.asarray(model.filtered(x, ax, t)), np.asarray(x + 1.5 * t / 3 * (ax - x)), rtol=1e-6)
    t = jnp.asarray([0, 1, 2, 3])
    want = np.stack([np.asarray(x[i] + 1.5 * int(t[i]) / 3 * (ax[i] - x[i])) for i in range(4)])
    np.testing.assert_allclose(np.asarray(model.filtered(x, ax, t)), want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(fitted(noise_scale=0.2, noise_decay=0.5).noise_std(jnp.arange(4))),
                               0.2 * 0.5 ** (3 - np.arange(4)), rtol=1e-6)


# ---------------------------------------------------------------- denoiser and sampling


def test_denoiser_matches_its_numpy_transcription():
    R = toy(3)
    model = fitted(R)
    rng = np.random.default_rng(2)
    z, c = rng.random((3, 30)), (rng.random((3, 30)) < 0.3) * 2.0
    ac = c @ numpy_smoothing(R.toarray())
    for t in (1, 3):
        got = model.denoise(*(jnp.asarray(a, jnp.float32) for a in (z, c, ac)), jnp.full((3,), t))
        np.testing.assert_allclose(np.asarray(got), numpy_phi(model, z, c, ac, t), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("steps, decay, ideal_weight", [(3, 0.5, 0.0), (3, 0.0, 0.0), (1, 0.5, 0.0), (2, 1.0, 0.3)])
def test_sampling_matches_its_numpy_transcription(steps, decay, ideal_weight):
    R = toy(4)
    model = fitted(R, steps=steps, noise_decay=decay, ideal_weight=ideal_weight, ideal_cutoff=4)
    X = R[:6].toarray().astype(np.float64)
    want = numpy_sample(model, X, numpy_smoothing(R.toarray(), ideal_weight, 4))
    np.testing.assert_allclose(np.asarray(model.score(SparseRows.from_scipy(R[:6]))), want, rtol=1e-3, atol=1e-4)


def test_scores_do_not_depend_on_the_batch_or_the_row_form():
    R = toy(5)
    model = fitted(R)
    whole = np.asarray(model.score(SparseRows.from_scipy(R[:8])))
    parts = np.concatenate([np.asarray(model.score(SparseRows.from_scipy(R[i:min(i + 3, 8)]))) for i in range(0, 8, 3)])
    dense = np.asarray(model.score(jnp.asarray(R[:8].toarray())))
    np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dense, whole, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- training


def test_training_error_without_randomness_matches_numpy():
    """dropout 0 and T = 1: t = 1, c = x, no noise, so the error is sum_i (x - phi(F(x, 1), x, A x, 1))^2."""
    R = toy(6)
    model = fitted(R, steps=1, dropout=0.0)
    X = R[:5].toarray().astype(np.float64)
    S = numpy_smoothing(R.toarray())
    z = X + model.alpha * (X @ S - X)
    want = ((X - numpy_phi(model, z, X, X @ S, 1)) ** 2).sum(-1)
    got = model.training_error(jnp.asarray(X, jnp.float32), KEY)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4)
    loss = GraphDiffusionLoss.from_matrix(R)
    assert float(loss(model, (jnp.arange(5),), KEY, jnp.int32(0))) == pytest.approx(want.mean(), rel=1e-4)


def test_a_training_draw_filters_to_a_uniform_step_and_drops_the_expected_share_of_the_condition():
    R = toy(7, n_users=200, n_items=60, p=0.3)
    model = fitted(R, dropout=0.25)
    x = R.toarray()
    z, c, t = (np.asarray(a) for a in model.corrupted(jnp.asarray(x), jax.random.key(5)))
    assert set(np.unique(c[x == 0])) == {0.0} and set(np.unique(c[x == 1])) <= {0.0, np.float32(1 / 0.75)}
    assert (c[x == 1] > 0).mean() == pytest.approx(0.75, abs=0.03)
    assert t.min() >= 1 and t.max() <= model.steps and len(np.unique(t)) == model.steps
    S = numpy_smoothing(x)
    np.testing.assert_allclose(z, x + model.alpha * t[:, None] / model.steps * (x @ S - x), rtol=1e-4, atol=1e-5)
    noisy = fitted(R, noise_scale=0.3, noise_decay=0.5)
    zn, _, tn = (np.asarray(a) for a in noisy.corrupted(jnp.asarray(x), jax.random.key(5)))
    residual = (zn - (x + noisy.alpha * tn[:, None] / noisy.steps * (x @ S - x))) / (0.3 * 0.5 ** (3 - tn))[:, None]
    assert residual.mean() == pytest.approx(0.0, abs=0.02) and residual.std() == pytest.approx(1.0, abs=0.02)


def test_training_is_deterministic_for_a_seed_and_keeps_the_graph_frozen():
    R = toy(8)
    model = GiffCF(embed_dim=6, time_dim=4, kernel="jax")
    s = TrainSettings(epochs=3, lr=1e-2, batch_size=16, seed=2)
    a, b = train(model, R, s).model, train(model, R, s).model
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    start = model.init(jax.random.key(2), R)
    assert np.array_equal(np.asarray(a.graph.matrix.data), np.asarray(start.graph.matrix.data))
    c = train(model, R, TrainSettings(epochs=3, lr=1e-2, batch_size=16, seed=3)).model
    assert not np.array_equal(np.asarray(a.denoiser.item_embedding), np.asarray(c.denoiser.item_embedding))
    assert a.denoiser.item_embedding.shape == (30, 6)


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path):
    s = TrainSettings(epochs=6, lr=1e-2, batch_size=8, checkpoint_every=2, seed=4)
    resume_matches_whole(GiffCF(embed_dim=6, time_dim=4, kernel="jax"), toy(9), s,
                         lambda m: np.sum(np.asarray(m.denoiser.score_mixer.out.bias)), tmp_path)


def clustered(seed: int, n_users: int = 120, n_items: int = 40) -> sp.csr_matrix:
    """Two user groups, each liking its own half of the items (plus noise)."""
    rng = np.random.default_rng(seed)
    group = np.arange(n_users) % 2
    item_group = np.arange(n_items) % 2
    p = np.where(group[:, None] == item_group[None, :], 0.35, 0.03)
    return sp.csr_matrix((rng.random((n_users, n_items)) < p).astype(np.float32))


def test_trained_giffcf_ranks_the_users_own_cluster_first():
    full = clustered(1).tocoo()
    cut = np.random.default_rng(2).random(full.nnz)
    part = lambda m: sp.csr_matrix((np.ones(m.sum(), np.float32), (full.row[m], full.col[m])), shape=full.shape)  # noqa: E731
    data = Dataset(part(cut < 0.7), part(cut >= 0.85), "clustered", valid=part((cut >= 0.7) & (cut < 0.85)))
    popularity = evaluate(make_model("popularity").fit(data.train), data, ks=(5,), split="valid").metrics["recall@5"]
    result = train(GiffCF(embed_dim=8, time_dim=4, kernel="jax"), data.train,
                   TrainSettings(epochs=30, lr=1e-2, batch_size=32, seed=0))
    learned = evaluate(result.model, data, ks=(5,), split="valid").metrics["recall@5"]
    assert learned > popularity + 0.05


# ---------------------------------------------------------------- heads (a deep ensemble)


def head(model: GiffCF, h: int) -> GiffCF:
    """A one-head model holding head ``h`` of ``model`` (0: the first)."""
    d = model.denoiser if h == 0 else jax.tree.map(lambda a: a[h - 1], model.extra_heads)
    return dataclasses.replace(model, heads=1, denoiser=d, extra_heads=None)


def test_heads_average_the_heads_samples_and_sum_their_errors():
    R = toy(10)
    model = fitted(R, heads=3, steps=1, dropout=0.0)
    one = fitted(R, steps=1, dropout=0.0)
    for x, y in zip(jax.tree.leaves(model.denoiser), jax.tree.leaves(one.denoiser)):  # head 1 is a one-head model's
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert model.extra_heads.item_embedding.shape == (2, 30, 6)
    assert not np.array_equal(np.asarray(model.extra_heads.item_embedding[0]), np.asarray(model.extra_heads.item_embedding[1]))
    X = R[:5].toarray().astype(np.float64)
    S = numpy_smoothing(R.toarray())
    want = np.mean([numpy_sample(head(model, h), X, S) for h in range(3)], axis=0)
    np.testing.assert_allclose(np.asarray(model.score(SparseRows.from_scipy(R[:5]))), want, rtol=1e-3, atol=1e-4)
    z = X + model.alpha * (X @ S - X)  # T = 1, no dropout: every head's draw is the same
    errors = [((X - numpy_phi(head(model, h), z, X, X @ S, 1)) ** 2).sum(-1) for h in range(3)]
    np.testing.assert_allclose(np.asarray(model.training_error(jnp.asarray(X, jnp.float32), KEY)), np.sum(errors, 0),
                               rtol=1e-4)


def test_heads_are_trained_and_saved_like_one(tmp_path):
    from bspm_jax import load_model

    R = toy(11)
    model = GiffCF(embed_dim=6, time_dim=4, heads=2)  # the default kernel: the native one where it is built
    s = TrainSettings(epochs=2, lr=1e-2, batch_size=16, seed=1)
    a, b = train(model, R, s).model, train(model, R, s).model
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    start = model.init(jax.random.fold_in(jax.random.key(1), 0), R)
    assert not np.array_equal(np.asarray(a.extra_heads.item_embedding), np.asarray(start.extra_heads.item_embedding))
    a = a.with_train(R)
    loaded = load_model(a.save(tmp_path / "two-heads"))
    rows = SparseRows.from_scipy(R)
    assert np.asarray(loaded.score(rows)).tobytes() == np.asarray(a.score(rows)).tobytes()


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("settings, message", [
    ({"embed_dim": 0}, "embed_dim"), ({"steps": 0}, "steps"), ({"alpha": -1.0}, "alpha"),
    ({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"), ({"ideal_weight": -1.0}, "ideal_weight"),
    ({"noise_decay": float("nan")}, "noise_decay"), ({"activation": "gelu"}, "activation"),
    ({"kernel": "fastest"}, "kernel"), ({"time_dim": 1}, "time_dim"), ({"heads": 0}, "heads"),
])
def test_impossible_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        make_model("giffcf", **settings)


def test_an_ideal_cutoff_above_the_item_count_is_refused():
    with pytest.raises(ConfigError, match="ideal_cutoff"):
        GiffCF(ideal_weight=0.5, ideal_cutoff=500).init(KEY, toy())


def test_the_preset_holds_the_published_ml1m_settings_but_the_mixer_width():
    from bspm_jax.config import get_preset

    preset = get_preset("ml1m-giffcf")
    model = make_model("giffcf", **preset.model_settings)
    assert (model.embed_dim, model.steps, model.alpha, model.ideal_weight, model.noise_scale, model.noise_decay,
            model.dropout, model.mixer_hidden) == (200, 3, 1.5, 0.0, 0.0, 0.5, 0.5, 8)  # the width chosen on validation
    assert preset["train"]["batch_size"] == 100 and preset["train"]["lr"] == 1e-3
    assert preset["train"]["eval_every"] * preset["train"]["patience"] == 200
    assert not preset["evaluation"].get("refit_with_valid", False)
