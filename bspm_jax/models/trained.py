"""Models whose fitted state is parameters learned by gradient descent (see :mod:`bspm_jax.training`).

Settings stay static fields; ``init`` returns a copy holding freshly drawn parameter
arrays, and :func:`bspm_jax.training.train` fits them (models never import training).
Embedding models score the users they were trained on, by index (``SparseRows.user``).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..errors import ConfigError
from ..filtering.rows import SparseRows
from .base import AbstractRecommender, Rows, TrainInfo


class AbstractTrainedRecommender(AbstractRecommender):
    """A recommender fitted by gradient descent: ``init`` draws its parameters, :mod:`bspm_jax.training` fits them.

    ``frozen`` names array fields that ``init`` computes from the data and training leaves
    unchanged (e.g. a spectral basis); every other array leaf is a trained parameter.
    """

    frozen: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def init(self, key: jax.Array, train: sp.csr_matrix) -> AbstractTrainedRecommender:
        """A copy with freshly initialised parameter arrays for the binary (n_users, n_items) ``train`` (settings unchanged)."""

    def with_train(self, train: sp.spmatrix) -> AbstractTrainedRecommender:
        """A copy that records ``train`` (the matrix it is trained on) as its :class:`TrainInfo`."""
        return dataclasses.replace(self, fitted_on=TrainInfo.of(train))


def l2_penalty(reg: float, rows: tuple[tuple[Array, Array], ...]) -> Float[Array, ""]:
    """reg/2 * mean_n sum_j |T_j[idx_j[n]]|^2 for pairs (T_j, idx_j): the L2 term on the embeddings a batch touches."""
    return 0.5 * reg * jnp.mean(sum(jnp.sum(table[idx] ** 2, axis=-1) for table, idx in rows))


def normal_table(key: jax.Array, shape: tuple[int, int], scale: float) -> Float[Array, "n d"]:
    """A float32 table drawn from N(0, scale^2)."""
    return scale * jax.random.normal(key, shape, jnp.float32)


PAIR_SAMPLINGS = ("pairs", "users")
"""How a pairwise model's epoch draws its (user, positive) pairs: ``pairs``, every train pair once
in a random order; ``users``, as many draws as train pairs, each a user drawn uniformly and
one of its train items (the LightGCN reference code's sampler)."""


class AbstractPairwise(AbstractTrainedRecommender):
    """A model of scores s(u, i) by user and item index (trained on BPR triples, or labelled pairs for NCF models)."""

    sampling: str = eqx.field(static=True, default="pairs")
    """How an epoch draws its (user, positive) pairs: one of :data:`PAIR_SAMPLINGS`."""

    def __check_init__(self) -> None:
        if self.sampling not in PAIR_SAMPLINGS:
            raise ConfigError(f"sampling must be one of {', '.join(PAIR_SAMPLINGS)}, got {self.sampling!r}")

    @abc.abstractmethod
    def pair_scores(self, users: Int[Array, " b"], items: Int[Array, " b"]) -> Float[Array, " b"]:
        """s(users[n], items[n]) for each n."""

    reg: float = eqx.field(static=True, default=0.0)
    """The L2 weight of :meth:`penalty` (each model sets its default)."""

    @abc.abstractmethod
    def embedding_tables(self) -> tuple[tuple[Float[Array, "n_users d"], Float[Array, "n_items d"]], ...]:
        """The (user table, item table) pairs of embeddings the L2 term covers (LightGCN: its layer 0)."""

    def penalty(self, users: Int[Array, " b"], *items: Int[Array, " b"]) -> Float[Array, ""]:
        """reg/2 * mean_n sum_(P, Q) (|P[u_n]|^2 + sum_lists |Q[i_n]|^2): L2 on the embedding rows a batch touches.

        ``items``: one list for (user, item) examples, two (positives, negatives) for BPR triples.
        """
        return l2_penalty(self.reg, tuple(row for p, q in self.embedding_tables()
                                          for row in ((p, users), *((q, i) for i in items))))

    @abc.abstractmethod
    def score_users(self, users: Int[Array, " b"]) -> Float[Array, "b n_items"]:
        """Scores of every item for each user index."""

    scores_new_users: ClassVar[bool] = False

    def score(self, rows: Rows) -> Float[Array, "b n_items"]:
        """Scores of :class:`SparseRows` by their users' indices (the history itself is not used)."""
        if not isinstance(rows, SparseRows):
            raise ConfigError(f"model {self.name!r} scores users by index: pass SparseRows with user indices, "
                              "or call score_users(users)")
        return self.score_users(rows.user)

    def score_with_stats(self, rows: Rows) -> tuple[Array, dict[str, Any]]:
        return self.score(rows), {}


class AbstractBPR(AbstractPairwise):
    """A pairwise model trained on BPR triples (user, positive, unseen negative), the pairs drawn as ``sampling`` says."""

    def search_space(self) -> dict[str, tuple[Any, ...]]:
        return {"train.lr": (1e-3, 5e-3), "reg": (1e-4, 1e-3)}
