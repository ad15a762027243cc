"""Item popularity: every user gets the items ranked by their train degree."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Self

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float

from .base import AbstractRecommender, HostMatrix, Rows, fitted_train_field


class Popularity(AbstractRecommender):
    """score(u, i) = deg(i), the number of train interactions of item i."""

    name: ClassVar[str] = "popularity"
    degree: Float[Array, " n_items"] | None = None
    train: HostMatrix | None = fitted_train_field()

    def fit_key(self) -> tuple[()]:
        return ()

    def fit(self, train: sp.csr_matrix) -> Self:
        degree = np.asarray((train > 0).sum(axis=0), dtype=np.float32).ravel()
        return dataclasses.replace(self, degree=jnp.asarray(degree), train=HostMatrix(train))

    @eqx.filter_jit
    def score(self, rows: Rows) -> Float[Array, "b n_items"]:
        return jnp.broadcast_to(self.degree, rows.shape)
