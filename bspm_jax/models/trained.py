"""Models whose fitted state is parameters learned by gradient descent (see :mod:`bspm_jax.training`).

Settings stay static fields; ``init`` returns a copy holding freshly drawn parameter
arrays, and :func:`bspm_jax.training.train` fits them. Models never import training, so
``fit`` only says where training lives.
"""

from __future__ import annotations

import abc
import dataclasses
import numbers
from typing import Any, Self

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..errors import ConfigError
from ..operators import RowLayout
from ..rows import SparseRows
from .base import AbstractRecommender, HostMatrix, LayoutScores, Rows, masked_top_k


class AbstractTrainedRecommender(AbstractRecommender):
    """A recommender fitted by gradient descent: ``init`` draws its parameters, training fits them.

    Like every model, a subclass ends with ``train: HostMatrix | None = fitted_train_field()``.
    """

    @abc.abstractmethod
    def init(self, key: jax.Array, n_users: int, n_items: int) -> Self:
        """A copy with freshly initialised parameter arrays (settings unchanged)."""

    def fit(self, train: sp.csr_matrix) -> Self:
        """Refused: trained models are fitted with :func:`bspm_jax.training.train`."""
        raise ConfigError(
            f"model {self.name!r} is trained by gradient descent: use "
            "bspm_jax.training.train(model, train, settings, validate) instead of fit"
        )

    def with_train(self, train: sp.csr_matrix) -> Self:
        """A copy that keeps ``train`` (the matrix it was trained on) for ``recommend``."""
        return dataclasses.replace(self, train=HostMatrix(sp.csr_matrix(train, dtype=np.float32)))

    def score_batch(self, users: Int[Array, " b"], rows: SparseRows) -> tuple[LayoutScores, dict[str, Any]]:
        """Scores of a batch given both the users' indices and their rows (default: from the rows)."""
        return self.layout_scores_with_stats(rows)

    def recommend(
        self, users_or_rows: Any, k: int = 20, filter_seen: bool = True, batch_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for user indices (1-D ints), their train items excluded."""
        train: HostMatrix | None = getattr(self, "train", None)
        if train is None:
            raise ConfigError("the model is not trained: call bspm_jax.training.train first")
        n, n_items = train.matrix.shape
        users = np.asarray(users_or_rows)
        if sp.issparse(users_or_rows) or users.ndim != 1 or not np.issubdtype(users.dtype, np.integer):
            raise ConfigError(f"model {self.name!r} recommends for user indices (1-D integers), not rows")
        if users.size and (users.min() < 0 or users.max() >= n):
            raise ConfigError(f"user indices must be in 0..{n - 1}")
        if not (isinstance(k, numbers.Integral) and 1 <= k <= n_items):
            raise ConfigError(f"k must be an integer in 1..{n_items}, got {k!r}")
        if not (isinstance(batch_size, numbers.Integral) and batch_size >= 1):
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        size = int(max(1, min(batch_size, users.size)))
        empty = sp.csr_matrix((users.size, n_items), dtype=np.float32)
        items, scores = np.zeros((users.size, k), np.int32), np.zeros((users.size, k), np.float32)
        for start in range(0, users.size, size):
            batch = users[start : start + size]
            padded = jnp.asarray(np.pad(batch, (0, size - batch.size)), dtype=jnp.int32)
            rows = SparseRows.from_scipy(train.matrix[batch], size)
            seen = rows if filter_seen else SparseRows.from_scipy(empty[: batch.size], size)
            values, top = masked_top_k(self.score_batch(padded, rows)[0].rows(), seen, k)
            items[start : start + batch.size] = np.asarray(top)[: batch.size]
            scores[start : start + batch.size] = np.asarray(values)[: batch.size]
        return items, scores


class AbstractPairwise(AbstractTrainedRecommender):
    """A model of scores s(u, i) by user and item index, trained on (user, positive, negative) triples."""

    @abc.abstractmethod
    def pair_scores(self, users: Int[Array, " b"], items: Int[Array, " b"]) -> Float[Array, " b"]:
        """s(users[n], items[n]) for each n."""

    @abc.abstractmethod
    def penalty(self, users: Int[Array, " b"], pos: Int[Array, " b"], neg: Int[Array, " b"]) -> Float[Array, ""]:
        """The regularisation term of a batch (an L2 term on the embeddings it touches)."""

    @abc.abstractmethod
    def score_users(self, users: Int[Array, " b"]) -> Float[Array, "b n_items"]:
        """Scores of every item for each user index."""

    def score(self, rows: Rows) -> Float[Array, "b n_items"]:
        """Refused: the model scores users by index (:meth:`score_users`), not by their rows."""
        raise ConfigError(f"model {self.name!r} scores users by index: call score_users(users) or score_batch(users, rows)")

    def score_batch(self, users: Int[Array, " b"], rows: SparseRows) -> tuple[LayoutScores, dict[str, Any]]:
        """Scores of the users by index (``rows`` unused)."""
        return LayoutScores(self.score_users(users), RowLayout(), users.shape[0]), {}
