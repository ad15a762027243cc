"""The MLP model of neural collaborative filtering (He et al., WWW 2017): y(u, i) = sigmoid(h . tower([p_u; q_i]) + b).

``layers`` are He's: layers[0] is the width of the concatenated embeddings (each of
size layers[0] / 2), then one ReLU dense layer per further width ([64, 32, 16, 8]: three
layers 64 -> 32 -> 16 -> 8), then the prediction layer. See :mod:`bspm_jax.models.ncf`
for the training objective, initialisation and regularisation.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..diffusion.denoiser import Affine
from .ncf import AbstractNCF, check_layers, init_tower, lecun_uniform, tower_grid, tower_pairs, widths
from .trained import normal_table


class MLP(AbstractNCF):
    """He's MLP with tower ``layers``; ``pair_scores`` is the logit h . tower([p_u; q_i]) + b.

    Attributes:
        sampling: epoch's (user, positive) pairs, 'pairs' (each train pair once) or 'users' (uniform users; needs 'bpr').
        reg: L2 weight, reg/2 times the batch mean of the squared embedding rows touched, finite and >= 0 (He's code: 0).
        loss: objective, 'bce' (He's log loss on sampled negatives) or 'bpr' (BPR triples, as NGCF's NCF baseline).
        negatives: sampled unseen items per positive under 'bce', integer >= 1 (He's num_neg, 4); unused by 'bpr'.
        init_scale: standard deviation of the N(0, init_scale^2) initial embeddings, finite and > 0 (He's 0.01).
        layers: tower widths, layers[0] (even) the concatenated embeddings, then one ReLU layer per width (He's layers).
    """

    name: ClassVar[str] = "mlp"
    layers: tuple[int, ...] = eqx.field(static=True, default=(64, 32, 16, 8), converter=widths)
    user_embedding: Float[Array, "n_users d"] | None = None
    item_embedding: Float[Array, "n_items d"] | None = None
    tower: tuple[Affine, ...] | None = None
    predict: Affine | None = None

    def __check_init__(self) -> None:
        check_layers(self.layers)

    def init(self, key: jax.Array, train: sp.csr_matrix) -> MLP:
        """Embeddings of size layers[0] / 2 from N(0, init_scale^2), a Glorot-uniform tower, a LeCun-uniform prediction layer."""
        n_users, n_items = train.shape
        half = self.layers[0] // 2
        ku, ki, kt, kh = jax.random.split(key, 4)
        return dataclasses.replace(self, user_embedding=normal_table(ku, (n_users, half), self.init_scale),
                                   item_embedding=normal_table(ki, (n_items, half), self.init_scale),
                                   tower=init_tower(kt, self.layers), predict=lecun_uniform(kh, self.layers[-1], 1))

    def embedding_tables(self) -> tuple[tuple[Array, Array], ...]:
        return ((self.user_embedding, self.item_embedding),)

    def feature_width(self) -> int:
        return sum(self.layers[1:]) or self.layers[0]

    def features(self, users: Int[Array, " b"], items: Int[Array, " b"]) -> Float[Array, "b f"]:
        """tower([p_u; q_i]), the vector the prediction layer weighs."""
        return tower_pairs(self.tower, self.user_embedding[users], self.item_embedding[items])

    def pair_scores(self, users: Int[Array, " b"], items: Int[Array, " b"]) -> Float[Array, " b"]:
        """The logit h . tower([p_{u_n}; q_{i_n}]) + b."""
        return self.predict(self.features(users, items))[:, 0]

    @eqx.filter_jit
    def score_users(self, users: Int[Array, " b"]) -> Float[Array, "b n_items"]:
        """The logits of every item for each user (the tower over all items, its first layer split)."""
        grid = tower_grid(self.tower, self.user_embedding[users], self.item_embedding)
        return grid @ self.predict.weight[:, 0] + self.predict.bias[0]
