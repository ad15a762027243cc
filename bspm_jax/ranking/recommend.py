"""Recommendations for known users (by id) and new users (given as item histories), as a table or CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..data.dataset import Dataset
from ..data.sparse import matrix_digest
from ..errors import ConfigError
from ..models.base import AbstractRecommender
from .progress import Progress
from .rank import rank_rows


def recommend(
    model: AbstractRecommender,
    history: sp.spmatrix,
    users: Sequence[int] | np.ndarray | None = None,
    k: int = 20,
    filter_seen: bool = True,
    batch_size: int | str = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices and scores (n, k) for rows of ``history`` (the users' items, e.g. the train matrix).

    ``users`` picks rows of ``history`` (default: every row); a user's own items are not
    recommended back unless ``filter_seen=False``.
    """
    history = sp.csr_matrix(history, dtype=np.float32)
    index = np.arange(history.shape[0]) if users is None else _user_indices(users, history.shape[0])
    ranking = rank_rows(model, history[index], k, batch_size, filter_seen=filter_seen, users=index)
    return ranking.items, ranking.scores


def _user_indices(users: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(users)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ConfigError("users must be a 1-D sequence of user indices")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ConfigError(f"user indices must be in 0..{n - 1}")
    return arr.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """Top-k items per user: ``labels`` (n,), ``items`` (n, k) in the data's own item ids, ``scores`` (n, k)."""

    labels: list[str]
    items: np.ndarray
    scores: np.ndarray
    n_known: int
    n_new: int

    def csv(self) -> str:
        """``user,rank,item,score`` rows (rows with fewer than k candidates stop early)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["user", "rank", "item", "score"])
        for label, items, scores in zip(self.labels, self.items, self.scores):
            for r, (item, score) in enumerate(zip(items, scores), 1):
                if np.isfinite(score):
                    writer.writerow([label, r, item, f"{score:.6g}"])
        return buffer.getvalue()


def recommend_for(
    model: AbstractRecommender,
    dataset: Dataset,
    history: sp.spmatrix,
    user_ids: Sequence[Any] = (),
    new_users: Sequence[tuple[str, Sequence[Any]]] = (),
    k: int = 20,
    filter_seen: bool = True,
    batch_size: int | str = 1024,
    progress: Progress | None = None,
) -> Recommendations:
    """Recommendations for known users (``user_ids``, in the data's ids) and new users ((label, item ids)).

    ``history`` is the interaction matrix the model was fitted on (the train split, or train
    and more): known users are scored on their rows of it. A fitted model is checked to
    have been fitted on exactly this matrix.
    """
    history = sp.csr_matrix(history > 0, dtype=np.float32)
    info = model.require_fitted()
    if (info.n_users, info.n_items) != history.shape or info.digest != matrix_digest(history):
        raise ConfigError(
            f"the {model.name} model was fitted on other interactions ({info.n_users:,} x {info.n_items:,}, "
            f"{info.n_interactions:,} interactions) than the {history.shape[0]:,} x {history.shape[1]:,} matrix "
            f"of {history.nnz:,} given here; use the data (and --include-test choice) it was fitted with"
        )
    known = dataset.user_indices(list(user_ids)) if len(user_ids) else np.zeros(0, dtype=np.int64)
    rows = [history[known]]
    for _, items in new_users:
        cols = np.unique(dataset.item_indices(list(items)))
        rows.append(sp.csr_matrix((np.ones(len(cols), np.float32), (np.zeros(len(cols), int), cols)),
                                  shape=(1, dataset.n_items)))
    matrix = sp.vstack(rows).tocsr()
    users = np.concatenate([known, np.full(len(new_users), -1, dtype=np.int64)])
    ranking = rank_rows(model, matrix, k, batch_size, filter_seen=filter_seen, progress=progress, users=users)
    labels = [str(u) for u in dataset.user_label(known)] + [label for label, _ in new_users]
    return Recommendations(labels, dataset.item_label(ranking.items), ranking.scores, len(known), len(new_users))
