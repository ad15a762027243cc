"""Matrix factorisation trained with the BPR loss: s(u, i) = <p_u, q_i>."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..runtime.checks import check_integer, check_number
from ..errors import ConfigError
from .trained import AbstractBPR, normal_table


class MFBPR(AbstractBPR):
    """MF-BPR (Rendle et al., 2009): s(u, i) = p_u . q_i, embeddings ~ N(0, init_scale^2).

    Attributes:
        sampling: epoch's (user, positive) pairs, 'pairs' (each train pair once) or 'users' (LightGCN's sampler).
        reg: L2 weight, reg/2 times the batch mean of the triple's squared embeddings, finite and >= 0 (BPR-Opt's lambda).
        dim: embedding size (latent factors), integer >= 1.
        init_scale: standard deviation of the N(0, init_scale^2) initial embeddings, finite and > 0.
    """

    name: ClassVar[str] = "mf-bpr"
    dim: int = eqx.field(static=True, default=64)
    reg: float = eqx.field(static=True, default=1e-4)
    init_scale: float = eqx.field(static=True, default=0.1)
    user_embedding: Float[Array, "n_users dim"] | None = None
    item_embedding: Float[Array, "n_items dim"] | None = None

    def __check_init__(self) -> None:
        check_integer("dim (the embedding size)", self.dim, 1)
        check_number("reg", self.reg, 0)
        check_number("init_scale", self.init_scale, 0)
        if self.init_scale == 0:
            raise ConfigError("init_scale must be > 0 (all-zero embeddings get no BPR gradient)")

    def init(self, key: jax.Array, train: sp.csr_matrix) -> MFBPR:
        """Embeddings drawn from N(0, init_scale^2), float32, one per user and item of ``train``."""
        n_users, n_items = train.shape
        ku, ki = jax.random.split(key)
        return dataclasses.replace(self, user_embedding=normal_table(ku, (n_users, self.dim), self.init_scale),
                                   item_embedding=normal_table(ki, (n_items, self.dim), self.init_scale))

    def pair_scores(self, users: Int[Array, " b"], items: Int[Array, " b"]) -> Float[Array, " b"]:
        """s(u_n, i_n) = p_{u_n} . q_{i_n}."""
        return jnp.sum(self.user_embedding[users] * self.item_embedding[items], axis=-1)

    def embedding_tables(self) -> tuple[tuple[Array, Array], ...]:
        """The embeddings (P, Q)."""
        return ((self.user_embedding, self.item_embedding),)

    @eqx.filter_jit
    def score_users(self, users: Int[Array, " b"]) -> Float[Array, "b n_items"]:
        """P[users] Q^T."""
        return self.user_embedding[users] @ self.item_embedding.T
