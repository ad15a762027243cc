"""The block Krylov truncated SVD against dense LAPACK: values, subspaces, residuals, the stopping rule, memory."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bspm_jax import spectral

from bspm_jax.runtime import memory
from bspm_jax.errors import ConfigError, ResourceError
from bspm_jax.spectral import block_krylov, svd
from bspm_jax.spectral.gram import DeviceProducts, ScipyProducts


def _with_spectrum(m, n, values, seed, density=None):
    """A matrix with singular values ``values`` (descending, then zeros), sparsified when ``density`` is given."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((m, len(values))))
    v, _ = np.linalg.qr(rng.standard_normal((n, len(values))))
    return sp.csr_matrix((u * values) @ v.T)


def _check(a, rank, s, vt, tol):
    dense = a.toarray()
    exact_s, exact_vt = np.linalg.svd(dense, full_matrices=False)[1:]
    np.testing.assert_allclose(s, exact_s[:rank], atol=4 * tol * exact_s[0])  # |s - s_exact| <= residual
    np.testing.assert_allclose(vt @ vt.T, np.eye(rank), atol=max(1e-8, tol / 10))  # a float32 basis above 1e-5
    r = np.linalg.norm(dense.T @ (dense @ vt.T) - vt.T * s**2, axis=0) / np.where(s > 0, s, 1) / exact_s[0]
    assert r.max() <= tol  # the stopping rule, recomputed densely
    return exact_s


@settings(max_examples=25, deadline=None)
@given(m=st.integers(60, 140), n=st.integers(60, 140), rank=st.integers(1, 12), seed=st.integers(0, 2**16),
       density=st.floats(0.02, 0.3))
def test_random_sparse_matrices_match_the_dense_svd(m, n, rank, seed, density):
    a = sp.random(m, n, density=density, random_state=seed, format="csr")
    rank = min(rank, min(m, n) // 4)
    if a.nnz == 0 or rank < 1:
        return
    s, vt, info = block_krylov.block_krylov_svd(a, rank, tol=1e-9, block=4, extra=4)
    assert info.converged and info.max_residual <= 1e-9
    _check(a, rank, s, vt, 1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), cluster=st.integers(2, 30), gap=st.sampled_from([1e-8, 1e-6, 1e-4]),
       wide=st.booleans(), tol=st.sampled_from([1e-9, 1e-4]))
def test_clustered_and_tiny_singular_values(seed, cluster, gap, wide, tol):
    """A cluster of near-equal values across the cut, and a tail down to 1e-13: every triplet meets the rule
    (float64 products and basis at 1e-9, float32 ones at 1e-4)."""
    values = np.concatenate([[3.0, 2.0], 1.0 - gap * np.arange(cluster), np.geomspace(1e-3, 1e-13, 40)])
    m, n = (120, 150) if wide else (150, 120)
    a = _with_spectrum(m, n, values, seed)
    rank = 2 + cluster // 2  # cuts the cluster in two: its vectors are not determined, the residuals are
    s, vt, info = block_krylov.block_krylov_svd(a, rank, tol=tol, block=4, extra=4)
    assert info.converged
    _check(a, rank, s, vt, tol)


def test_an_exact_low_rank_matrix_exhausts_the_krylov_space():
    """Rank 5 (every other singular value 0): the basis runs out of directions and is refilled at random."""
    a = _with_spectrum(80, 90, np.array([5.0, 4.0, 3.0, 2.0, 1.0]), seed=1)
    s, vt, info = block_krylov.block_krylov_svd(a, 5, tol=1e-10, block=4, extra=4)
    assert info.converged
    _check(a, 5, s, vt, 1e-10)


