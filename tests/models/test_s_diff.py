"""S-Diff: schedules against their closed forms, the forward marginal by Monte Carlo, the spectral basis
against a dense eigendecomposition, the GFT round trip, guidance, deterministic sampling, the
denoising loss against a NumPy recomputation, frozen basis in training, and learning on synthetic data."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bspm_jax import SDiff, make_model
from bspm_jax.ranking import rank_rows
from bspm_jax.data import Dataset
from bspm_jax.diffusion import SCHEDULES, ConcatDenoiser, FiLMDenoiser, log_snr, time_embedding
from bspm_jax.errors import ConfigError
from bspm_jax.evaluation import evaluate
from bspm_jax.filtering.rows import SparseRows
from oracles import resume_matches_whole
from oracles import toy as _toy
from bspm_jax.training import DenoisingLoss, TrainSettings, UserSampler, padded_items, train

KEY = jax.random.key(0)


def toy(seed: int = 0, n_users: int = 40, n_items: int = 30, p: float = 0.2) -> sp.csr_matrix:
    return _toy(seed, n_users, n_items, p)


def fitted(R: sp.csr_matrix | None = None, **settings) -> SDiff:
    R = toy() if R is None else R
    base = {"rank": 8, "hidden": (16,), "time_dim": 6}
    return SDiff(**{**base, **settings}).init(jax.random.key(3), R).with_train(R)


# ---------------------------------------------------------------- schedules


def numpy_coefficients(name: str, t: float, d: np.ndarray, a_min: float, s_max: float, tau: float):
    """The forward process's alpha_t and sigma_t written out (S-Diff Eqs. 9-14 and the ablations)."""
    lam = np.exp(-t * (np.ones_like(d) if name == "ddpm" else d))
    alpha = (1 - a_min) * lam + a_min
    sigma = np.full_like(d, s_max * t / tau) if name == "ve" else np.minimum(np.sqrt(1 - lam**2), s_max)
    return alpha, sigma


