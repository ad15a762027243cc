"""ChebyCF, Turbo-CF and the frequency responses of the spectral filters, against NumPy on small graphs.

Oracles: ``numpy.polynomial.chebyshev`` for the Chebyshev algebra, dense float64
transcriptions of each model's formula, and a dense eigendecomposition of ``P~`` for the
responses (in its eigenbasis every spectral filter is diagonal, with the response on it).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpy.polynomial.chebyshev as npc
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from oracles import toy
from bspm_jax import ChebyCF, TurboCF, make_model, get_preset
from bspm_jax.filtering.chebyshev import (chebyshev_extrema, chebyshev_nodes, chebyshev_series, interpolation_coefficients,
                                plateau, plateau_coefficients)
from bspm_jax.errors import ConfigError, ResourceError
from bspm_jax.models import AbstractSpectralFilter
from bspm_jax.filtering.operators import Dense
from helpers import REPO, sample

HYP = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow],
               phases=[Phase.explicit, Phase.reuse, Phase.generate])

R = toy(seed=4, n_users=40, n_items=18, p=0.3)
ROWS = R.toarray().astype(np.float64)


def dense_graph(train: sp.spmatrix) -> dict:
    """Dense float64 R~, P~ and the item degrees."""
    r = np.asarray(train.toarray(), np.float64)
    du, di = r.sum(1), r.sum(0)
    rt = np.where(du > 0, du, 1)[:, None] ** -0.5 * (du > 0)[:, None] * r * (np.where(di > 0, di, 1) ** -0.5 * (di > 0))
    return {"R": r, "Rt": rt, "P": rt.T @ rt, "du": du, "di": di}


def power(d: np.ndarray, p: float) -> np.ndarray:
    return np.where(d > 0, np.where(d > 0, d, 1.0) ** p, 0.0)


# ------------------------------------------------------------------ Chebyshev algebra


@HYP
@given(coeffs=st.lists(st.floats(-2, 2), min_size=1, max_size=9), seed=st.integers(0, 10))
def test_chebyshev_series_equals_numpy_chebval_on_the_eigenvalues(coeffs, seed):
    g = dense_graph(toy(seed=seed, n_users=25, n_items=12))
    lap = np.eye(12) - 2 * g["P"]
    lam, vecs = np.linalg.eigh(lap)
    assert lam.min() > -1 - 1e-9 and lam.max() < 1 + 1e-9  # L~ = I - 2 P~ has its spectrum in [-1, 1]
    x = np.random.default_rng(seed).standard_normal((5, 12))
    want = x @ vecs @ np.diag(npc.chebval(lam, coeffs)) @ vecs.T
    got = chebyshev_series(Dense(jnp.asarray(lap, jnp.float32)), jnp.asarray(x, jnp.float32), coeffs)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_interpolation_coefficients_reproduce_values_at_the_nodes(n):
    values = np.random.default_rng(n).standard_normal(n)
    coeffs = interpolation_coefficients(values)
    np.testing.assert_allclose(npc.chebval(chebyshev_nodes(n), coeffs), values, atol=1e-12)
    np.testing.assert_allclose(chebyshev_nodes(n), np.sort(npc.chebpts1(n)), atol=1e-15)
    np.testing.assert_allclose(chebyshev_extrema(max(n, 1)), np.sort(npc.chebpts2(n + 1)), atol=1e-15)


@pytest.mark.parametrize("order,phi", [(8, 1.5), (4, 0.5), (11, 3.0)])
def test_plateau_coefficients_both_readings(order, phi):
    # "nodes": the textbook interpolant, as NumPy computes it
    np.testing.assert_allclose(plateau_coefficients(order, phi, "nodes"),
                               npc.chebinterpolate(lambda x: plateau(x, phi), order), atol=1e-12)
    # "extrema" (ChebyCF's code): values read at the extrema, rounded to 3 decimals, placed on the nodes
    points = np.round(-np.cos(np.pi * np.arange(order + 1) / order), 3)
    values = np.round(np.where(points < 0, 0.5 + 0.5 * np.abs(points) ** phi, 0.5 - 0.5 * np.abs(points) ** phi), 3)
    np.testing.assert_allclose(npc.chebval(npc.chebpts1(order + 1), plateau_coefficients(order, phi)), values, atol=1e-12)
    # the plateau: 1 at the lowest frequency (x = -1), 0.5 at x = 0, 0 at the highest
    np.testing.assert_allclose(plateau(np.array([-1.0, 0.0, 1.0]), phi), [1.0, 0.5, 0.0])


# ------------------------------------------------------------------ ChebyCF


def chebycf_oracle(train, rows, K, phi, eta, alpha, beta, target_points="extrema"):
    g = dense_graph(train)
    n = g["P"].shape[0]
    lap = np.eye(n) - 2 * g["P"]
    x = rows * (power(g["di"], -beta) if beta else 1.0)
    basis = [x, x @ lap]
    for _ in range(2, K + 1):
        basis.append(2 * basis[-1] @ lap - basis[-2])
    out = sum(c * b for c, b in zip(plateau_coefficients(K, phi, target_points), basis))
    if eta and alpha:
        v = np.linalg.svd(g["Rt"])[2][:eta].T
        out = out + alpha * x @ v @ v.T
    return out * (power(g["di"], beta) if beta else 1.0)


@HYP
@given(K=st.integers(1, 9), phi=st.floats(0.3, 3.0), eta=st.sampled_from([0, 3, 6]), alpha=st.floats(0, 1),
       beta=st.sampled_from([0.0, 0.25, 0.4, 0.5]), points=st.sampled_from(["extrema", "nodes"]),
       kernel=st.sampled_from(["auto", "jax"]))
def test_chebycf_scores_equal_the_dense_formula(K, phi, eta, alpha, beta, points, kernel):
    s = np.linalg.svd(dense_graph(R)["Rt"], compute_uv=False)
    if eta and s[eta - 1] - s[eta] < 1e-3:  # the top-eta subspace must be well defined
        return
    model = ChebyCF(K=K, phi=phi, eta=eta, alpha=alpha, beta=beta, target_points=points, kernel=kernel).fit(R)
    got = np.asarray(model.score(jnp.asarray(ROWS, jnp.float32)))
    want = chebycf_oracle(R, ROWS, K, phi, eta, alpha, beta, points)
    np.testing.assert_allclose(got, want, atol=3e-6 * max(1.0, np.abs(want).max()))


def test_chebycf_sparse_rows_rank_like_dense_rows():
    from bspm_jax.ranking import recommend_indices

    model = make_model("chebycf", eta=6).fit(R)
    want = chebycf_oracle(R, ROWS, 8, 1.5, 6, 0.2, 0.4)
    want[ROWS > 0] = -np.inf
    items, _ = recommend_indices(model, R, k=5, batch_size=7)
    np.testing.assert_array_equal(np.asarray(items), np.argsort(-want, axis=1, kind="stable")[:, :5])


@pytest.mark.parametrize("bad", [dict(K=0), dict(phi=0.0), dict(eta=-1), dict(alpha=float("nan")),
                                 dict(target_points="middle"), dict(svd_tol=0.0)])
def test_chebycf_refuses_bad_settings(bad):
    with pytest.raises(ConfigError):
        make_model("chebycf", **bad)


def test_chebycf_preset_holds_the_published_gowalla_settings():
    assert get_preset("gowalla-chebycf").model_settings == {"K": 8, "phi": 1.5, "eta": 512, "alpha": 0.2, "beta": 0.4}
    assert get_preset("gowalla-turbo-cf").model_settings == {"alpha": 0.6, "power": 0.7, "filter": 1}


# ------------------------------------------------------------------ Turbo-CF


def turbo_oracle(train, rows, a, s, f):
    r = np.asarray(train.toarray(), np.float64)
    ra = power(r.sum(1), -a)[:, None] * r * power(r.sum(0), a - 1)[None, :]
    p = (ra.T @ ra) ** s
    xp = rows @ p
    return {1: xp, 2: 2 * xp - xp @ p, 3: xp + 0.01 * (-xp @ p @ p + 10 * xp @ p - 29 * xp)}[f], p


@HYP
@given(a=st.floats(0.0, 1.0), s=st.floats(0.3, 2.0), f=st.sampled_from([1, 2, 3]),
       kernel=st.sampled_from(["auto", "jax"]))
def test_turbo_cf_scores_equal_the_dense_formula(a, s, f, kernel):
    train = toy(seed=7, n_users=30, n_items=14, p=0.2)
    rows = train.toarray().astype(np.float64)
    model = TurboCF(alpha=a, power=s, filter=f, kernel=kernel).fit(train)
    want, p = turbo_oracle(train, rows, a, s, f)
    assert model.n_nonzero == np.count_nonzero(p)
    got = np.asarray(model.score(jnp.asarray(rows, jnp.float32)))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * max(1.0, np.abs(want).max()))


def test_turbo_cf_refuses_before_building_a_matrix_that_does_not_fit(monkeypatch):
    import bspm_jax.runtime.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 1000)
    with pytest.raises(ResourceError, match="Turbo-CF's item-item matrix P"):
        TurboCF().fit(R)


@pytest.mark.parametrize("bad", [dict(filter=4), dict(power=0.0), dict(alpha=float("inf"))])
def test_turbo_cf_refuses_bad_settings(bad):
    with pytest.raises(ConfigError):
        make_model("turbo-cf", **bad)


# ------------------------------------------------------------------ frequency responses

# Every item has degree 6 and every user 3 (circulant offsets): D = 6 I, so BSPM's ideal
# filter V^-1/2 Vbar Vbar^T V^1/2 is the projection itself and all its filters are functions of P~.
REGULAR = sp.csr_matrix(np.array([[1.0 if (i - u) % 12 in offsets else 0.0 for i in range(12)]
                                  for offsets in ({0, 1, 3}, {0, 2, 7}) for u in range(12)]))


def eigen(train):
    lam, vecs = np.linalg.eigh(dense_graph(train)["P"])
    return lam[::-1], vecs[:, ::-1]


def operator_matrix(model, n):
    """The model's item filter as a dense matrix (its rows: the filter of the unit rows)."""
    return np.asarray(model.filter_rows(jnp.eye(n, dtype=jnp.float32)), np.float64)


