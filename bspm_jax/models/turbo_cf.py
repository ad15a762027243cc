"""Turbo-CF (Park et al., SIGIR 2024): a polynomial of an item-item matrix whose entries are raised to a power.

``R_a = D_U^-a R D_I^(a-1)``, ``P = (R_a^T R_a)^{.s}`` (each entry to the power ``s``), and
the scores of user rows ``r`` are ``r f(P)`` with one of the paper's filters:

- 1: ``f(P) = P``
- 2: ``f(P) = 2 P - P^2``
- 3: ``f(P) = P + 0.01 (-P^3 + 10 P^2 - 29 P)``

The elementwise power needs ``P`` itself, so it is built as a sparse matrix (on Gowalla
about 2.5% of its entries are nonzero); its size is bounded by ``sum_u d_u^2`` and the
square of the catalogue, and the fit refuses before building it when that does not fit.
Its Gowalla settings: a 0.6, s 0.7, filter 1 (reported Recall@20 0.1835).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import numpy as np
import scipy.sparse as sp

from ..runtime import native as native_kernel
from ..runtime.checks import check_number
from ..errors import ConfigError
from ..runtime.memory import require_bytes
from ..filtering.operators import Sparse, SparseMatrix, layout_for
from ..spectral import SpectrumCache, degree_power, degrees
from .base import AbstractLayoutFilter, LayoutScores, Rows, TrainInfo

FILTERS: dict[int, tuple[float, ...]] = {1: (1.0,), 2: (2.0, -1.0), 3: (0.71, 0.1, -0.01)}
"""Each filter as the coefficients ``a_1, a_2, ...`` of ``f(P) = sum_j a_j P^j``."""

BYTES_PER_ENTRY = 2 * (4 + 4) + 8 + 8
"""Bytes per nonzero of ``P`` while it is built: float64 value and int64 index from SciPy, then float32 and int32 twice (``P`` and its transpose)."""


class TurboCF(AbstractLayoutFilter):
    """Turbo-CF: ``r f(P)`` with ``P = (R_a^T R_a)^{.s}``, ``R_a = D_U^-a R D_I^(a-1)``.

    Park et al., SIGIR 2024; the defaults are its Gowalla settings (a 0.6, s 0.7, filter 1).

    Attributes:
        alpha: normalisation exponent a of R_a = D_U^-a R D_I^(a-1), any finite number (the paper's a, code's --alpha).
        power: entrywise power s of P = (R_a^T R_a)^{.s}, finite and > 0 (the paper's s, code's --power).
        filter: polynomial f(P), one of 1 (P), 2 (2P - P^2), 3 (P + 0.01 (-P^3 + 10 P^2 - 29 P)) (the paper's filters).
        kernel: product path, one of 'auto', 'avx512', 'avx2', 'baseline' (native CPU kernel) or 'jax' (pure JAX).
    """

    name: ClassVar[str] = "turbo-cf"
    alpha: float = eqx.field(static=True, default=0.6)
    power: float = eqx.field(static=True, default=0.7)
    filter: int = eqx.field(static=True, default=1)
    kernel: str = eqx.field(static=True, default="auto")
    item_item: Sparse | None = None
    """``P`` (float32)."""

    def search_space(self) -> dict[str, tuple[Any, ...]]:
        return {"alpha": (0.4, 0.6, 0.8), "power": (0.5, 0.7)}

    def __check_init__(self) -> None:
        check_number("alpha", self.alpha, -np.inf)
        check_number("power", self.power, 0.0, strict_low=True)
        if self.filter not in FILTERS:
            raise ConfigError(f"filter must be one of {', '.join(map(str, FILTERS))}, got {self.filter!r}")
        native_kernel.check_choice(self.kernel)

    def fit_key(self) -> tuple:
        return (self.alpha, self.power, self.kernel)

    def fit_matrix(self, train: sp.csr_matrix, spectra: SpectrumCache | None = None) -> TurboCF:
        r = sp.csr_matrix(train, dtype=np.float64, copy=True)  # a copy: the caller's matrix stays as it is
        r.eliminate_zeros()
        r.data[:] = 1.0
        user_degree, item_degree = degrees(r, axis=1), degrees(r, axis=0)
        bound = min(float(np.sum(user_degree ** 2)), float(r.shape[1]) ** 2)
        require_bytes(int(bound * BYTES_PER_ENTRY), f"Turbo-CF's item-item matrix P (up to {int(bound):,} nonzeros)",
                      "use a model that applies R~^T R~ matrix-free (bspm, chebycf)")
        ra = sp.diags(degree_power(user_degree, -self.alpha)) @ r @ sp.diags(degree_power(item_degree, self.alpha - 1))
        p = sp.csr_matrix(ra.T @ ra)
        p.data **= self.power
        return dataclasses.replace(self, item_item=Sparse(SparseMatrix.from_scipy(p, np.float32, kernel=self.kernel)),
                                   fitted_on=TrainInfo.of(train))

    @property
    def n_nonzero(self) -> int:
        """Nonzeros of ``P``."""
        return int(self.item_item.matrix.matrix.nse)

    def scoring_bytes_per_user(self, n_items: int) -> int:
        """float32 rows alive per user: the input, the Horner state and its product, the result."""
        return 4 * 4 * n_items

    def layout_filter(self, rows: Rows) -> tuple[LayoutScores, dict]:
        """``x f(P)`` by Horner's rule: ``(((a_d x) P + a_{d-1} x) P + ... + a_1 x) P``."""
        self.require_fitted()
        layout = layout_for(self.item_item.matrix.native, rows.shape[0])
        op = layout.view(self.item_item)
        x = layout.enter(rows)
        *rest, last = FILTERS[self.filter]
        y = x if last == 1.0 else last * x
        for a in reversed(rest):
            y = op.affine(y, 1.0, ((a, x),))
        return LayoutScores(op(y), layout, rows.shape[0]), {}