@pytest.mark.parametrize("name", list(SCHEDULES))
@settings(max_examples=25, deadline=None)
@given(t=st.floats(0.0, 1.0), a_min=st.floats(0.0, 0.5), s_max=st.floats(0.05, 1.0))
def test_schedules_match_their_closed_forms_and_bounds(name, t, a_min, s_max):
    d = np.linspace(0.0, 1.0, 11)
    alpha, sigma = SCHEDULES[name](a_min, s_max, 1.0).coefficients(jnp.asarray([[t]], jnp.float32), jnp.asarray(d, jnp.float32))
    want_a, want_s = numpy_coefficients(name, t, d, a_min, s_max, 1.0)
    np.testing.assert_allclose(np.asarray(alpha)[0], want_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(sigma)[0], want_s, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(alpha) >= a_min - 1e-6) and np.all(np.asarray(alpha) <= 1 + 1e-6)
    assert np.all(np.asarray(sigma) >= 0) and np.all(np.asarray(sigma) <= s_max + 1e-6)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedules_start_clean_and_decay_monotonically(name):
    sched = SCHEDULES[name](0.1, 0.5, 1.0)
    t = jnp.linspace(0.0, 1.0, 21)[:, None]
    d = jnp.linspace(0.0, 1.0, 9)
    alpha, sigma = (np.asarray(x) for x in sched.coefficients(t, d))
    np.testing.assert_allclose(alpha[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(sigma[0], 0.0, atol=1e-6)
    assert np.all(np.diff(alpha, axis=0) <= 1e-7) and np.all(np.diff(sigma, axis=0) >= -1e-7)


def test_vp_noises_high_frequencies_more_and_leaves_d_zero_clean():
    alpha, sigma = (np.asarray(x) for x in SCHEDULES["vp"](0.0, 1.0, 1.0).coefficients(
        jnp.asarray([[0.6]]), jnp.asarray([0.0, 0.3, 0.9])))
    assert alpha[0, 0] == pytest.approx(1.0) and sigma[0, 0] == pytest.approx(0.0)
    assert alpha[0, 0] > alpha[0, 1] > alpha[0, 2] and sigma[0, 0] < sigma[0, 1] < sigma[0, 2]


def test_log_snr_is_the_log_ratio_of_the_coefficients():
    sched = SCHEDULES["vp"](0.1, 0.5, 1.0)
    t, d = np.array([0.2, 0.6, 1.0]), np.array([0.1, 0.5, 1.0])
    a, s = numpy_coefficients("vp", 0.6, d, 0.1, 0.5, 1.0)
    np.testing.assert_allclose(np.asarray(log_snr(sched, jnp.asarray(t), jnp.asarray(d)))[1],
                               np.log(a**2 / s**2), rtol=1e-5)
    ddpm = np.asarray(log_snr(SCHEDULES["ddpm"](0.1, 0.5, 1.0), jnp.asarray(t), jnp.asarray(d)))
    assert np.allclose(ddpm, ddpm[:, :1])  # isotropic: one SNR for every frequency


def test_forward_marginal_mean_and_variance_by_monte_carlo():
    model = fitted()
    n = 20_000
    v0 = jnp.asarray(np.linspace(-1.0, 2.0, model.rank), jnp.float32)[None].repeat(n, 0)
    t = jnp.full((n,), model.times()[3])
    draws = np.asarray(model.noised(v0, t, jax.random.normal(jax.random.key(7), v0.shape)), np.float64)
    d = np.asarray(model.frequencies, np.float64)
    alpha, sigma = numpy_coefficients("vp", float(model.times()[3]), d, model.alpha_min, model.sigma_max, model.tau)
    mean = alpha * np.asarray(v0[0], np.float64)
    se = np.maximum(sigma, 1e-6) / math.sqrt(n)
    assert np.all(np.abs(draws.mean(0) - mean) <= 5 * se + 1e-6)
    np.testing.assert_allclose(draws.var(0), sigma**2, rtol=0.06, atol=1e-8)


# ---------------------------------------------------------------- the spectral basis


def test_basis_is_the_top_eigenvectors_of_the_normalised_item_graph():
    R = toy(1)
    model = fitted(R, rank=6)
    X = R.toarray().astype(np.float64)
    du, di = X.sum(1), X.sum(0)
    Xn = X / np.sqrt(np.where(du > 0, du, 1))[:, None] / np.sqrt(np.where(di > 0, di, 1))[None, :]
    w, V = np.linalg.eigh(Xn.T @ Xn)
    top = V[:, ::-1][:, :6]
    U = np.asarray(model.basis, np.float64)
    np.testing.assert_allclose(U.T @ U, np.eye(6), atol=1e-5)
    # the same subspace: the projections agree (eigenvectors are defined up to sign)
    np.testing.assert_allclose(U @ U.T, top @ top.T, atol=1e-4)
    np.testing.assert_allclose(np.asarray(model.frequencies), 1 - w[::-1][:6], atol=1e-5)


def test_graph_fourier_transform_round_trip_on_the_subspace():
    model = fitted()
    U = np.asarray(model.basis)
    v = np.random.default_rng(0).normal(size=(5, model.rank)).astype(np.float32)
    x = v @ U.T  # a signal in the span of the basis
    np.testing.assert_allclose(np.asarray(model.project(jnp.asarray(x))), v, atol=1e-5)
    rows = SparseRows.from_scipy(sp.csr_matrix(x))
    np.testing.assert_allclose(np.asarray(model.spectrum_of(rows)), v, atol=1e-5)


# ---------------------------------------------------------------- denoiser, guidance, sampling


def test_time_embedding_matches_sines_and_cosines():
    steps = jnp.asarray([0.0, 1.0, 3.0])
    emb = np.asarray(time_embedding(steps, 6))
    w = 10_000.0 ** (-np.arange(3) / 3)
    want = np.concatenate([np.cos(np.outer([0, 1, 3], w)), np.sin(np.outer([0, 1, 3], w))], axis=1)
    np.testing.assert_allclose(emb, want, atol=1e-6)


def test_film_fuses_the_condition_elementwise():
    model = fitted()
    den = model.denoiser
    assert isinstance(den, FiLMDenoiser)
    v, e = jnp.ones((2, model.rank)), jnp.arange(2 * model.rank, dtype=jnp.float32).reshape(2, -1) / 10
    g = np.asarray(e) @ np.asarray(den.gamma.weight) + np.asarray(den.gamma.bias)
    b = np.asarray(e) @ np.asarray(den.beta.weight) + np.asarray(den.beta.bias)
    np.testing.assert_allclose(np.asarray(den.features(v, e)), 1 + g * np.asarray(e) + b, rtol=1e-5, atol=1e-5)
    concat = fitted(fusion="concat").denoiser
    assert isinstance(concat, ConcatDenoiser)
    np.testing.assert_array_equal(np.asarray(concat.features(v, e)), np.concatenate([np.asarray(v), np.asarray(e)], 1))


def test_guidance_zero_is_the_unconditional_estimate_and_one_the_conditional():
    rng = np.random.default_rng(1)
    v, e = (jnp.asarray(rng.normal(size=(4, 8)), jnp.float32) for _ in range(2))
    t = jnp.full((4,), 0.4)
    m0 = fitted(guidance=0.0)
    np.testing.assert_array_equal(np.asarray(m0.estimate(v, e, t)), np.asarray(m0.denoise(v, jnp.zeros_like(e), t)))
    m1 = dataclasses.replace(m0, guidance=1.0)
    np.testing.assert_allclose(np.asarray(m1.estimate(v, e, t)), np.asarray(m1.denoise(v, e, t)), atol=1e-6)
    m2 = dataclasses.replace(m0, guidance=2.5)
    c, u = np.asarray(m2.denoise(v, e, t)), np.asarray(m2.denoise(v, jnp.zeros_like(e), t))
    np.testing.assert_allclose(np.asarray(m2.estimate(v, e, t)), u + 2.5 * (c - u), rtol=1e-5, atol=1e-5)


def test_sampling_follows_algorithm_2_step_by_step():
    model = fitted(steps=3)
    e = jnp.asarray(np.random.default_rng(2).normal(size=(3, model.rank)), jnp.float32)
    keys = model.row_keys(jnp.asarray([0, 5, 9]))
    times = np.asarray(model.times())
    noise = lambda step: jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, step), (model.rank,)))(keys)
    full = lambda t: jnp.full((3,), t)
    v = model.noised(e, full(times[3]), noise(3))
    for k in (3, 2, 1):
        v0 = model.estimate(v, e, full(times[k]))
        if k > 1:
            v = model.noised(v0, full(times[k - 1]), noise(k - 1))
    np.testing.assert_allclose(np.asarray(model.sample(e, keys)), np.asarray(v0), rtol=1e-5, atol=1e-5)
    quiet = dataclasses.replace(model, sample_noise=False)
    np.testing.assert_array_equal(np.asarray(quiet.sample(e, keys)), np.asarray(quiet.sample(e, model.row_keys(jnp.asarray([1, 2, 3])))))


