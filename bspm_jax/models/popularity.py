"""Item popularity: every user gets the items ranked by their train degree."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float

from ..spectral import SpectrumCache, item_degrees
from .base import AbstractTrainingFree, Rows, TrainInfo


class Popularity(AbstractTrainingFree):
    """score(u, i) = deg(i), the number of train interactions of item i.

    It has no settings; its fitted state is ``degree``.
    """

    name: ClassVar[str] = "popularity"
    degree: Float[Array, " n_items"] | None = None

    def search_space(self) -> dict[str, tuple[Any, ...]]:
        return {}

    def fit_key(self) -> tuple[()]:
        return ()

    def fit_matrix(self, train: sp.csr_matrix, spectra: SpectrumCache | None = None) -> Popularity:
        degree = jnp.asarray(item_degrees(train).astype(np.float32))
        return dataclasses.replace(self, degree=degree, fitted_on=TrainInfo.of(train))

    @eqx.filter_jit
    def score(self, rows: Rows) -> Float[Array, "b n_items"]:
        self.require_fitted()
        return jnp.broadcast_to(self.degree, rows.shape)
