"""Chebyshev polynomial filters: interpolation coefficients, and ``sum_k c_k T_k(A)`` on rows by the three-term recurrence.

``T_0(A) = I``, ``T_1(A) = A``, ``T_{k+1}(A) = 2 A T_k(A) - T_{k-1}(A)``; on rows,
``X T_k(A)`` needs one product with ``A`` per order. For a graph filter ``A`` is the
rescaled Laplacian ``L~ = I - 2 P~`` (eigenvalues ``1 - 2 s^2`` in [-1, 1]).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .operators import AbstractOperator

TARGET_POINTS = ("extrema", "nodes")


def chebyshev_nodes(n: int) -> np.ndarray:
    """The ``n`` Chebyshev nodes of the first kind, ascending: ``x_j = -cos(pi (j + 1/2) / n)``, as ``sin`` (the middle one exactly 0)."""
    return np.sin(0.5 * np.pi / n * np.arange(1 - n, n + 1, 2))


def chebyshev_extrema(order: int) -> np.ndarray:
    """The ``order + 1`` extrema of ``T_order`` on [-1, 1], ascending: ``-cos(pi j / order)``."""
    return -np.cos(np.pi * np.arange(order + 1) / order) if order > 0 else np.zeros(1)


def chebyshev_basis(x: np.ndarray, order: int) -> np.ndarray:
    """``T_k(x)`` for ``k = 0..order``, shape (order + 1, len(x)), by the recurrence."""
    x = np.asarray(x, dtype=np.float64)
    out = [np.ones_like(x), x][: order + 1]
    for _ in range(2, order + 1):
        out.append(2 * x * out[-1] - out[-2])
    return np.stack(out)


def interpolation_coefficients(values: Sequence[float]) -> np.ndarray:
    """Coefficients of the degree ``n - 1`` polynomial through ``values`` at the ``n`` Chebyshev nodes.

    ``c_k = (2 / n) sum_j f_j T_k(x_j)``, with ``c_0`` halved (discrete orthogonality of
    ``T_k`` on the nodes makes ``sum_k c_k T_k(x_j) = f_j`` exact).
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    coeffs = chebyshev_basis(chebyshev_nodes(n), n - 1) @ values * (2.0 / n)
    coeffs[0] /= 2
    return coeffs


def plateau(x: np.ndarray, flatness: float) -> np.ndarray:
    """ChebyCF's target response on [-1, 1]: ``0.5 + 0.5 |x|^phi`` for ``x < 0``, ``0.5 - 0.5 x^phi`` for ``x >= 0``."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x < 0, 0.5 + 0.5 * np.abs(x) ** flatness, 0.5 - 0.5 * np.abs(x) ** flatness)


def plateau_coefficients(order: int, flatness: float, target_points: str = "extrema") -> np.ndarray:
    """Chebyshev coefficients of ChebyCF's filter of ``order`` from its plateau target.

    ``"nodes"``: the interpolant of the plateau at the ``order + 1`` Chebyshev nodes.
    ``"extrema"``: what ChebyCF's published code does, and what its reported figures come
    from: the plateau is read at the ``order + 1`` extrema of ``T_order`` (points and values
    rounded to 3 decimals), and those values are interpolated as if they were taken at the
    nodes, in the same ascending order.
    """
    if target_points == "nodes":
        return interpolation_coefficients(plateau(chebyshev_nodes(order + 1), flatness))
    points = np.round(chebyshev_extrema(order), 3) + 0.0  # + 0.0: no -0.0 (it would count as x < 0 nowhere)
    return interpolation_coefficients(np.round(plateau(points, flatness), 3))


def chebyshev_terms(operator: AbstractOperator, x: Array, order: int) -> Iterator[Array]:
    """``x T_k(A)`` for ``k = 0..order``, one at a time.

    Each order is one :meth:`AbstractOperator.affine` call: ``2 (x_k A) - x_{k-1}``, which
    the native kernel fuses into its product.
    """
    prev, cur = None, x
    yield cur
    for k in range(1, order + 1):
        prev, cur = cur, (operator.affine(cur, 1.0) if k == 1 else operator.affine(cur, 2.0, ((-1.0, prev),)))
        yield cur


def chebyshev_series(operator: AbstractOperator, x: Array, coefficients: Sequence[float]) -> Array:
    """``sum_k c_k (x T_k(A))`` for rows (or chunks) ``x`` and the operator ``A``."""
    terms = chebyshev_terms(operator, x, len(coefficients) - 1)
    out = coefficients[0] * next(terms)
    for c, term in zip(coefficients[1:], terms):
        out = out + c * term
    return out


def chebyshev_moments(operator: AbstractOperator, probes: Array, order: int) -> np.ndarray:
    """``mu_k = mean_p <z_p, z_p T_k(A)> / <z_p, z_p>``, ``k = 0..order``: Hutchinson estimates of ``tr T_k(A) / n``.

    With Rademacher probes ``z_p`` (entries +-1) the estimate is unbiased; with the ``n``
    unit rows it is exact.
    """
    norms = jnp.sum(probes * probes, axis=1)
    moments = [jnp.mean(jnp.sum(probes * t, axis=1) / norms) for t in chebyshev_terms(operator, probes, order)]
    return np.asarray(jnp.stack(moments), np.float64)


def jackson_density(moments: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The kernel polynomial method's eigenvalue density on [-1, 1] from Chebyshev ``moments`` (Jackson damping).

    ``rho(x) = (g_0 mu_0 + 2 sum_k g_k mu_k T_k(x)) / (pi sqrt(1 - x^2))``; the damping
    ``g_k`` keeps it non-negative (no Gibbs oscillations) at a resolution of about pi / N.
    """
    n = len(moments)
    k = np.arange(n)
    a = np.pi / (n + 1)
    g = ((n - k + 1) * np.cos(a * k) + np.sin(a * k) / np.tan(a)) / (n + 1)
    weights = g * np.asarray(moments, np.float64) * np.where(k == 0, 1.0, 2.0)
    x = np.clip(np.asarray(x, np.float64), -1 + 1e-9, 1 - 1e-9)
    return weights @ chebyshev_basis(x, n - 1) / (np.pi * np.sqrt(1 - x * x))