def test_scores_are_bit_identical_for_a_seed_and_change_with_it():
    R = toy(2)
    model = fitted(R)
    users = np.arange(R.shape[0])
    a = rank_rows(model, R, 10, batch_size=16, users=users)
    b = rank_rows(model, R, 10, batch_size=16, users=users)
    assert a.scores.tobytes() == b.scores.tobytes() and np.array_equal(a.items, b.items)
    other = rank_rows(dataclasses.replace(model, sample_seed=1), R, 10, batch_size=16, users=users)
    assert not np.array_equal(other.scores, a.scores)
    # a known user's noise is keyed by the user, not the batch: other batch sizes agree to rounding
    c = rank_rows(model, R, 10, batch_size=7, users=users)
    np.testing.assert_allclose(c.scores, a.scores, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- training


def test_padded_items_hold_each_users_items():
    R = toy(3)
    table = padded_items(R)
    for u in range(R.shape[0]):
        got = table[u][table[u] < R.shape[1]]
        np.testing.assert_array_equal(np.sort(got), R[u].indices)


def test_denoising_loss_matches_a_numpy_recomputation():
    R = toy(4)
    model = fitted(R, mask_ratio=0.0, p_uncond=0.0)
    loss = DenoisingLoss.from_matrix(R)
    users = jnp.asarray([3, 0, 7, 7])
    key = jax.random.key(11)
    got = float(loss(model, (users,), key, jnp.asarray(0)))
    # the same draws: with no masking and no dropped condition, only t and the noise are random
    _, _, k_time, k_noise = jax.random.split(key, 4)
    X = R.toarray()[np.asarray(users)]
    U = np.asarray(model.basis, np.float64)
    v0 = X @ U
    t = np.asarray(model.times())[np.asarray(jax.random.randint(k_time, (4,), 1, model.steps + 1))]
    eps = np.asarray(jax.random.normal(k_noise, v0.shape), np.float64)
    d = np.asarray(model.frequencies, np.float64)
    v_t = np.stack([numpy_coefficients("vp", ti, d, model.alpha_min, model.sigma_max, model.tau)[0] for ti in t]) * v0
    v_t += np.stack([numpy_coefficients("vp", ti, d, model.alpha_min, model.sigma_max, model.tau)[1] for ti in t]) * eps
    pred = np.asarray(model.denoise(jnp.asarray(v_t, jnp.float32), jnp.asarray(v0, jnp.float32), jnp.asarray(t)))
    assert got == pytest.approx(float(np.mean((pred - v0) ** 2)), rel=1e-4)


def test_user_sampler_visits_every_active_user_once():
    R = toy(5).tolil()
    R[3] = 0
    R = sp.csr_matrix(R)
    (users,) = UserSampler.from_matrix(R).epoch(KEY)
    assert sorted(users.tolist()) == [u for u in range(R.shape[0]) if u != 3]


def test_training_keeps_the_basis_frozen_and_is_deterministic():
    R = toy(6)
    model = SDiff(rank=8, hidden=(16,), time_dim=6)
    s = TrainSettings(epochs=3, batch_size=10, lr=1e-3, seed=2)
    a, b = train(model, R, s).model, train(model, R, s).model
    start = model.init(jax.random.fold_in(jax.random.key(2), 0), R)
    np.testing.assert_array_equal(np.asarray(a.basis), np.asarray(start.basis))
    np.testing.assert_array_equal(np.asarray(a.frequencies), np.asarray(start.frequencies))
    assert not np.array_equal(np.asarray(a.denoiser.layers[0].weight), np.asarray(start.denoiser.layers[0].weight))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def clustered(seed: int = 0, n_users: int = 120, n_items: int = 60, groups: int = 4) -> sp.csr_matrix:
    """Users who like the items of their own group, plus popular noise: structure popularity cannot see."""
    rng = np.random.default_rng(seed)
    group = np.arange(n_users) % groups
    item_group = np.arange(n_items) % groups
    p = np.where(group[:, None] == item_group[None, :], 0.45, 0.03)
    dense = rng.random((n_users, n_items)) < p
    return sp.csr_matrix(dense.astype(np.float32))


def test_trained_s_diff_beats_popularity_on_validation():
    full = clustered()
    rng = np.random.default_rng(1)
    coo = full.tocoo()
    held = rng.random(coo.nnz) < 0.2
    part = lambda m: sp.csr_matrix((np.ones(m.sum(), np.float32), (coo.row[m], coo.col[m])), shape=full.shape)
    train_m, valid = part(~held), part(held)
    ds = Dataset(train_m, valid, "clustered", valid=valid)
    model, _ = train(SDiff(rank=8, hidden=(64,), time_dim=8), train_m,
                     TrainSettings(epochs=60, batch_size=20, lr=3e-3, eval_every=20, patience=3, seed=0)), None
    pop = make_model("popularity").fit(train_m)
    got = evaluate(model.model, ds, ks=(10,), split="valid").metrics["recall@10"]
    base = evaluate(pop, ds, ks=(10,), split="valid").metrics["recall@10"]
    assert got > base + 0.1, (got, base)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"rank": 0}, "rank"),
        ({"steps": 0}, "steps"),
        ({"schedule": "cosine"}, "schedule"),
        ({"fusion": "add"}, "fusion"),
        ({"sigma_max": 1.5}, "sigma_max"),
        ({"mask_ratio": -0.1}, "mask_ratio"),
        ({"hidden": [0]}, "hidden"),
        ({"tau": 0.0}, "tau"),
        ({"sample_noise": 1}, "sample_noise"),
    ],
)
def test_impossible_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        make_model("s-diff", **settings)