def rank_at_gap(lam, low):
    """The smallest rank >= low whose cut lies in a gap of the spectrum."""
    return next(r for r in range(low, len(lam)) if lam[r - 1] - lam[r] > 1e-3)


RESPONSE_MODELS = {
    "gf-cf": ("gf-cf", {}),
    "bspm-em": ("bspm", {}),
    "bspm-lm": ("bspm", {"merge": "late", "T_b": 0.5, "K_b": 2, "T_s": 1.5, "K_s": 2, "beta": 0.3}),
    "blur-ideal": ("blur-ideal", {}),
    "lgcn-ide": ("lgcn-ide", {"layers": 2}),
    "chebycf": ("chebycf", {"beta": 0.0}),
}


@pytest.mark.parametrize("name", list(RESPONSE_MODELS))
def test_response_is_the_diagonal_of_the_filter_in_the_eigenbasis(name):
    registry, settings_ = RESPONSE_MODELS[name]
    lam, vecs = eigen(REGULAR)
    rank = rank_at_gap(lam, 3)
    cls_settings = make_model(registry).setting_names()
    extra = {k: rank for k in ("rank", "eta") if k in cls_settings}
    model = make_model(registry, **settings_, **extra).fit(REGULAR)
    assert isinstance(model, AbstractSpectralFilter)
    in_basis = vecs.T @ operator_matrix(model, 12).T @ vecs
    h = np.asarray(model.response(lam), np.float64)
    scale = max(1.0, np.abs(h).max())
    np.testing.assert_allclose(np.diag(in_basis), h, atol=3e-5 * scale)
    np.testing.assert_allclose(in_basis - np.diag(np.diag(in_basis)), 0.0, atol=3e-5 * scale)


