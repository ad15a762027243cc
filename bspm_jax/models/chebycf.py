"""ChebyCF (Kim et al., SIGIR 2025): a Chebyshev polynomial of the graph Laplacian, an ideal low-pass add-on, degree normalisation.

Scores of user rows ``r``, with ``x = r D^-beta`` (``D`` the item degrees of ``R``; 0 for
items without interactions):

    ``s = ( sum_{k=0}^{K} c_k x T_k(L~)  +  alpha x V V^T ) D^beta``

- ``L~ = I - 2 P~``, ``P~ = R~^T R~`` (eigenvalues ``1 - 2 s^2`` in [-1, 1]), applied
  matrix-free; ``x T_k(L~)`` by the three-term recurrence, one Gram product per order;
- ``c_k`` interpolate the "plateau" response ``h(x) = 0.5 + 0.5 |x|^phi`` (``x < 0``),
  ``0.5 - 0.5 x^phi`` (``x >= 0``): flat near the lowest frequencies, falling to 0 at the
  highest (:func:`bspm_jax.filtering.chebyshev.plateau_coefficients`);
- ``V`` the top ``eta`` right singular vectors of ``R~`` (no add-on when ``eta`` or
  ``alpha`` is 0); the degree normalisation is off when ``beta`` is 0.

Where the paper's description and its code differ, the code's choice is the default,
because the reported figures come from it: the plateau is read at the extrema of
``T_K`` (rounded to 3 decimals) and interpolated as if read at the Chebyshev nodes
(``target_points = "extrema"``); ``"nodes"`` is the textbook interpolant. Its Gowalla
settings: K 8, phi 1.5, eta 512, alpha 0.2, beta 0.4.

Two settings go beyond the paper, for tuning by gradient (:mod:`bspm_jax.tuning.gradient`):
``coefficients`` (``c_0 .. c_K`` given directly, instead of the plateau's) and
``band_gains`` (the add-on's eigenvectors in equal consecutive bands, band ``b`` weighted
``alpha * band_gains[b]``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float

from ..runtime import native as native_kernel
from ..runtime.checks import check_integer, check_number
from ..filtering.chebyshev import TARGET_POINTS, chebyshev_series, plateau_coefficients
from ..errors import ConfigError
from ..filtering.graph import ItemGraph, build_graph, intermediate_length
from ..filtering.operators import AbstractLayout, Diagonal, Identity, LowRank, RowLayout, kernel_for
from ..filtering.rows import scale_columns
from ..spectral import DEFAULT_TOL, SpectrumCache, check_rank, check_svd_settings, degree_power
from .base import AbstractLayoutFilter, AbstractSpectralFilter, LayoutScores, Rows, TrainInfo


def _floats(values: object) -> tuple[float, ...] | None:
    """A list of numbers as a tuple of floats (settings must be hashable); None stays None."""
    if not isinstance(values, list | tuple | np.ndarray):
        return values  # None, or a bad value for __check_init__ to name
    return tuple(float(v) for v in values)


def band_of(n: int, bands: int) -> np.ndarray:
    """The band (0 .. bands - 1) of each of ``n`` ordered eigenvectors: ``bands`` near-equal consecutive runs."""
    return np.repeat(np.arange(bands), [len(part) for part in np.array_split(np.arange(n), bands)])


class ChebyCF(AbstractSpectralFilter, AbstractLayoutFilter):
    """ChebyCF: ``(sum_k c_k x T_k(L~) + alpha x V V^T) D^beta`` with ``x = r D^-beta``.

    Kim et al., SIGIR 2025; the defaults are its Gowalla settings; K, phi, eta, alpha and beta are the
    names in the authors' published configs (chanwoo0806/ChebyCF) and the module docstring's formula.

    Attributes:
        K: order of the Chebyshev filter sum_{k=0..K} c_k T_k(L~), integer >= 1.
        phi: flatness of the plateau response the c_k interpolate, finite and > 0.
        eta: rank of the ideal low-pass add-on V V^T, integer >= 0 (< min(n_users, n_items) when used); 0: none.
        alpha: weight of the ideal low-pass add-on, any finite number; 0: none.
        beta: exponent of the degree normalisation x = r D^-beta, scores times D^beta, any finite number; 0: off.
        target_points: where the plateau is read, 'extrema' (the authors' code) or 'nodes' (textbook Chebyshev nodes).
        coefficients: c_0..c_K given directly instead of the plateau's, K + 1 finite numbers or None (beyond the paper).
        band_gains: gains of the add-on's eigenvectors in equal bands, 1..eta finite numbers or None (beyond the paper).
        svd_solver: truncated SVD solver for V, one of 'auto', 'block', 'propack', 'arpack'.
        svd_tol: SVD stopping rule ||A v - s u|| <= svd_tol * s_1, in (0, 1).
        kernel: product path, one of 'auto', 'avx512', 'avx2', 'baseline' (native CPU kernel) or 'jax' (pure JAX).
    """

    name: ClassVar[str] = "chebycf"
    K: int = eqx.field(static=True, default=8)
    phi: float = eqx.field(static=True, default=1.5)
    eta: int = eqx.field(static=True, default=512)
    alpha: float = eqx.field(static=True, default=0.2)
    beta: float = eqx.field(static=True, default=0.4)
    target_points: str = eqx.field(static=True, default="extrema")
    coefficients: tuple[float, ...] | None = eqx.field(static=True, default=None, converter=_floats)
    band_gains: tuple[float, ...] | None = eqx.field(static=True, default=None, converter=_floats)
    svd_solver: str = eqx.field(static=True, default="auto")
    svd_tol: float = eqx.field(static=True, default=DEFAULT_TOL)
    kernel: str = eqx.field(static=True, default="auto")
    graph: ItemGraph | None = None
    """``P~`` (its ``ideal`` is unused: ChebyCF's add-on is ``ideal_pass``)."""
    ideal_pass: LowRank | None = None
    """``V V^T`` as two factors; None without the add-on."""
    pre: Float[Array, " n_items"] | None = None
    """``D^-beta``."""
    post: Float[Array, " n_items"] | None = None
    """``D^beta``."""
    singular_values: Float[Array, " eta"] | None = None

    def search_space(self) -> dict[str, tuple[Any, ...]]:
        return {"phi": (1.0, 1.5, 2.0), "beta": (0.2, 0.4)}

    def __check_init__(self) -> None:
        check_integer("Chebyshev order K", self.K, 1)
        check_number("flatness phi", self.phi, 0.0, strict_low=True)
        check_integer("eta (ideal low-pass rank)", self.eta, 0)
        check_number("alpha", self.alpha, -np.inf)
        check_number("beta", self.beta, -np.inf)
        for name in ("coefficients", "band_gains"):
            values = getattr(self, name)
            if values is not None and not (isinstance(values, tuple) and values and all(np.isfinite(values))):
                raise ConfigError(f"{name} must be a non-empty list of finite numbers, got {values!r}")
        if self.coefficients is not None and len(self.coefficients) != self.K + 1:
            raise ConfigError(f"coefficients must hold K + 1 = {self.K + 1} numbers, got {len(self.coefficients)}")
        if self.band_gains is not None and len(self.band_gains) > self.eta:
            raise ConfigError(f"band_gains has {len(self.band_gains)} bands, more than the eta = {self.eta} eigenvectors")
        if self.target_points not in TARGET_POINTS:
            raise ConfigError(f"target_points must be one of {', '.join(TARGET_POINTS)}, got {self.target_points!r}")
        native_kernel.check_choice(self.kernel)
        check_svd_settings(self.svd_solver, self.svd_tol)

    @property
    def filter_coefficients(self) -> np.ndarray:
        """``c_0 .. c_K`` (float64): the ``coefficients`` setting, else the plateau's interpolant."""
        if self.coefficients is not None:
            return np.asarray(self.coefficients)
        return plateau_coefficients(self.K, self.phi, self.target_points)

    def vector_gains(self, n: int) -> np.ndarray:
        """The gain of each of ``n`` ideal eigenvectors: ``band_gains`` spread over equal bands (1 without)."""
        return np.ones(n) if self.band_gains is None else np.asarray(self.band_gains)[band_of(n, len(self.band_gains))]

    @property
    def has_ideal(self) -> bool:
        return self.eta > 0 and self.alpha != 0

    def fit_key(self) -> tuple:
        return (self.eta if self.has_ideal else None, self.band_gains, self.svd_solver, self.svd_tol, self.beta, self.kernel)

    def fit_matrix(self, train: sp.csr_matrix, spectra: SpectrumCache | None = None) -> ChebyCF:
        spectra = SpectrumCache() if spectra is None else spectra
        graph = build_graph(train, None, kernel=self.kernel, spectra=spectra)
        _, _, degree = spectra.normalized(train)
        pre, post = (degree_power(degree, p) if self.beta != 0 else np.ones_like(degree) for p in (-self.beta, self.beta))
        ideal, s = None, None
        if self.has_ideal:
            check_rank(self.eta, train.shape, "eta")
            spec = spectra.spectrum(train, self.eta, self.svd_solver, self.svd_tol)
            vt = spec.vectors
            left = (vt.T * self.vector_gains(vt.shape[0])).astype(np.float32)
            ideal = LowRank(jnp.asarray(left), jnp.asarray(vt.astype(np.float32)), kernel_for(np.float32, self.kernel))
            s = jnp.asarray(spec.values.astype(np.float32))
        return dataclasses.replace(
            self, graph=graph, ideal_pass=ideal, pre=jnp.asarray(pre, jnp.float32), post=jnp.asarray(post, jnp.float32),
            singular_values=s, fitted_on=TrainInfo.of(train))

    def scoring_bytes_per_user(self, n_items: int) -> int:
        """float32 rows alive per user: input, three recurrence states, the sum, the add-on, and ``X R~^T``."""
        return 4 * (7 * n_items + intermediate_length(self.graph))

    def layout_filter(self, rows: Rows) -> tuple[LayoutScores, dict]:
        """``post`` of the filter of ``pre``-scaled rows, in the graph's layout."""
        self.require_fitted()
        layout = self.graph.layout(rows.shape[0])
        out = self._core(layout, scale_columns(rows, self.pre))
        return LayoutScores(layout.view(Diagonal(self.post))(out), layout, rows.shape[0]), {}

    def _core(self, layout: AbstractLayout, x: Rows) -> Array:
        """``sum_k c_k x T_k(L~) + alpha x V V^T`` in ``layout``."""
        laplacian = layout.view(Identity() - 2.0 * self.graph.gram)
        out = chebyshev_series(laplacian, layout.enter(x), self.filter_coefficients)
        if self.ideal_pass is not None:
            out = out + self.alpha * layout.low_rank(self.ideal_pass, x)
        return out

    def filter_rows(self, x: Float[Array, "b n_items"]) -> Float[Array, "b n_items"]:
        self.require_fitted()
        return self._core(RowLayout(), x)

    def ideal_cutoff(self) -> float | None:
        self.require_fitted()
        return None if self.singular_values is None else float(self.singular_values[-1]) ** 2

    def on_spectrum(self, eigenvalues: Float[Array, " n"]) -> ChebyCF:
        info = self.require_fitted()
        s2 = None if self.singular_values is None else np.asarray(self.singular_values, np.float64) ** 2
        gains = None
        if s2 is not None:  # the gain of the fitted eigenvector each eigenvalue would be, by its rank
            position = np.minimum(np.searchsorted(-s2, -np.asarray(eigenvalues, np.float64), side="left"), len(s2) - 1)
            gains = self.vector_gains(len(s2))[position]
        graph, ideal = self.spectral_graph(eigenvalues, self.ideal_cutoff(), gains)
        ones = jnp.ones_like(graph.item_scale)
        return dataclasses.replace(self, graph=graph, ideal_pass=ideal, pre=ones, post=ones, fitted_on=info)