def test_a_rank_above_the_item_count_is_refused():
    with pytest.raises(ConfigError, match="rank"):
        SDiff(rank=500).init(KEY, toy())


# ---------------------------------------------------------------- resume, figures, CLI


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path):
    s = TrainSettings(epochs=6, lr=1e-3, batch_size=8, checkpoint_every=2, seed=4)
    resume_matches_whole(SDiff(rank=6, hidden=(12,), time_dim=4), toy(7), s,
                         lambda m: np.sum(np.asarray(m.denoiser.layers[-1].bias)), tmp_path)


@pytest.fixture(scope="module")
def small_split():
    full = clustered(3, n_users=60, n_items=30)
    coo = full.tocoo()
    rng = np.random.default_rng(2)
    cut = rng.random(coo.nnz)
    part = lambda m: sp.csr_matrix((np.ones(m.sum(), np.float32), (coo.row[m], coo.col[m])), shape=full.shape)
    return Dataset(part(cut < 0.7), part(cut >= 0.85), "clustered-small", valid=part((cut >= 0.7) & (cut < 0.85)))


def test_fig3_data_is_the_closed_form_log_snr(small_split):
    from bspm_jax.figures.sdiff import fig3_data

    model = SDiff(rank=6, alpha_min=0.1, sigma_max=0.5)
    data = fig3_data(model, small_split, n_times=7)
    t = np.asarray(data["t"])
    for label, values in data["log_snr"].items():
        d = data["curve_frequency"][label]
        a, s = zip(*(numpy_coefficients("vp", ti, np.array([d]), 0.1, 0.5, 1.0) for ti in t))
        np.testing.assert_allclose(values, np.log(np.ravel(a) ** 2 / np.ravel(s) ** 2), rtol=1e-4, atol=1e-4)
    json.dumps(data)