def test_chebycf_response_on_any_graph_up_to_the_degree_similarity():
    lam, vecs = eigen(R)
    eta = rank_at_gap(lam, 4)
    model = ChebyCF(eta=eta).fit(R)
    d = dense_graph(R)["di"]
    # scores = r D^-b (filter) D^b: conjugating by D^b leaves the filter, diagonal in the eigenbasis
    a = np.asarray(model.score(jnp.eye(18, dtype=jnp.float32)), np.float64)
    filt = power(d, 0.4)[:, None] * a * power(d, -0.4)[None, :]
    h = npc.chebval(1 - 2 * lam, model.filter_coefficients) + 0.2 * (np.arange(18) < eta)
    np.testing.assert_allclose(vecs.T @ filt.T @ vecs, np.diag(h), atol=5e-5)
    np.testing.assert_allclose(np.asarray(model.response(lam)), h, atol=5e-6)


def test_responses_of_the_closed_forms():
    model = make_model("lgcn-ide", layers=3).fit(R)
    grid = np.linspace(0, 1, 11)
    np.testing.assert_allclose(np.asarray(model.response(grid)), grid ** 3, atol=1e-6)
    gf = make_model("gf-cf", rank=5).fit(R)
    cut = float(gf.graph.singular_values[-1]) ** 2
    np.testing.assert_allclose(np.asarray(gf.response(grid)), grid + 0.3 * (grid >= np.float32(cut)), atol=1e-6)


