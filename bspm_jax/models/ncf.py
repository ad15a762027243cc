"""Neural collaborative filtering (He et al., WWW 2017): the common base of GMF, MLP and NeuMF, and their layers.

Each model predicts ``y(u, i) = sigmoid(h . phi(u, i) + b)`` from a feature vector
``phi`` of the user's and the item's embeddings; ``pair_scores`` returns the logit
``h . phi + b`` (ranking by it equals ranking by ``y``; the loss applies the sigmoid as
log-sigmoid, which stays finite for any logit).

Training (in :mod:`bspm_jax.training`), as ``loss`` says:

- ``"bce"`` (He's): binary cross-entropy on every train pair once per epoch with label 1
  and ``negatives`` items drawn uniformly from the user's unseen items with label 0,
  shuffled together (He's ``get_train_instances``); ``sampling`` must be ``"pairs"``.
- ``"bpr"``: BPR on (user, positive, unseen negative) triples drawn as ``sampling`` says,
  like LightGCN (``negatives`` is unused). This is the objective of the NCF baseline in
  the NGCF authors' code (``NMF.py``: BPR on user-uniform triples), whose Gowalla figures
  the LightGCN and BSPM papers quote.

Initialisation follows He's Keras 1 code: embeddings from N(0, ``init_scale``^2) with
``init_scale = 0.01``; the MLP tower's dense layers Glorot-uniform with zero biases
(Keras' default, :meth:`Affine.init`); the prediction layer LeCun-uniform,
U(-sqrt(3 / n_in), sqrt(3 / n_in)), with a zero bias.

Regularisation: ``reg / 2`` times the batch mean of the squared norms of the embedding
rows an example touches (every embedding table of the model); He's code uses no
regularisation (``reg = 0``, the default), and no weight decay on the dense layers here.
"""

from __future__ import annotations

import abc
import math
import numbers
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ..runtime.checks import check_integer, check_number
from ..diffusion.denoiser import Affine
from ..errors import ConfigError
from .trained import AbstractPairwise


def widths(value: Any) -> Any:
    """The ``layers`` setting as a tuple (TOML and JSON give lists)."""
    return tuple(value) if isinstance(value, list) else value


def check_layers(layers: Any) -> None:
    """``layers``: a non-empty list of widths >= 1 whose first (the concatenated embeddings) is even."""
    if not (isinstance(layers, tuple) and layers and all(
            isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1 for w in layers)):
        raise ConfigError(f"layers must be a non-empty list of layer widths >= 1, got {layers!r}")
    if layers[0] % 2:
        raise ConfigError(f"layers[0] (the user and item MLP embeddings concatenated) must be even, got {layers[0]}")


def lecun_uniform(key: jax.Array, n_in: int, n_out: int) -> Affine:
    """A dense layer with W ~ U(-sqrt(3 / n_in), sqrt(3 / n_in)) and b = 0 (Keras 1's ``lecun_uniform``)."""
    limit = math.sqrt(3.0 / n_in)
    return Affine(jax.random.uniform(key, (n_in, n_out), jnp.float32, -limit, limit), jnp.zeros((n_out,), jnp.float32))


def init_tower(key: jax.Array, layers: tuple[int, ...]) -> tuple[Affine, ...]:
    """Glorot-uniform dense layers layers[0] -> layers[1] -> ... -> layers[-1] (none for one width)."""
    keys = jax.random.split(key, max(len(layers) - 1, 1))
    return tuple(Affine.init(k, a, b) for k, a, b in zip(keys, layers[:-1], layers[1:]))


def run_tower(tower: tuple[Affine, ...], x: Float[Array, "*b n_in"]) -> Float[Array, "*b n_out"]:
    """ReLU after every dense layer (He's MLP layers are all ReLU; the prediction layer follows)."""
    for layer in tower:
        x = jax.nn.relu(layer(x))
    return x


def tower_pairs(tower: tuple[Affine, ...], users: Float[Array, "b d"], items: Float[Array, "b d"]) -> Float[Array, "b f"]:
    """The tower's output on the concatenations [p_n; q_n]."""
    return run_tower(tower, jnp.concatenate([users, items], axis=-1))


def tower_grid(tower: tuple[Affine, ...], users: Float[Array, "b d"], items: Float[Array, "n d"]) -> Float[Array, "b n f"]:
    """The tower's output on [p_u; q_i] for every user row and item row.

    The first layer is split, ``[p; q] W + c = p W_top + (q W_bottom + c)``, so the
    (b, n, 2d) concatenation is never built.
    """
    b, n, d = users.shape[0], items.shape[0], users.shape[1]
    if not tower:
        return jnp.concatenate([jnp.broadcast_to(users[:, None], (b, n, d)), jnp.broadcast_to(items[None], (b, n, d))], -1)
    first = tower[0]
    x = jax.nn.relu((users @ first.weight[:d])[:, None, :] + (items @ first.weight[d:] + first.bias)[None])
    return run_tower(tower[1:], x)


NCF_LOSSES = ("bce", "bpr")
"""The training objectives of a neural CF model (see the module docstring)."""


class AbstractNCF(AbstractPairwise):
    """A neural CF model trained by binary cross-entropy with ``negatives`` sampled negatives per positive, or by BPR.

    Attributes:
        sampling: epoch's (user, positive) pairs, 'pairs' (each train pair once) or 'users' (uniform users; needs 'bpr').
        reg: L2 weight, reg/2 times the batch mean of the squared embedding rows touched, finite and >= 0 (He's code: 0).
        loss: objective, 'bce' (He's log loss on sampled negatives) or 'bpr' (BPR triples, as NGCF's NCF baseline).
        negatives: sampled unseen items per positive under 'bce', integer >= 1 (He's num_neg, 4); unused by 'bpr'.
        init_scale: standard deviation of the N(0, init_scale^2) initial embeddings, finite and > 0 (He's 0.01).
    """

    loss: str = eqx.field(static=True, default="bce")
    negatives: int = eqx.field(static=True, default=4)
    reg: float = eqx.field(static=True, default=0.0)
    init_scale: float = eqx.field(static=True, default=0.01)

    def search_space(self) -> dict[str, tuple[Any, ...]]:
        return {"train.lr": (1e-3, 5e-3), "reg": (0.0, 1e-4)}

    def __check_init__(self) -> None:
        if self.loss not in NCF_LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(NCF_LOSSES)}, got {self.loss!r}")
        if self.loss == "bce" and self.sampling != "pairs":
            raise ConfigError(f"sampling = {self.sampling!r} needs loss = 'bpr' (the BCE examples use every train pair once)")
        check_integer("negatives (sampled negatives per positive)", self.negatives, 1)
        check_number("reg", self.reg, 0)
        check_number("init_scale", self.init_scale, 0, strict_low=True)

    def scoring_bytes_per_user(self, n_items: int) -> int:
        """A few score rows and the tower's activations over every item."""
        return 3 * n_items * 4 + 2 * n_items * self.feature_width() * 4

    def feature_width(self) -> int:
        """The widest per-item activation of ``score_users`` (GMF: none beyond the score row)."""
        return 1
