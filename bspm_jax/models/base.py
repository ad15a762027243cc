"""The interface every recommender implements: fit on the train matrix, score user rows."""

from __future__ import annotations

import abc
import functools
import dataclasses
from typing import Any, ClassVar, Self

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..errors import ConfigError
from ..operators import AbstractLayout, RowLayout
from ..rows import SparseRows, as_dense

Rows = Float[Array, "b n_items"] | SparseRows
"""User rows, dense or as :class:`SparseRows`."""


def fitted_train_field() -> Any:
    """The static field in which a fitted model keeps its train matrix."""
    return eqx.field(static=True, default=None, metadata={"fitted": True})


class HostMatrix:
    """A host-side scipy CSR kept in a model as a static field.

    Scoring never reads it, so every HostMatrix compares equal: jit caches keyed on the
    model's static fields then do not recompile for each newly fitted model.
    """

    def __init__(self, matrix: sp.csr_matrix):
        self.matrix = matrix

    def rows(self, users: np.ndarray) -> np.ndarray:
        """Dense float32 rows of the given users."""
        return self.matrix[np.asarray(users)].toarray().astype(np.float32, copy=False)

    def device_rows(self, users: np.ndarray, n_rows: int | None = None) -> SparseRows:
        """The rows of ``users`` as :class:`SparseRows` on the device, padded to ``n_rows`` rows."""
        return SparseRows.from_scipy(self.matrix[np.asarray(users)], n_rows)

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostMatrix)


@functools.partial(jax.jit, static_argnums=2)
def masked_top_k(
    scores: Float[Array, "b n"], seen: SparseRows, k: int
) -> tuple[Float[Array, "b k"], Int[Array, "b k"]]:
    """Top-k items per row with the ``seen`` items scored -inf; ties: lower index."""
    return RowLayout().top_k(scores, seen, k)


class LayoutScores(eqx.Module):
    """Scores of a batch kept in the layout the model computed them in, ready for top-k."""

    values: Array
    layout: AbstractLayout
    batch: int = eqx.field(static=True)

    def rows(self) -> Float[Array, "b n_items"]:
        """The scores as (batch, n_items) rows."""
        return self.layout.leave(self.values, self.batch)


@eqx.filter_jit
def layout_top_k(scores: LayoutScores, seen: SparseRows, k: int) -> tuple[Float[Array, "b k"], Int[Array, "b k"]]:
    """Top-k items per row of ``scores`` with the ``seen`` items excluded; ties: lower index."""
    return scores.layout.top_k(scores.values, seen, k)


@eqx.filter_jit
def batched_top_k(
    model: AbstractRecommender, rows: SparseRows, k: int
) -> tuple[Float[Array, "batches b k"], Int[Array, "batches b k"], dict[str, Any]]:
    """Top-k of every batch of stacked rows (:meth:`SparseRows.stacked`), seen items excluded.

    One device program scores all batches in turn (``lax.map``): the buffers of a batch
    are reused by the next instead of being allocated, and page-faulted, on every call.
    Also returns each batch's solver statistics.
    """

    def one(x: SparseRows) -> tuple[Array, Array, dict[str, Any]]:
        scores, stats = model.layout_scores_with_stats(x)
        values, items = layout_top_k(scores, x, k)
        return values, items, stats

    return jax.lax.map(one, rows)


class AbstractRecommender(eqx.Module):
    """A recommender: ``fit(R)`` returns a fitted copy, ``score(rows)`` scores user rows.

    Settings are static fields; fitted arrays are array fields (``None`` before fit). A
    fitted model keeps its train matrix in a last field ``train = fitted_train_field()``,
    which ``recommend`` uses to look users up by index.
    """

    @abc.abstractmethod
    def fit(self, train: sp.csr_matrix) -> Self:
        """Return a copy of the model fitted on the binary (n_users, n_items) matrix."""

    @abc.abstractmethod
    def score(self, rows: Rows) -> Float[Array, "b n_items"]:
        """Scores of every item for each user row (the user's interaction history)."""

    def score_with_stats(self, rows: Rows) -> tuple[Array, dict[str, Any]]:
        """Scores and solver statistics (none for models without ODEs).

        This is what evaluation and ``recommend`` call, with :class:`SparseRows`; by default
        ``score`` then gets dense rows. Models that use the sparsity override it.
        """
        return self.score(as_dense(rows)), {}

    def layout_scores_with_stats(self, rows: SparseRows) -> tuple[LayoutScores, dict[str, Any]]:
        """Like :meth:`score_with_stats`, with the scores left in the model's own layout."""
        scores, stats = self.score_with_stats(rows)
        return LayoutScores(scores, RowLayout(), rows.n_rows), stats

    name: ClassVar[str]
    """Short model name used in outputs."""

    @classmethod
    def setting_names(cls) -> list[str]:
        """Names of the model's settings: its static fields that are not fitted state."""
        return [
            f.name
            for f in dataclasses.fields(cls)
            if f.metadata.get("static", False) and not f.metadata.get("fitted", False)
        ]

    def config(self) -> dict[str, Any]:
        """Every setting of the model, by name."""
        return {name: getattr(self, name) for name in self.setting_names()}

    def recommend(
        self, users_or_rows: Any, k: int = 20, filter_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for user indices (1-D ints) or interaction rows (2-D)."""
        rows = self._as_rows(users_or_rows)
        n_items = rows.shape[1]
        if not 1 <= k <= n_items:
            raise ConfigError(f"k must be in 1..{n_items}, got {k}")
        x = SparseRows.from_scipy(sp.csr_matrix(rows))
        seen = x if filter_seen else SparseRows.from_scipy(sp.csr_matrix(rows.shape, dtype=np.float32))
        scores, _ = self.layout_scores_with_stats(x)
        values, items = layout_top_k(scores, seen, k)
        return np.asarray(items), np.asarray(values)

    def _as_rows(self, users_or_rows: Any) -> np.ndarray:
        if sp.issparse(users_or_rows):
            return users_or_rows.toarray().astype(np.float32)
        arr = np.asarray(users_or_rows)
        if arr.ndim == 2:
            return arr.astype(np.float32)
        if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
            train: HostMatrix | None = getattr(self, "train", None)
            if train is None:
                raise ConfigError("the model is not fitted: call fit(train) first")
            n = train.matrix.shape[0]
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                raise ConfigError(f"user indices must be in 0..{n - 1}")
            return train.rows(arr)
        raise ConfigError("pass user indices (1-D integers) or interaction rows (2-D)")