# ------------------------------------------------------------------ eigenvalue density


def test_chebyshev_moments_with_unit_probes_are_the_exact_traces():
    from bspm_jax.filtering.chebyshev import chebyshev_moments
    from bspm_jax.filtering.operators import Identity

    model = make_model("lgcn-ide").fit(R)
    lam = np.linalg.eigvalsh(dense_graph(R)["P"])
    got = chebyshev_moments(Identity() - 2.0 * model.graph.gram, jnp.eye(18, dtype=jnp.float32), 12)
    want = [np.mean(npc.chebval(1 - 2 * lam, np.eye(13)[k])) for k in range(13)]
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_jackson_density_of_exact_moments_integrates_to_one_and_peaks_at_the_eigenvalues():
    from bspm_jax.filtering.chebyshev import jackson_density

    lam = np.array([-0.5, -0.5, 0.2, 0.6])  # a known spectrum: its moments mean(T_k(lam))
    moments = np.array([np.mean(npc.chebval(lam, np.eye(129)[k])) for k in range(129)])
    theta = np.linspace(0, np.pi, 20001)[1:-1]  # x = cos(theta): the integral without the endpoint singularity
    rho = jackson_density(moments, np.cos(theta))
    assert abs(np.trapezoid(rho * np.sin(theta), theta) - 1.0) < 1e-3 and rho.min() > -1e-9
    x = np.cos(theta)
    assert abs(x[np.argmax(rho)] - (-0.5)) < 0.03  # the double eigenvalue is the highest peak


# ------------------------------------------------------------------ gradient tuning


def test_surrogate_gradient_matches_finite_differences():
    import jax

    from bspm_jax.tuning.gradient import Surrogate, initial_params, surrogate_loss
    from bspm_jax.spectral import item_degrees

    train = toy(seed=11, n_users=40, n_items=30, p=0.25)
    rng = np.random.default_rng(0)
    valid_mask = (rng.random(train.shape) < 0.15) & (train.toarray() == 0)
    model = ChebyCF(K=4, eta=6, kernel="jax").fit(train)
    surrogate = Surrogate.of(model, item_degrees(train), bands=3)
    params = initial_params(model, 3)
    params["gains"] = jnp.asarray([0.8, 1.3, 0.5])
    x, v = jnp.asarray(train.toarray(), jnp.float32), jnp.asarray(valid_mask, jnp.float32)
    loss = lambda p: surrogate_loss(p, surrogate, x, v, 5, 0.1)  # noqa: E731
    # The surrogate is piecewise smooth: its pieces are the orders of each user's top 2k scores. On the
    # piece at ``params`` it equals the same formula with those items fixed, a smooth function: its
    # central differences are the derivative that reverse mode must give.
    items = jax.lax.top_k(jnp.where(x > 0, -jnp.inf, surrogate.scores(params, x)), 10)[1]

    def on_piece(p):
        s = surrogate.scores(p, x)
        top = jnp.take_along_axis(s, items, axis=1)
        theta, width = 0.5 * (top[:, 4] + top[:, 5]), 0.1 * (top[:, 0] - top[:, 9]) + 1e-12
        soft = jax.nn.sigmoid((jnp.where(x > 0, 0.0, s) - theta[:, None]) / width[:, None])
        n = jnp.sum(v, axis=1)
        return -jnp.sum(jnp.sum(v * soft, axis=1) / jnp.maximum(n, 1.0)) / jnp.sum(n > 0)

    assert float(on_piece(params)) == pytest.approx(float(loss(params)), rel=1e-6)
    grads = jax.grad(loss)(params)
    for name in ("coefficients", "beta", "gains"):
        flat = np.atleast_1d(np.asarray(params[name], np.float64))
        for j in range(len(flat)):
            eps = 1e-3
            step = np.zeros_like(flat)
            step[j] = eps
            up = {**params, name: jnp.asarray((flat + step).reshape(np.shape(params[name])), jnp.float32)}
            down = {**params, name: jnp.asarray((flat - step).reshape(np.shape(params[name])), jnp.float32)}
            fd = (float(on_piece(up)) - float(on_piece(down))) / (2 * eps)
            g = float(np.atleast_1d(np.asarray(grads[name]))[j])
            assert abs(g - fd) <= 1e-3 + 0.02 * abs(fd), (name, j, g, fd)


