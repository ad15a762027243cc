"""NeuMF, neural matrix factorization (He et al., WWW 2017): GMF and MLP fused under one prediction layer.

``y(u, i) = sigmoid(h . [p^G_u * q^G_i ; tower([p^M_u; q^M_i])] + b)``, with separate
embeddings for the GMF part (``factors``) and the MLP part (``layers[0] / 2``).
See :mod:`bspm_jax.models.ncf` for the training objective, initialisation and
regularisation.

Pre-training (``pretrain = true``): :mod:`bspm_jax.training` first trains a :class:`GMF`
(``factors``) and an :class:`MLP` (``layers``) with the same ``[train]`` settings,
early-stopped on the same validation, and starts NeuMF from :func:`neumf_from_parts`:
their embeddings and tower, prediction weights ``[alpha h_GMF ; (1 - alpha) h_MLP]`` and
bias ``alpha b_GMF + (1 - alpha) b_MLP`` (He's ``load_pretrain_model``, alpha = 0.5).
The paper then trains the fused model with plain SGD: so does ``finetune_lr`` (its rate);
unset, the run keeps its optimiser (Adam with ``train.lr``), like He's code when run with
``--learner adam``. The fused model is validated before its first epoch (epoch 0), so
early stopping keeps it when training only lowers the validation metric.

``part_epochs`` (GMF's, MLP's) are the parts' epoch counts when they train without
validation (a refit); pre-training with validation sets them to the parts' best epochs,
so the refit of a run trains each part for its own count.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..runtime.checks import check_integer, check_number
from ..diffusion.denoiser import Affine
from ..errors import ConfigError
from .gmf import GMF
from .mlp_cf import MLP
from .ncf import AbstractNCF, check_layers, init_tower, lecun_uniform, tower_grid, tower_pairs, widths
from .trained import normal_table


class NeuMF(AbstractNCF):
    """NeuMF with a ``factors``-dimensional GMF part and an MLP part of tower ``layers``; ``pair_scores`` is the logit.

    Attributes:
        sampling: epoch's (user, positive) pairs, 'pairs' (each train pair once) or 'users' (uniform users; needs 'bpr').
        reg: L2 weight, reg/2 times the batch mean of the squared embedding rows touched, finite and >= 0 (He's code: 0).
        loss: objective, 'bce' (He's log loss on sampled negatives) or 'bpr' (BPR triples, as NGCF's NCF baseline).
        negatives: sampled unseen items per positive under 'bce', integer >= 1 (He's num_neg, 4); unused by 'bpr'.
        init_scale: standard deviation of the N(0, init_scale^2) initial embeddings, finite and > 0 (He's 0.01).
        factors: embedding size of the GMF part, integer >= 1 (He's num_factors, 8).
        layers: MLP tower widths, layers[0] (even) the concatenated embeddings, then a ReLU layer per width (He's layers).
        pretrain: start from a trained GMF and MLP (He's pre-training), True or False.
        alpha: GMF share of the pre-trained prediction layer, in [0, 1] (the paper's alpha, 0.5).
        part_epochs: GMF's and MLP's epochs when pre-training without validation, two integers >= 1, or None (train.epochs).
        finetune_lr: plain SGD rate after pre-training, finite and > 0, or None (keep the run's Adam at train.lr).
    """

    name: ClassVar[str] = "neumf"
    factors: int = eqx.field(static=True, default=8)
    layers: tuple[int, ...] = eqx.field(static=True, default=(64, 32, 16, 8), converter=widths)
    pretrain: bool = eqx.field(static=True, default=False)
    alpha: float = eqx.field(static=True, default=0.5)
    part_epochs: tuple[int, int] | None = eqx.field(static=True, default=None, converter=widths)
    finetune_lr: float | None = eqx.field(static=True, default=None)
    gmf_user_embedding: Float[Array, "n_users factors"] | None = None
    gmf_item_embedding: Float[Array, "n_items factors"] | None = None
    mlp_user_embedding: Float[Array, "n_users d"] | None = None
    mlp_item_embedding: Float[Array, "n_items d"] | None = None
    tower: tuple[Affine, ...] | None = None
    predict: Affine | None = None

    def __check_init__(self) -> None:
        check_integer("factors (the GMF embedding size)", self.factors, 1)
        check_layers(self.layers)
        if not isinstance(self.pretrain, bool):
            raise ConfigError(f"pretrain must be true or false, got {self.pretrain!r}")
        check_number("alpha (the GMF share of the pre-trained prediction layer)", self.alpha, 0.0, 1.0)
        if self.finetune_lr is not None:
            check_number("finetune_lr (plain SGD's rate after pre-training)", self.finetune_lr, 0.0, strict_low=True)
        epochs = self.part_epochs
        if epochs is not None and not (isinstance(epochs, tuple) and len(epochs) == 2 and all(
                isinstance(e, numbers.Integral) and not isinstance(e, bool) and e >= 1 for e in epochs)):
            raise ConfigError(f"part_epochs must be two epoch counts >= 1 (GMF's, MLP's), got {epochs!r}")

    def init(self, key: jax.Array, train: sp.csr_matrix) -> NeuMF:
        """Fresh parameters (no pre-training): N(0, init_scale^2) embeddings, Glorot tower, LeCun prediction layer."""
        n_users, n_items = train.shape
        half = self.layers[0] // 2
        k1, k2, k3, k4, kt, kh = jax.random.split(key, 6)
        return dataclasses.replace(
            self,
            gmf_user_embedding=normal_table(k1, (n_users, self.factors), self.init_scale),
            gmf_item_embedding=normal_table(k2, (n_items, self.factors), self.init_scale),
            mlp_user_embedding=normal_table(k3, (n_users, half), self.init_scale),
            mlp_item_embedding=normal_table(k4, (n_items, half), self.init_scale),
            tower=init_tower(kt, self.layers),
            predict=lecun_uniform(kh, self.factors + self.layers[-1], 1),
        )

    def embedding_tables(self) -> tuple[tuple[Array, Array], ...]:
        return ((self.gmf_user_embedding, self.gmf_item_embedding), (self.mlp_user_embedding, self.mlp_item_embedding))

    def feature_width(self) -> int:
        return sum(self.layers[1:]) or self.layers[0]

    def features(self, users: Int[Array, " b"], items: Int[Array, " b"]) -> Float[Array, "b f"]:
        """[p^G_u * q^G_i ; tower([p^M_u; q^M_i])], the vector the prediction layer weighs."""
        gmf = self.gmf_user_embedding[users] * self.gmf_item_embedding[items]
        mlp = tower_pairs(self.tower, self.mlp_user_embedding[users], self.mlp_item_embedding[items])
        return jnp.concatenate([gmf, mlp], axis=-1)

    def pair_scores(self, users: Int[Array, " b"], items: Int[Array, " b"]) -> Float[Array, " b"]:
        """The logit h . [p^G_u * q^G_i ; tower([p^M_u; q^M_i])] + b."""
        return self.predict(self.features(users, items))[:, 0]

    @eqx.filter_jit
    def score_users(self, users: Int[Array, " b"]) -> Float[Array, "b n_items"]:
        """(P^G[users] * h_G) Q^G^T + tower grid . h_M + b."""
        h = self.predict.weight[:, 0]
        gmf = (self.gmf_user_embedding[users] * h[: self.factors]) @ self.gmf_item_embedding.T
        mlp = tower_grid(self.tower, self.mlp_user_embedding[users], self.mlp_item_embedding) @ h[self.factors :]
        return gmf + mlp + self.predict.bias[0]


def neumf_from_parts(model: NeuMF, gmf: GMF, mlp: MLP, alpha: float = 0.5) -> NeuMF:
    """``model``'s settings with the trained ``gmf``'s and ``mlp``'s parameters (He's ``load_pretrain_model``).

    Embeddings and tower are copied; the prediction layer is ``[alpha h_GMF ; (1 - alpha) h_MLP]``
    with bias ``alpha b_GMF + (1 - alpha) b_MLP``, so its logit is
    ``alpha logit_GMF + (1 - alpha) logit_MLP``. The parts must match ``model.factors`` and
    ``model.layers``, hold parameters, and have been trained on the same matrix.
    """
    if not (isinstance(model, NeuMF) and isinstance(gmf, GMF) and isinstance(mlp, MLP)):
        raise ConfigError(f"neumf_from_parts takes a NeuMF, a GMF and an MLP, got {type(model).__name__}, "
                          f"{type(gmf).__name__}, {type(mlp).__name__}")
    check_number("alpha", alpha, 0.0, 1.0)
    if gmf.factors != model.factors:
        raise ConfigError(f"the GMF has factors={gmf.factors}, the NeuMF factors={model.factors}")
    if tuple(mlp.layers) != tuple(model.layers):
        raise ConfigError(f"the MLP has layers={list(mlp.layers)}, the NeuMF layers={list(model.layers)}")
    if gmf.predict is None or mlp.predict is None:
        raise ConfigError("neumf_from_parts needs a GMF and an MLP with parameters: initialise or train them first")
    if gmf.user_embedding.shape[0] != mlp.user_embedding.shape[0] or gmf.item_embedding.shape[0] != mlp.item_embedding.shape[0]:
        raise ConfigError(f"the GMF has {gmf.user_embedding.shape[0]} users x {gmf.item_embedding.shape[0]} items, the MLP "
                          f"{mlp.user_embedding.shape[0]} x {mlp.item_embedding.shape[0]}")
    if gmf.fitted_on is not None and mlp.fitted_on is not None and gmf.fitted_on != mlp.fitted_on:
        raise ConfigError("the GMF and the MLP were trained on different matrices")
    a = jnp.float32(alpha)
    predict = Affine(jnp.concatenate([a * gmf.predict.weight, (1 - a) * mlp.predict.weight], axis=0),
                     a * gmf.predict.bias + (1 - a) * mlp.predict.bias)
    return dataclasses.replace(
        model,
        gmf_user_embedding=gmf.user_embedding,
        gmf_item_embedding=gmf.item_embedding,
        mlp_user_embedding=mlp.user_embedding,
        mlp_item_embedding=mlp.item_embedding,
        tower=mlp.tower,
        predict=predict,
        fitted_on=gmf.fitted_on if gmf.fitted_on is not None else mlp.fitted_on,
    )
