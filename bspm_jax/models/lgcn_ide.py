"""LGCN-IDE, the GF-CF paper's LightGCN with an ideal design: ``R~_u P~^layers``, no training."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import scipy.sparse as sp
from jaxtyping import Array, Float

from ..runtime import native as native_kernel
from ..errors import ConfigError
from ..filtering.graph import ItemGraph, build_graph, intermediate_length
from ..filtering.rows import as_dense
from ..spectral import SpectrumCache
from .base import AbstractSpectralFilter, Rows, TrainInfo


class LGCNIDE(AbstractSpectralFilter):
    """LightGCN with an ideal design (GF-CF paper): ``R~_u P~^layers`` with ``R~_u = d_u^-1/2 R_u V^-1/2``.

    Shen et al., CIKM 2021 (LGCN-IDE); no training, no SVD.

    Attributes:
        layers: power of P~ = R~^T R~ applied to the normalised row (propagation layers), integer >= 1.
        kernel: product path, one of 'auto', 'avx512', 'avx2', 'baseline' (native CPU kernel) or 'jax' (pure JAX).
    """

    name: ClassVar[str] = "lgcn-ide"
    layers: int = eqx.field(static=True, default=1)
    kernel: str = eqx.field(static=True, default="auto")
    graph: ItemGraph | None = None

    def search_space(self) -> dict[str, tuple[Any, ...]]:
        return {"layers": (1, 2, 3)}

    def __check_init__(self) -> None:
        if not (isinstance(self.layers, int) and self.layers >= 1):
            raise ConfigError(f"layers must be an integer >= 1, got {self.layers!r}")
        native_kernel.check_choice(self.kernel)

    def fit_key(self) -> tuple[str]:
        return (self.kernel,)

    def fit_matrix(self, train: sp.csr_matrix, spectra: SpectrumCache | None = None) -> LGCNIDE:
        graph = build_graph(train, None, kernel=self.kernel, spectra=spectra)
        return dataclasses.replace(self, graph=graph, fitted_on=TrainInfo.of(train))

    def scoring_bytes_per_user(self, n_items: int) -> int:
        """float32 rows alive per user: a few score rows and the intermediate of ``(X R~^T) R~``."""
        return 4 * (3 * n_items + intermediate_length(self.graph))

    @eqx.filter_jit
    def score(self, rows: Rows) -> Float[Array, "b n_items"]:
        self.require_fitted()
        rows = as_dense(rows)
        degree = rows.sum(axis=1, keepdims=True)
        user_scale = jnp.where(degree > 0, 1.0 / jnp.sqrt(jnp.where(degree > 0, degree, 1.0)), 0.0)
        return self.filter_rows(rows * user_scale * self.graph.item_scale)

    def filter_rows(self, x: Float[Array, "b n_items"]) -> Float[Array, "b n_items"]:
        """``x P~^layers``."""
        for _ in range(self.layers):
            x = self.graph.gram(x)
        return x

    def ideal_cutoff(self) -> None:
        return None

    def on_spectrum(self, eigenvalues: Float[Array, " n"]) -> LGCNIDE:
        info = self.require_fitted()
        return dataclasses.replace(self, graph=self.spectral_graph(eigenvalues, None)[0], fitted_on=info)