def test_surrogate_scores_are_the_chebycf_scores():
    from bspm_jax.tuning.gradient import Surrogate, initial_params
    from bspm_jax.spectral import item_degrees

    model = ChebyCF(eta=6, band_gains=[1.5, 0.5]).fit(R)
    surrogate = Surrogate.of(model, item_degrees(R), bands=2)
    params = initial_params(model, 2)
    np.testing.assert_array_equal(np.asarray(params["gains"]), [1.5, 0.5])
    x = jnp.asarray(ROWS, jnp.float32)
    np.testing.assert_allclose(np.asarray(surrogate.scores(params, x)), np.asarray(model.score(x)), atol=2e-6)


def test_band_gains_weight_the_ideal_add_on_by_band():
    model = ChebyCF(eta=6, band_gains=[2.0, 0.0, 1.0], alpha=0.3).fit(R)
    g = dense_graph(R)
    v = np.linalg.svd(g["Rt"])[2][:6].T
    gains = np.array([2.0, 2.0, 0.0, 0.0, 1.0, 1.0])
    base = chebycf_oracle(R, ROWS, 8, 1.5, 0, 0.0, 0.4)
    x = ROWS * power(g["di"], -0.4)
    want = base + 0.3 * (x @ v @ np.diag(gains) @ v.T) * power(g["di"], 0.4)
    np.testing.assert_allclose(np.asarray(model.score(jnp.asarray(ROWS, jnp.float32))), want, atol=3e-6)
    with pytest.raises(ConfigError, match="band_gains"):
        ChebyCF(eta=2, band_gains=[1.0, 1.0, 1.0])
    with pytest.raises(ConfigError, match="coefficients"):
        ChebyCF(K=3, coefficients=[1.0, 2.0])


@pytest.mark.parametrize("preset_name, record_name", [
    ("gowalla-best", "gradient-tune-gowalla-ensemble-vm-2026-12-06.json"),
    ("gowalla-tuned-chebycf", "gradient-tune-gowalla-vm-2026-12-06.json"),
])
def test_tuned_presets_are_the_recorded_gradient_tuning_choices(preset_name, record_name):
    import json
    from pathlib import Path

    record = json.loads((REPO / "benchmarks/results" / record_name).read_text())
    best = record["best"]
    preset = get_preset(preset_name)
    assert preset.model_name == record["model"] and record["validation"]["best_step"] > 0
    assert preset.model_settings == {k: best[k] for k in preset.model_settings}
    assert make_model(preset.model_name, **preset.model_settings).config() == make_model(record["model"], **best).config()


def test_gowalla_best_is_the_best_validation_figure_of_the_recorded_tunings():
    import json
    from pathlib import Path

    results = REPO / "benchmarks/results"
    best = {name: max(c["recall@20"] for c in json.loads((results / name).read_text())["checkpoints"])
            for name in ("gradient-tune-gowalla-ensemble-vm-2026-12-06.json", "gradient-tune-gowalla-vm-2026-12-06.json")}
    assert max(best, key=best.get) == "gradient-tune-gowalla-ensemble-vm-2026-12-06.json"


def test_gradient_tuning_refuses_a_batch_that_does_not_fit(monkeypatch):
    import bspm_jax.runtime.memory as memory
    from bspm_jax.tuning.gradient import GradientSettings, tune_gradient

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 10 ** 9)
    with pytest.raises(ResourceError, match="gradient step on 100,000 users.*lower batch_users"):
        tune_gradient(ChebyCF(eta=8), sample(), settings=GradientSettings(batch_users=100_000))


# ------------------------------------------------------------------ ensembles


def _unit_rows(s: np.ndarray) -> np.ndarray:
    return s / np.linalg.norm(s, axis=1, keepdims=True)


ENSEMBLE = dict(members=[{"name": "chebycf", "K": 6, "eta": 5, "alpha": 0.3, "beta": 0.2},
                         {"name": "turbo-cf", "alpha": 0.5, "power": 0.8, "filter": 2}], weights=[0.7, -0.4])


def test_ensemble_scores_equal_the_weighted_unit_rows_of_its_members_formulas():
    model = make_model("ensemble", **ENSEMBLE).fit(R)
    want = (0.7 * _unit_rows(chebycf_oracle(R, ROWS, 6, 1.5, 5, 0.3, 0.2))
            - 0.4 * _unit_rows(turbo_oracle(R, ROWS, 0.5, 0.8, 2)[0]))
    np.testing.assert_allclose(np.asarray(model.score(jnp.asarray(ROWS, jnp.float32))), want, atol=3e-6)


