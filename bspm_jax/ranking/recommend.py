"""Recommendations in the data's own ids for known users and new users (histories of item ids), as a table.

:func:`recommend` is the call for users of the library; :func:`recommend_for` is the same for
ids given as text (the command line); :func:`write_recommendations` streams every asked
user's top-k to a Parquet or CSV file in chunks of users, in bounded memory.
:func:`recommend_indices` is the index-level form (rows of a matrix in, item indices out).
"""

from __future__ import annotations

import abc
import csv
import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from ..data.dataset import Dataset
from ..data.interactions import Interactions, as_history
from ..data.sparse import matrix_digest
from ..errors import ConfigError
from ..models.base import AbstractRecommender
from ..runtime import distributed
from ..runtime.io import atomic_files
from .progress import Progress
from .rank import rank_rows

CHUNK_USERS = 65_536
"""Users ranked and written at a time by :func:`write_recommendations`."""


def recommend_indices(
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
    _check_width(model, history.shape[1])
    index = np.arange(history.shape[0]) if users is None else _user_indices(users, history.shape[0])
    ranking = rank_rows(model, history[index], k, batch_size, filter_seen=filter_seen, users=index)
    return ranking.items, ranking.scores


def _check_width(model: AbstractRecommender, n_items: int) -> None:
    info = model.require_fitted()
    if n_items != info.n_items:
        raise ConfigError(f"the histories have {n_items:,} items; the {model.name} model was fitted on {info.n_items:,}")


def _user_indices(users: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(users)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ConfigError("users must be a 1-D sequence of user indices")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ConfigError(f"user indices must be in 0..{n - 1}")
    return arr.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """Top-k items per user: ``users`` (n,) in the data's own ids (then new users' labels), ``items`` (n, k) in
    the data's own item ids, ``scores`` (n, k), best first; ``n_known`` known users come first, then ``n_new``."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    n_known: int
    n_new: int

    @property
    def labels(self) -> list[str]:
        """The users as text."""
        return [str(u) for u in self.users.tolist()]

    def to_arrow(self, users_as_text: bool = False) -> pa.Table:
        """One row per recommendation: ``user``, ``rank`` (1 = best), ``item``, ``score``; the user column holds
        integers when every user id is one (unless ``users_as_text``), else text."""
        k = self.items.shape[1] if self.items.ndim == 2 else 0
        column = _column(self.users)
        users = np.repeat(column.astype(str) if users_as_text else column, k)
        return pa.table({"user": users, "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(self.users)),
                         "item": _column(self.items.reshape(-1)), "score": self.scores.reshape(-1).astype(np.float32)})

    def to_pandas(self) -> Any:
        """:meth:`to_arrow` as a pandas DataFrame (columns ``user``, ``rank``, ``item``, ``score``)."""
        return self.to_arrow().to_pandas()

    def to_parquet(self, path: str | Path) -> Path:
        """Write :meth:`to_arrow` to a Parquet file (atomically)."""
        return _atomic(Path(path), lambda f: _ParquetSink(f).write_all(self))

    def to_csv(self, path: str | Path) -> Path:
        """Write the ``user,rank,item,score`` rows to a CSV file (atomically)."""
        return _atomic(Path(path), lambda f: _CsvSink(f).write_all(self))

    def csv(self) -> str:
        """``user,rank,item,score`` rows as text, scores to 6 significant digits."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["user", "rank", "item", "score"])
        _csv_rows(writer, self)
        return buffer.getvalue()


def _column(values: np.ndarray) -> np.ndarray:
    """Ids as one column type: integers stay integers; anything mixed becomes text."""
    if values.dtype == object:
        kinds = {type(v) for v in values.tolist()}
        if kinds <= {int}:
            return values.astype(np.int64)
        return values.astype(str)
    return values


def _csv_rows(writer: Any, recs: Recommendations) -> None:
    for user, items, scores in zip(recs.users.tolist(), recs.items.tolist(), recs.scores.tolist()):
        for r, (item, score) in enumerate(zip(items, scores), 1):
            writer.writerow([user, r, item, f"{score:.6g}"])


def recommend(
    model: AbstractRecommender,
    data: Interactions | Dataset,
    users: Sequence[Any] | str = "all",
    k: int = 10,
    histories: dict[Any, Sequence[Any]] | None = None,
    filter_seen: bool = True,
    batch_size: int | str = 1024,
    progress: Progress | None = None,
) -> Recommendations:
    """Top-``k`` items for known users and new users, in the data's own ids.

    Args:
        model: a fitted model (fitted on ``data``: checked by content).
        data: the interactions the model was fitted on, or a :class:`Dataset` (its train split is the history).
        users: ``"all"`` (every user of ``data``), or a list of user ids; ``[]`` for new users only.
        k: items per user; more than the items left to a user (those not in their history) is refused.
        histories: new users, ``{label: [item ids]}``, scored from those items (models that score new users).
        filter_seen: leave out the items of the user's history.
        batch_size: users scored at a time.
        progress: e.g. ``tqdm``, over the batches.
    """
    dataset = as_history(data)
    known = np.arange(dataset.n_users) if isinstance(users, str) and users == "all" else \
        _known_users(dataset, users)
    new = [(label, items) for label, items in (histories or {}).items()]
    return recommend_rows(model, dataset, dataset.train, known, new, k, filter_seen, batch_size, progress)


def _known_users(dataset: Dataset, users: Any) -> np.ndarray:
    if isinstance(users, str):
        raise ConfigError(f"users must be 'all' or a list of user ids, got {users!r}")
    return dataset.user_indices(list(users)) if len(users) else np.zeros(0, dtype=np.int64)


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
    known = dataset.user_indices(list(user_ids)) if len(user_ids) else np.zeros(0, dtype=np.int64)
    return recommend_rows(model, dataset, history, known, list(new_users), k, filter_seen, batch_size, progress)


def recommend_rows(model: AbstractRecommender, dataset: Dataset, history: sp.spmatrix, known: np.ndarray,
                   new_users: Sequence[tuple[Any, Sequence[Any]]], k: int, filter_seen: bool = True,
                   batch_size: int | str = 1024, progress: Progress | None = None, local: bool = False,
                   checked: bool = False) -> Recommendations:
    """Recommendations for known users by row index (``known``) and new users ((label, item ids)); what
    :func:`recommend` and :func:`recommend_for` call once they have the indices. ``local``: rank in this process
    only; ``checked``: ``history`` is already known to be the fitted-on matrix."""
    new_users = list(new_users)
    history = history if checked else check_history(model, history)
    rows = [history[known]]
    for _, items in new_users:
        cols = np.unique(dataset.item_indices(list(items)))
        rows.append(sp.csr_matrix((np.ones(len(cols), np.float32), (np.zeros(len(cols), int), cols)),
                                  shape=(1, dataset.n_items)))
    if new_users and not model.scores_new_users:
        raise ConfigError(f"the {model.name} model scores only the users it was trained on: it cannot score new "
                          "users' histories")
    matrix = sp.vstack(rows).tocsr()
    labels = np.array(dataset.user_label(known).tolist() + [label for label, _ in new_users], dtype=object)
    if filter_seen:
        _check_candidates(k, matrix, labels, dataset.n_items)
    users = np.concatenate([known, np.full(len(new_users), -1, dtype=np.int64)])
    ranking = rank_rows(model, matrix, k, batch_size, filter_seen=filter_seen, progress=progress, users=users,
                        local=local)
    if len(new_users) == 0:
        labels = np.asarray(dataset.user_label(known))
    return Recommendations(labels, dataset.item_label(ranking.items), ranking.scores, len(known), len(new_users))


def check_history(model: AbstractRecommender, history: sp.spmatrix) -> sp.csr_matrix:
    """``history`` as binary CSR, checked to be the matrix the model was fitted on."""
    history = sp.csr_matrix(history > 0, dtype=np.float32)
    info = model.require_fitted()
    if (info.n_users, info.n_items) != history.shape or info.digest != matrix_digest(history):
        raise ConfigError(
            f"the {model.name} model was fitted on other interactions ({info.n_users:,} x {info.n_items:,}, "
            f"{info.n_interactions:,} interactions) than the {history.shape[0]:,} x {history.shape[1]:,} matrix "
            f"of {history.nnz:,} given here; use the data (and --include-test choice) it was fitted with"
        )
    return history


def _check_candidates(k: int, rows: sp.csr_matrix, labels: np.ndarray, n_items: int) -> None:
    """Refuse a ``k`` above the items left to some user (those not in their history), naming the numbers."""
    if not rows.shape[0] or isinstance(k, bool) or not isinstance(k, int | np.integer):
        return  # rank_rows refuses a k that is no integer
    degree = np.diff(rows.indptr)
    worst = int(np.argmax(degree))
    left = n_items - int(degree[worst])
    if k > left:
        raise ConfigError(f"k = {k} is more than the {left:,} items left to recommend to user {labels[worst]!r} "
                          f"({n_items:,} items, {int(degree[worst]):,} in the history); use k <= {left:,}, or keep "
                          "seen items")


# ---------------------------------------------------------------- files


def write_recommendations(
    model: AbstractRecommender,
    dataset: Dataset,
    history: sp.spmatrix,
    path: str | Path,
    users: np.ndarray | None = None,
    new_users: Sequence[tuple[str, Sequence[Any]]] = (),
    k: int = 20,
    filter_seen: bool = True,
    batch_size: int | str = 1024,
    progress: Progress | None = None,
    chunk_users: int = CHUNK_USERS,
) -> tuple[Path, int]:
    """Write the top-``k`` of known users (indices ``users``; None: every user) and new users to ``path``
    (``.parquet``/``.pq`` or ``.csv``), ``chunk_users`` at a time, atomically; returns the file and the users in it.

    In a multi-process run (:mod:`bspm_jax.runtime.distributed`) process ``p`` of ``n`` writes the ``p``-th of
    ``n`` equal contiguous shares of the known users (and process 0 the new users) to
    ``NAME-0000p-of-0000n.SUFFIX`` beside ``path``, from the same model and history, and every process waits
    for the others to finish.
    """
    path = Path(path)
    sink = _sink(path)
    history = check_history(model, history)
    known = np.arange(dataset.n_users) if users is None else np.asarray(users, dtype=np.int64)
    if filter_seen and len(known):
        _check_candidates(k, history[known], np.asarray(dataset.user_label(known)), dataset.n_items)
    text = bool(new_users)  # one user column type in every chunk and every process's file
    process, processes = distributed.process()
    if processes > 1:  # contiguous shares in order, the new users last: the files concatenated are one file
        known = np.array_split(known, processes)[process]
        new_users = new_users if process == processes - 1 else ()
        path = path.with_name(f"{path.stem}-{process:05d}-of-{processes:05d}{path.suffix}")
    chunks = [known[s:s + chunk_users] for s in range(0, len(known), chunk_users)]
    bar = progress(chunks, desc=f"chunks of {chunk_users:,} users", unit="chunk") if progress is not None else chunks

    def write(f: Any) -> None:
        out = sink(f, text)
        for part in bar:  # the inner bar: the chunk's batches
            out.write(recommend_rows(model, dataset, history, part, [], k, filter_seen, batch_size, progress, local=True,
                                 checked=True))
        if new_users or not len(known):
            out.write(recommend_rows(model, dataset, history, np.zeros(0, np.int64), list(new_users), k, filter_seen,
                                 batch_size, None, local=True, checked=True))
        out.close()

    _atomic(path, write)
    distributed.barrier("bspm-recommendations-written")
    return path, len(known) + len(new_users)


def _sink(path: Path) -> Any:
    sink = SINKS.get(path.suffix.lower())
    if sink is None:
        raise ConfigError(f"recommendations are written as {', '.join(SINKS)}: {path.name} has none of these "
                          "suffixes")
    return sink


class _AbstractSink(abc.ABC):
    """A recommendations file being written: chunks of recommendations in, then closed."""

    @abc.abstractmethod
    def write(self, recs: Recommendations) -> None:
        """Append ``recs``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Finish the file (its footer, its buffer)."""

    def write_all(self, recs: Recommendations) -> None:
        """Write ``recs`` and finish the file."""
        self.write(recs)
        self.close()


class _ParquetSink(_AbstractSink):
    def __init__(self, f: Any, text: bool = False):
        self.f, self.writer, self.text = f, None, text

    def write(self, recs: Recommendations) -> None:
        table = recs.to_arrow(users_as_text=self.text)
        if self.writer is None:
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(self.f, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _CsvSink(_AbstractSink):
    def __init__(self, f: Any, text: bool = False):
        self.text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        self.writer = csv.writer(self.text, lineterminator="\n")
        self.writer.writerow(["user", "rank", "item", "score"])

    def write(self, recs: Recommendations) -> None:
        _csv_rows(self.writer, recs)

    def close(self) -> None:
        self.text.flush()
        self.text.detach()


def _atomic(path: Path, write: Any) -> Path:
    """Run ``write(binary file)`` on a temporary file beside ``path``, then rename it into place."""
    with atomic_files(path) as (f,):
        write(f)
    return path


SINKS = {".parquet": _ParquetSink, ".pq": _ParquetSink, ".csv": _CsvSink}
"""Recommendation files by suffix, and what writes them."""