def test_fig7_and_fig8_points_equal_separately_trained_models(small_split):
    from bspm_jax.evaluation.fit import FitOptions, fit_model
    from bspm_jax.figures.sdiff import fig7_data, fig8_data

    model = SDiff(rank=6, hidden=(16,), time_dim=4, sample_noise=False)
    s = TrainSettings(epochs=2, lr=3e-3, batch_size=32, eval_every=2, patience=2, seed=0)
    f7 = fig7_data(model, small_split, k=5, train=s, rank_values=[6, 4])
    f8 = fig8_data(model, small_split, k=5, train=s, alpha_min_values=[0.1], sigma_max_values=[0.5])
    assert f7["x"]["values"] == [4, 6] and f8["alpha_min"] == [0.1] and len(f8["points"]) == 1
    fitted, _ = fit_model(model, small_split, FitOptions(train=s))  # rank 6, alpha_min 0.1, sigma_max 0.5
    assert f7["points"][1]["test"]["recall"] == evaluate(fitted, small_split, ks=(5,)).metrics["recall@5"]
    assert f8["points"][0]["valid"]["recall"] == evaluate(fitted, small_split, ks=(5,), split="valid").metrics["recall@5"]
    json.dumps(f7), json.dumps(f8)
    with pytest.raises(ConfigError, match="S-Diff"):
        fig7_data(make_model("bspm"), small_split, train=s)


def test_cli_plots_the_s_diff_figures_and_runs_the_preset(small_split, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from bspm_jax.cli import main
    from bspm_jax.config import get_preset

    preset = get_preset("ml1m-s-diff")
    assert preset.model_name == "s-diff" and make_model("s-diff", **preset.model_settings).rank == 400
    assert "refit_with_valid" not in preset["evaluation"]  # protocol A: scored from the train history
    folder = tmp_path / "data"
    folder.mkdir()
    for name, m in (("train", small_split.train), ("valid", small_split.valid), ("test", small_split.test)):
        coo = m.tocoo()
        np.save(folder / f"{name}_list.npy", np.stack([coo.row, coo.col], 1).astype(np.int64))
    common = ["--data", str(folder), "--preset", "ml1m-s-diff", "--set", "rank=6", "--set", "hidden=[16]",
              "--set", "train.epochs=2", "--set", "train.eval_every=1", "--set", "train.batch_size=16", "--quiet"]
    assert main(["plot", "sdiff-fig3", "sdiff-fig7", "--ranks", "6", "--out", str(tmp_path / "f"), *common]) == 0
    out = capsys.readouterr().out
    assert "sdiff-fig7" in out and (tmp_path / "f" / "sdiff-fig7.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "f" / "sdiff-fig7.json").read_text())
    assert [p["training"]["epochs_run"] for p in data["points"]] == [2]
    assert main(["run", *common, "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["model"] == "s-diff" and result["training"]["epochs_run"] == 2
    assert "refit_with_valid" not in result["training"] and result["protocol"]["name"] == "A"
    assert 0 <= result["metrics"]["recall@20"] <= 1


def test_a_new_user_with_a_known_users_history_gets_the_same_scores_without_noise():
    R = toy(8)
    model = fitted(R, sample_noise=False)
    rows = R[[2, 5]]
    known = np.asarray(model.score(SparseRows.from_scipy(rows, users=np.array([2, 5]))))
    new = np.asarray(model.score(SparseRows.from_scipy(rows)))
    dense = np.asarray(model.score(jnp.asarray(rows.toarray())))
    np.testing.assert_allclose(new, known, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dense, known, rtol=1e-5, atol=1e-5)
    assert model.scores_new_users
