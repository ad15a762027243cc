"""GMF, generalized matrix factorization (He et al., WWW 2017): y(u, i) = sigmoid(h . (p_u * q_i) + b).

See :mod:`bspm_jax.models.ncf` for the training objective, initialisation and regularisation.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..runtime.checks import check_integer
from ..diffusion.denoiser import Affine
from .ncf import AbstractNCF, lecun_uniform
from .trained import normal_table


class GMF(AbstractNCF):
    """GMF with ``factors``-dimensional embeddings; ``pair_scores`` is the logit h . (p_u * q_i) + b.

    Attributes:
        sampling: epoch's (user, positive) pairs, 'pairs' (each train pair once) or 'users' (uniform users; needs 'bpr').
        reg: L2 weight, reg/2 times the batch mean of the squared embedding rows touched, finite and >= 0 (He's code: 0).
        loss: objective, 'bce' (He's log loss on sampled negatives) or 'bpr' (BPR triples, as NGCF's NCF baseline).
        negatives: sampled unseen items per positive under 'bce', integer >= 1 (He's num_neg, 4); unused by 'bpr'.
        init_scale: standard deviation of the N(0, init_scale^2) initial embeddings, finite and > 0 (He's 0.01).
        factors: embedding size, the predictive factors of GMF, integer >= 1 (He's num_factors, 8).
    """

    name: ClassVar[str] = "gmf"
    factors: int = eqx.field(static=True, default=8)
    user_embedding: Float[Array, "n_users factors"] | None = None
    item_embedding: Float[Array, "n_items factors"] | None = None
    predict: Affine | None = None

    def __check_init__(self) -> None:
        check_integer("factors (the embedding size)", self.factors, 1)

    def init(self, key: jax.Array, train: sp.csr_matrix) -> GMF:
        """Embeddings from N(0, init_scale^2), a LeCun-uniform prediction layer (float32)."""
        n_users, n_items = train.shape
        ku, ki, kh = jax.random.split(key, 3)
        return dataclasses.replace(self, user_embedding=normal_table(ku, (n_users, self.factors), self.init_scale),
                                   item_embedding=normal_table(ki, (n_items, self.factors), self.init_scale),
                                   predict=lecun_uniform(kh, self.factors, 1))

    def embedding_tables(self) -> tuple[tuple[Array, Array], ...]:
        return ((self.user_embedding, self.item_embedding),)

    def features(self, users: Int[Array, " b"], items: Int[Array, " b"]) -> Float[Array, "b factors"]:
        """p_u * q_i, the vector the prediction layer weighs."""
        return self.user_embedding[users] * self.item_embedding[items]

    def pair_scores(self, users: Int[Array, " b"], items: Int[Array, " b"]) -> Float[Array, " b"]:
        """The logit h . (p_{u_n} * q_{i_n}) + b."""
        return self.predict(self.features(users, items))[:, 0]

    @eqx.filter_jit
    def score_users(self, users: Int[Array, " b"]) -> Float[Array, "b n_items"]:
        """(P[users] * h) Q^T + b."""
        return (self.user_embedding[users] * self.predict.weight[:, 0]) @ self.item_embedding.T + self.predict.bias[0]
