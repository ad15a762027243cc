"""The ODE integrators on linear row-batch fields ``dS/dt = -S P`` against exact oracles.

``P`` is a symmetric PSD matrix with eigenvalues in [0, 1] (the normalised item-item
matrix of a random interaction matrix, or a scaled ``A^T A``); the exact solution is
``S(t) = S(0) expm(-t P)`` and the fixed-step schemes have closed-form one-step maps.
Oracles are float64 NumPy/SciPy; the library runs in float32 unless a test enables x64.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.linalg import expm

import bspm_jax.filtering.operators
from oracles import euler_states, rk4_states
from bspm_jax.errors import ConfigError
from bspm_jax.filtering.operators import Dense, Gram, SparseMatrix
from bspm_jax.filtering.solvers import make_integrator

N, BATCH = 9, 4


def psd_from_gram(seed, n=N, m=14):
    """A^T A scaled so that its largest eigenvalue is 1 (eigenvalues in [0, 1])."""
    a = np.random.default_rng(seed).standard_normal((m, n))
    p = a.T @ a
    return p / np.linalg.eigvalsh(p).max()


def normalized_interactions(seed, n_users=16, n_items=N, density=0.35):
    """R~ = U^-1/2 R V^-1/2 of a random binary R (dense float64), and P~ = R~^T R~."""
    r = (np.random.default_rng(seed).random((n_users, n_items)) < density).astype(np.float64)
    du, di = r.sum(axis=1), r.sum(axis=0)
    inv = lambda d: np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)  # noqa: E731
    rt = inv(du)[:, None] * r * inv(di)[None, :]
    return rt, rt.T @ rt


def start(seed, b=BATCH, n=N):
    return np.random.default_rng(seed).standard_normal((b, n))


def sharpen_op(p, dtype=jnp.float32):
    return -Dense(jnp.asarray(p, dtype))


def solve(name, T, K, op, y0, dtype=jnp.float32, **options):
    ys, stats = make_integrator(name, T, K, **options).solve(op, jnp.asarray(y0, dtype))
    return np.asarray(ys, np.float64), stats


def rel_err(actual, expected):
    return np.abs(actual - expected).max() / np.abs(expected).max()


P_GRAM = psd_from_gram(0)
RT, P_TILDE = normalized_interactions(1)
S0 = start(2)


def test_oracle_matrices_are_psd_with_unit_spectrum():
    for p in (P_GRAM, P_TILDE):
        w = np.linalg.eigvalsh(p)
        assert np.allclose(p, p.T) and w.min() > -1e-12 and abs(w.max() - 1.0) < 1e-9


# --------------------------------------------------------------------------- one step


def euler_polynomial(hp):
    return np.eye(N) - hp


def rk4_taylor_polynomial(hp):
    return np.eye(N) - hp + hp @ hp / 2 - hp @ hp @ hp / 6 + hp @ hp @ hp @ hp / 24


@pytest.mark.parametrize("p", [P_GRAM, P_TILDE], ids=["AtA", "Ptilde"])
@pytest.mark.parametrize("name, h, polynomial", [("euler", 0.7, euler_polynomial), ("rk4", 1.3, rk4_taylor_polynomial)])
@pytest.mark.parametrize("use_diffrax", [False, True])
def test_one_step_is_its_explicit_polynomial(p, name, h, polynomial, use_diffrax):
    """One Euler step is S0 (I - hP); one RK4 step is S0 times the degree-4 Taylor polynomial of exp(-hP)."""
    ys, stats = solve(name, h, 1, sharpen_op(p), S0, use_diffrax=use_diffrax)
    assert ys.shape == (1, BATCH, N)
    assert int(stats["num_steps"]) == 1
    assert rel_err(ys[0], S0 @ polynomial(h * p)) < 1e-5


# --------------------------------------------------------------------------- K steps




# One (T, K) for the multi-step tests: each distinct integrator setting compiles anew.
T_MULTI, K_MULTI = 1.5, 3


def test_k_euler_steps_return_every_iterate():
    T, K = T_MULTI, K_MULTI
    integrator = make_integrator("euler", T, K)
    np.testing.assert_allclose(np.asarray(integrator.output_times), T * np.arange(1, K + 1) / K, rtol=1e-6)
    ys, stats = solve("euler", T, K, sharpen_op(P_TILDE), S0)
    assert ys.shape == (K, BATCH, N)
    assert int(stats["num_steps"]) == K
    expected = euler_states(-P_TILDE, S0, T, K)
    np.testing.assert_allclose(ys, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_k_rk4_steps_return_every_iterate_with_matrix_free_gram():
    """The matrix-free Gram operator (R~^T R~ applied as two sparse products) and Dense agree."""
    T, K = T_MULTI, K_MULTI
    op = -Gram(SparseMatrix.from_scipy(sp.csr_matrix(RT)))
    ys, stats = solve("rk4", T, K, op, S0)
    assert ys.shape == (K, BATCH, N)
    assert int(stats["num_steps"]) == K
    expected = rk4_states(-P_TILDE, S0, T, K)
    np.testing.assert_allclose(ys, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    dense_ys, _ = solve("rk4", T, K, sharpen_op(P_TILDE), S0)
    np.testing.assert_allclose(ys, dense_ys, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@settings(max_examples=30, deadline=None)
@given(
    a=hnp.arrays(np.float64, (6, N), elements=st.floats(-1, 1, width=32)),
    y0=hnp.arrays(np.float64, (BATCH, N), elements=st.floats(-10, 10, width=32)),
    name=st.sampled_from(["euler", "rk4"]),
)
def test_fixed_step_iterates_on_random_psd_matrices(a, y0, name):
    """Random PSD P (eigenvalues in [0, 1]): every output state equals the NumPy iterate."""
    p = a.T @ a
    top = np.linalg.eigvalsh(p).max()
    p = p / top if top > 1 else p
    T, K = T_MULTI, K_MULTI
    ys, _ = solve(name, T, K, sharpen_op(p), y0)
    expected = (euler_states if name == "euler" else rk4_states)(-p.astype(np.float32).astype(np.float64), y0, T, K)
    scale = max(np.abs(expected).max(), np.abs(y0).max(), 1e-30)
    np.testing.assert_allclose(ys, expected, rtol=1e-5, atol=2e-6 * scale)


# --------------------------------------------------------------------------- adaptive


@pytest.mark.parametrize("p", [P_GRAM, P_TILDE], ids=["AtA", "Ptilde"])
def test_dopri5_tight_tolerance_equals_matrix_exponential(p):
    T, K = 2.5, 3
    ys, stats = solve("dopri5", T, K, sharpen_op(p), S0, rtol=1e-8, atol=1e-10)
    assert ys.shape == (K, BATCH, N)
    assert int(stats["num_steps"]) >= 1
    for j in range(K):
        expected = S0 @ expm(-(j + 1) * T / K * p)
        assert rel_err(ys[j], expected) < 1e-4, j


# --------------------------------------------------------------------------- order


def test_rk4_converges_at_fourth_order():
    """Errors of K = 1, 2, 4, 8 RK4 steps against expm: observed order in [3.5, 4.5].

    T = 0.5 keeps every step in the asymptotic regime for eigenvalues up to 1; the errors
    (down to ~1e-8 of the state) need float64, so this test runs with x64 enabled.
    """
    T = 0.5
    expected = S0 @ expm(-T * P_GRAM)
    with jax.enable_x64(True):
        op = sharpen_op(P_GRAM, jnp.float64)
        errors = []
        for K in (1, 2, 4, 8):
            ys, stats = solve("rk4", T, K, op, S0, dtype=jnp.float64)
            assert ys.dtype == np.float64 and int(stats["num_steps"]) == K
            errors.append(np.abs(ys[-1] - expected).max())
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[-1] > 1e-12, errors  # well above float64 rounding
    assert np.all((orders > 3.5) & (orders < 4.5)), (errors, orders)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["euler", "rk4", "dopri5"])
@pytest.mark.parametrize("T", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_invalid_terminal_time(name, T):
    with pytest.raises(ConfigError):
        make_integrator(name, T, 2)


@pytest.mark.parametrize("name", ["euler", "rk4", "dopri5"])
@pytest.mark.parametrize("steps", [0, -3, 1.5, 2.0, "2", None, True])
def test_invalid_steps(name, steps):
    with pytest.raises(ConfigError):
        make_integrator(name, 1.0, steps)


@pytest.mark.parametrize(("rtol", "atol"), [(0.0, 1e-8), (1e-6, 0.0), (-1e-6, 1e-8)])
def test_invalid_dopri5_tolerances(rtol, atol):
    with pytest.raises(ConfigError):
        make_integrator("dopri5", 1.0, 1, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ["rk45", "heun", "", "tsit5"])
def test_unknown_solver(name):
    with pytest.raises(ConfigError):
        make_integrator(name, 1.0, 1)


def test_valid_settings_accepted():
    for name in ("euler", "rk4", "dopri5"):
        integrator = make_integrator(name, 0.25, 3)
        assert integrator.steps == 3 and integrator.T == 0.25


class _Counting(bspm_jax.filtering.operators.AbstractOperator):
    """Wraps an operator and counts its applications at run time."""

    inner: bspm_jax.filtering.operators.AbstractOperator

    def __call__(self, x):
        jax.debug.callback(_COUNTER.append, 1)
        return self.inner(x)


_COUNTER: list[int] = []


@pytest.mark.parametrize("name, steps", [("euler", 3), ("rk4", 2), ("dopri5", 1), ("dopri5", 4)])
def test_reported_evaluations_equal_counted_applications(name, steps):
    p = np.diag(np.linspace(0.0, 1.0, 6))
    op = _Counting(-bspm_jax.filtering.operators.Dense(jnp.asarray(p, jnp.float32)))
    integrator = make_integrator(name, 2.5, steps, rtol=1e-6, atol=1e-8)
    _COUNTER.clear()
    _, stats = integrator.solve(op, jnp.ones((3, 6), jnp.float32))
    jax.effects_barrier()
    assert len(_COUNTER) == int(integrator.evaluations(stats))


def test_rk4_step_polynomial_is_the_taylor_polynomial():
    from bspm_jax.filtering.solvers import RK4, Euler

    np.testing.assert_allclose(RK4.coefficients, [1, 1, 1 / 2, 1 / 6, 1 / 24], rtol=1e-15)
    assert Euler.coefficients == (1.0, 1.0)


@pytest.mark.parametrize("name", ["euler", "rk4"])
@pytest.mark.parametrize("K", [1, 3])
def test_polynomial_steps_equal_diffrax_steps(name, K):
    op = sharpen_op(P_TILDE)
    fast, fast_stats = make_integrator(name, 2.5, K).solve(op, jnp.asarray(S0, jnp.float32))
    slow, slow_stats = make_integrator(name, 2.5, K, use_diffrax=True).solve(op, jnp.asarray(S0, jnp.float32))
    assert int(fast_stats["num_steps"]) == int(slow_stats["num_steps"]) == K
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6 * float(np.abs(slow).max()))


@pytest.mark.parametrize("name, steps", [("euler", 2), ("rk4", 3)])
def test_diffrax_path_reports_the_same_evaluations(name, steps):
    p = np.diag(np.linspace(0.0, 1.0, 6))
    op = _Counting(-bspm_jax.filtering.operators.Dense(jnp.asarray(p, jnp.float32)))
    integrator = make_integrator(name, 2.5, steps, use_diffrax=True)
    _COUNTER.clear()
    _, stats = integrator.solve(op, jnp.ones((3, 6), jnp.float32))
    jax.effects_barrier()
    assert len(_COUNTER) == int(integrator.evaluations(stats))


@pytest.mark.parametrize("name, T, K", [("euler", 1.0, 1), ("euler", 2.5, 3), ("rk4", 1.0, 1), ("rk4", 3.0, 2), ("dopri5", 1.5, 1)])
def test_projection_decay_gives_the_solution_on_a_projection(name, T, K):
    # M = Q Q^T is a projection (M^2 = M): the solver's state at T is a y0 + (1 - a) y0 M
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((N, 4)))
    m = (q @ q.T).astype(np.float32)
    y0 = rng.standard_normal((5, N)).astype(np.float32)
    integrator = make_integrator(name, T, K, rtol=1e-7, atol=1e-9)
    ys, _ = integrator.solve(Dense(jnp.asarray(m - np.eye(N, dtype=np.float32))), jnp.asarray(y0))
    a = integrator.projection_decay()
    np.testing.assert_allclose(np.asarray(ys[-1]), a * y0 + (1 - a) * y0 @ m, rtol=1e-4, atol=1e-5)
    if name == "euler":
        assert a == pytest.approx((1 - T / K) ** K)