def test_ensemble_saves_loads_and_writes_its_members_as_toml_tables(tmp_path):
    import tomllib

    from bspm_jax.config import dumps
    from bspm_jax.models import load_model

    model = make_model("ensemble", **ENSEMBLE).fit(R)
    x = jnp.asarray(ROWS, jnp.float32)
    loaded = load_model(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(np.asarray(loaded.score(x)), np.asarray(model.score(x)))
    assert loaded.config() == model.config()
    table = {"model": {"name": "ensemble", "members": model.member_settings(), "weights": list(model.weights)}}
    back = tomllib.loads(dumps(table))["model"]
    assert back["members"] == ENSEMBLE["members"] and back["weights"] == ENSEMBLE["weights"]
    assert make_model(**back).config() == model.config()


@pytest.mark.parametrize("bad, match", [
    ({"members": []}, "members"),
    ({"weights": [1.0]}, "weights"),
    ({"weights": [1.0, float("nan")]}, "weights"),
    ({"members": [{"name": "chebycf"}, {"name": "mf-bpr"}]}, "training-free"),
    ({"members": [{"name": "chebycf"}, {"name": "nope"}]}, "unknown model"),
    ({"members": [{"name": "chebycf", "K": 0}, {"name": "gf-cf"}]}, "K"),
])
def test_ensemble_refuses_bad_settings(bad, match):
    with pytest.raises(ConfigError, match=match):
        make_model("ensemble", **{**ENSEMBLE, **bad})


def test_ensemble_surrogate_is_its_scores_and_its_weight_gradient_the_closed_form():
    import jax

    from bspm_jax.tuning.gradient import EnsembleSurrogate, EnsembleTuning, surrogate_loss

    model = make_model("ensemble", **ENSEMBLE).fit(R)
    tuning = EnsembleTuning(model)
    surrogate = tuning.surrogate(model, R)
    assert isinstance(surrogate, EnsembleSurrogate)
    params = tuning.initial()
    x = jnp.asarray(ROWS, jnp.float32)
    np.testing.assert_allclose(np.asarray(surrogate.scores(params, x)), np.asarray(model.score(x)), atol=1e-6)
    assert tuning.settings({"weights": jnp.asarray([0.5, 0.25])}) == {"members": ENSEMBLE["members"], "weights": [0.5, 0.25]}
    # The scores are linear in the weights: on the piece of the surrogate at ``params`` (each user's top 2k
    # items fixed) the derivative is a closed-form sum over the members' unit rows.
    rng = np.random.default_rng(1)
    v = jnp.asarray((rng.random(ROWS.shape) < 0.2) & (ROWS == 0), jnp.float32)
    k, width = 3, 0.1
    parts = [jnp.asarray(p) for p in model.member_scores(x)]
    s = surrogate.scores(params, x)
    items = jax.lax.top_k(jnp.where(x > 0, -jnp.inf, s), 2 * k)[1]
    n = jnp.sum(v, axis=1)
    grads = jax.grad(surrogate_loss)(params, surrogate, x, v, k, width)["weights"]
    for m in range(2):
        # d/dw_m of sigmoid((s - theta) / w_u), with theta and w_u read from the fixed top items
        top = jnp.take_along_axis(s, items, axis=1)
        dtop = jnp.take_along_axis(parts[m], items, axis=1)
        theta, dtheta = 0.5 * (top[:, k - 1] + top[:, k]), 0.5 * (dtop[:, k - 1] + dtop[:, k])
        w, dw = width * (top[:, 0] - top[:, -1]) + 1e-12, width * (dtop[:, 0] - dtop[:, -1])
        z = (jnp.where(x > 0, 0.0, s) - theta[:, None]) / w[:, None]
        dz = ((jnp.where(x > 0, 0.0, parts[m]) - dtheta[:, None]) * w[:, None]
              - (jnp.where(x > 0, 0.0, s) - theta[:, None]) * dw[:, None]) / w[:, None] ** 2
        dsoft = jax.nn.sigmoid(z) * (1 - jax.nn.sigmoid(z)) * dz
        want = -jnp.sum(jnp.sum(v * dsoft, axis=1) / jnp.maximum(n, 1.0)) / jnp.sum(n > 0)
        assert float(grads[m]) == pytest.approx(float(want), rel=1e-4, abs=1e-6)