def test_the_device_products_are_float32_products_of_the_same_matrix():
    a = sp.random(200, 300, density=0.05, random_state=0, format="csr")
    x = np.random.default_rng(0).standard_normal((70, 200))
    y = np.random.default_rng(1).standard_normal((70, 300))
    exact, device = ScipyProducts(a), DeviceProducts(a)
    for name, arg in (("gram", x), ("left", x), ("right", y)):
        want = getattr(exact, name)(arg)
        np.testing.assert_allclose(getattr(device, name)(arg), want, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(exact.gram(x), x @ (a @ a.T).toarray(), atol=1e-12)
    np.testing.assert_allclose(exact.right(y), y @ a.T.toarray(), atol=1e-12)


def test_the_stopping_rule_stops_at_the_tolerance_and_reports_what_holds():
    """Looser tolerances stop sooner; every returned residual (explicit products) is under its tolerance."""
    from bspm_jax.data.synthetic import power_law_interactions

    norm, _, _ = spectral.normalize(power_law_interactions(900, 700, 9000, seed=2))
    restarts = []
    for tol in (1e-3, 1e-6, 1e-10):
        s, vt, info = block_krylov.block_krylov_svd(norm, 24, tol=tol, block=8, extra=8)
        assert info.converged and info.max_residual <= tol
        assert spectral.residuals(norm, s, vt).max() <= tol  # float64 products, right side
        restarts.append(info.restarts)
    assert restarts == sorted(restarts) and restarts[0] < restarts[-1]
    # Out of restarts: the best approximation, flagged as not converged, with its true residual.
    s, vt, info = block_krylov.block_krylov_svd(norm, 24, tol=1e-12, block=8, extra=8, max_restarts=1)
    assert not info.converged and info.max_residual > 1e-12
    np.testing.assert_allclose(info.max_residual, spectral.residuals(norm, s, vt).max(), rtol=0.5)


def test_svd_solver_block_refuses_what_it_cannot_meet_and_auto_falls_back(monkeypatch):
    from bspm_jax.data.synthetic import power_law_interactions

    norm, _, _ = spectral.normalize(power_law_interactions(900, 700, 9000, seed=2))
    monkeypatch.setattr(svd, "DENSE_SVD_LIMIT", 10)
    real = block_krylov.block_krylov_svd
    monkeypatch.setattr(svd, "block_krylov_svd", lambda *a, **k: real(*a, **{**k, "max_restarts": 1}))
    with pytest.raises(ConfigError, match=r"did not meet its stopping rule .*svd_solver='block'"):
        svd.truncated_svd(norm, 24, solver="block", tol=1e-9)
    s, vt = svd.truncated_svd(norm, 24, solver="auto", tol=1e-9)  # PROPACK takes over
    expected = np.linalg.svd(norm.toarray(), compute_uv=False)[:24]
    np.testing.assert_allclose(s, expected, rtol=1e-9)
    assert spectral.residuals(norm, s, vt).max() <= 1e-9


@pytest.mark.parametrize("solver", ["block", "propack", "arpack"])
def test_each_named_solver_gives_the_same_spectrum(solver, monkeypatch):
    from bspm_jax.data.synthetic import power_law_interactions

    norm, _, _ = spectral.normalize(power_law_interactions(700, 900, 9000, seed=4))
    monkeypatch.setattr(svd, "DENSE_SVD_LIMIT", 10)
    s, vt = svd.truncated_svd(norm, 16, solver=solver, tol=1e-9)
    exact_s, exact_vt = np.linalg.svd(norm.toarray(), full_matrices=False)[1:]
    np.testing.assert_allclose(s, exact_s[:16], rtol=1e-9)
    np.testing.assert_allclose(np.abs(vt @ exact_vt[:16].T), np.eye(16), atol=1e-6)  # distinct values: same vectors
    assert np.all(vt[np.arange(16), np.abs(vt).argmax(axis=1)] > 0)  # the sign convention


def test_settings_are_checked():
    for solver, tol in (("lanczos", 1e-4), ("block", 0.0), ("block", 1.5), ("block", "1e-4"), ("auto", True)):
        with pytest.raises(ConfigError, match="svd_solver|svd_tol"):
            svd.check_svd_settings(solver, tol)
    with pytest.raises(ConfigError, match="svd_tol"):
        from bspm_jax.models import make_model

        make_model("bspm", svd_tol=-1.0)
    with pytest.raises(ConfigError, match="needs order"):
        block_krylov.BasisShape.plan(rank=10, side=20, block=8)


def test_the_memory_refusal_names_the_block_solver(monkeypatch):
    from bspm_jax.data.synthetic import power_law_interactions

    norm, _, _ = spectral.normalize(power_law_interactions(700, 900, 9000, seed=4))
    monkeypatch.setattr(svd, "DENSE_SVD_LIMIT", 10)
    (block,) = svd.svd_attempts(norm.shape, 16, "block")
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: block.bytes - 1)
    with pytest.raises(ResourceError, match=r"rank-16 SVD .* needs .* \(block Krylov\) but only .* is available"):
        svd.truncated_svd(norm, 16, solver="block")


def test_a_float32_check_that_fails_is_redone_in_float64(monkeypatch):
    """Rounding of float32 products can fail the final check of triplets that meet the rule: it is redone
    in float64 before they are refused (here the float32 check is made to fail by adding noise to it)."""
    from bspm_jax.data.synthetic import power_law_interactions

    norm, _, _ = spectral.normalize(power_law_interactions(900, 700, 9000, seed=2))
    clean = block_krylov.block_krylov_svd(norm, 24, tol=1e-4, block=8, extra=8)
    real = block_krylov._explicit_residuals
    checks = []

    def noisy(ops, *args):
        checks.append(type(ops).__name__)
        r = real(ops, *args)
        return r + 1e-3 if isinstance(ops, DeviceProducts) else r

    monkeypatch.setattr(block_krylov, "_explicit_residuals", noisy)
    s, vt, info = block_krylov.block_krylov_svd(norm, 24, tol=1e-4, block=8, extra=8)
    assert checks == ["DeviceProducts", "ScipyProducts"] and info.converged
    np.testing.assert_allclose(info.max_residual, spectral.residuals(norm, s, vt).max(), rtol=0.5)
    np.testing.assert_array_equal(s, clean[0])
