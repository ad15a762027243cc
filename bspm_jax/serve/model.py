"""The model a server answers from: a saved model with its history, verified and warmed up when loaded.

Known users' top items (seen items excluded) are ranked once, when the model is loaded, up to
``max_k``: a request for a known user reads its row. Histories (new users) and requests that
keep seen items are scored when asked, in batches padded to a few sizes compiled at load, so
that no request waits on a compile.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._version import __version__
from ..data import Dataset
from ..errors import ConfigError, DataError
from ..models import AbstractRecommender, load_model
from ..ranking.rank import rank_rows
from ..serial import load_history

PAD_SIZES = (1, 8, 32, 128)
"""Rows per scoring call: a batch of histories is padded to the smallest that holds it."""


class UnknownIdError(DataError):
    """An id the served model does not know: ``kind`` (``user`` or ``item``) and the ``ids``."""

    def __init__(self, kind: str, ids: Sequence[Any]):
        self.kind, self.ids = kind, list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:5]) + (" ..." if len(self.ids) > 5 else "")
        super().__init__(f"unknown {kind} id {shown}")


@dataclasses.dataclass(frozen=True, eq=False)
class ServedModel:
    """A loaded model: ``model``, its ``history`` (ids and the fitted-on matrix), and the known users' top
    ``max_k`` items and scores (``top_items``, ``top_scores``; -1 and -inf past a user's candidates)."""

    path: str
    model: AbstractRecommender
    history: Dataset
    user_ids: list[Any]
    item_ids: list[Any]
    user_index: dict[str, int]
    item_index: dict[str, int]
    top_items: np.ndarray
    top_scores: np.ndarray
    max_k: int
    loaded_at: str

    @property
    def scores_histories(self) -> bool:
        return self.model.scores_new_users

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/model`` answers."""
        fitted = self.model.require_fitted()
        return {"model": self.model.name, "settings": _plain(self.model.config()), "train_digest": fitted.digest,
                "users": self.history.n_users, "items": self.history.n_items, "max_k": self.max_k,
                "scores_histories": self.scores_histories, "version": __version__, "loaded_at": self.loaded_at,
                "path": self.path}

    def users(self, ids: Sequence[Any]) -> np.ndarray:
        """Row indices of known users, by their ids (compared as text); unknown ids raise :class:`UnknownIdError`."""
        return _indices(self.user_index, ids, "user")

    def items(self, ids: Sequence[Any]) -> np.ndarray:
        return _indices(self.item_index, ids, "item")

    def known(self, rows: np.ndarray, k: int) -> list[list[tuple[Any, float]]]:
        """The precomputed top ``k`` (seen items excluded) of known users ``rows``."""
        return [self._pairs(self.top_items[r, :k], self.top_scores[r, :k]) for r in rows]

    def score(self, histories: Sequence[np.ndarray], users: Sequence[int], k: int, keep_seen: bool
              ) -> list[list[tuple[Any, float]]]:
        """Top ``k`` of each history (item indices; ``users[i]`` its known user's index, -1 for a new user), scored
        now, padded to the next of :data:`PAD_SIZES` (larger batches in chunks of the largest)."""
        out: list[list[tuple[Any, float]]] = []
        for start in range(0, len(histories), PAD_SIZES[-1]):
            chunk = list(histories[start:start + PAD_SIZES[-1]])
            size = next(p for p in PAD_SIZES if p >= len(chunk))
            rows = _rows(chunk + [np.zeros(0, np.int64)] * (size - len(chunk)), self.history.n_items)
            index = np.asarray(list(users[start:start + len(chunk)]) + [0 if not self.scores_histories else -1]
                               * (size - len(chunk)), dtype=np.int64)
            ranking = rank_rows(self.model, rows, self.max_k, batch_size=size, filter_seen=not keep_seen, users=index)
            out += [self._pairs(ranking.items[i, :k], ranking.scores[i, :k]) for i in range(len(chunk))]
        return out

    def _pairs(self, items: np.ndarray, scores: np.ndarray) -> list[tuple[Any, float]]:
        return [(self.item_ids[i], float(s)) for i, s in zip(items.tolist(), scores.tolist()) if np.isfinite(s)]


def load_served(path: str | Path, max_k: int = 100, batch_size: int = 1024) -> ServedModel:
    """The model saved in folder ``path`` with its history, every array verified, its known users ranked up to
    ``max_k`` and its scoring compiled for :data:`PAD_SIZES`; a :class:`~bspm_jax.errors.ConfigError` when the
    folder cannot be served."""
    if not (isinstance(max_k, int) and not isinstance(max_k, bool) and max_k >= 1):
        raise ConfigError(f"max_k must be an integer >= 1, got {max_k!r}")
    model = load_model(path)
    history = load_history(path)
    if history is None:
        raise ConfigError(f"{path} holds a model saved without its history (ids and interactions): save it with "
                          "bspm fit --save, which keeps them")
    max_k = min(max_k, history.n_items)
    train = history.train
    ranking = rank_rows(model, train, max_k, batch_size=batch_size, users=np.arange(history.n_users))
    items = np.where(np.isfinite(ranking.scores), ranking.items, -1).astype(np.int32)
    user_ids = _labels(history.user_ids, history.n_users)
    item_ids = _labels(history.item_ids, history.n_items)
    served = ServedModel(
        path=str(path), model=model, history=history, user_ids=user_ids, item_ids=item_ids,
        user_index={str(u): i for i, u in enumerate(user_ids)}, item_index={str(v): i for i, v in enumerate(item_ids)},
        top_items=items, top_scores=ranking.scores, max_k=max_k,
        loaded_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    for size in PAD_SIZES:  # compile every padded size now, for both seen-item policies
        for keep in (False, True):
            served.score([train[0].indices.astype(np.int64)] * size, [0] * size, 1, keep)
    return served


def _labels(ids: np.ndarray | None, n: int) -> list[Any]:
    return list(range(n)) if ids is None else np.asarray(ids).tolist()


def _indices(table: dict[str, int], ids: Sequence[Any], kind: str) -> np.ndarray:
    unknown = [i for i in ids if str(i) not in table]
    if unknown:
        raise UnknownIdError(kind, unknown)
    return np.asarray([table[str(i)] for i in ids], dtype=np.int64)


def _rows(histories: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(h) for h in histories])
    indices = np.concatenate(histories) if histories else np.zeros(0, np.int64)
    rows = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(histories), n_items))
    rows.sum_duplicates()
    return rows


def _plain(value: Any) -> Any:
    """Settings as JSON values (tuples as lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
