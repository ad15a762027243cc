"""The interface every recommender implements: fit on the train matrix, score user rows."""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import numbers
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Self

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from .. import distributed
from ..errors import ConfigError
from ..operators import AbstractLayout, RowLayout
from ..memory import check_batch_size, plan_batch_size
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


def _map_top_k(
    model: AbstractRecommender, rows: SparseRows, k: int, seen: SparseRows, ticket: Int[Array, ""] | None
) -> tuple[Float[Array, "batches b k"], Int[Array, "batches b k"], dict[str, Any]]:
    """``lax.map`` over stacked batches: scores, top-k with ``seen`` excluded, solver statistics."""

    def one(xs: tuple[SparseRows, SparseRows]) -> tuple[Array, Array, dict[str, Any]]:
        x, excluded = xs
        scores, stats = model.layout_scores_with_stats(x)
        values, items = layout_top_k(scores, excluded, k)
        if ticket is not None:
            jax.debug.callback(BatchTicker.tick, ticket, values[:1, :1])  # runs once the batch's top-k exists
        return values, items, stats

    return jax.lax.map(one, (rows, seen))


@eqx.filter_jit
def batched_top_k(
    model: AbstractRecommender,
    rows: SparseRows,
    k: int,
    seen: SparseRows | None = None,
    ticket: Int[Array, ""] | None = None,
) -> tuple[Float[Array, "batches b k"], Int[Array, "batches b k"], dict[str, Any]]:
    """Top-k of every batch of stacked rows (:meth:`SparseRows.stacked`), ``seen`` items excluded.

    ``seen`` defaults to the rows themselves (the user's history is not recommended back).
    One device program scores all batches in turn (``lax.map``): the buffers of a batch
    are reused by the next instead of being allocated, and page-faulted, on every call.
    With a ``ticket`` from :class:`BatchTicker`, the host is told as each batch finishes.
    Also returns each batch's solver statistics.
    """
    return _map_top_k(model, rows, k, rows if seen is None else seen, ticket)


SHARD_AXIS = "batches"


@eqx.filter_jit
def sharded_top_k(
    model: AbstractRecommender,
    rows: SparseRows,
    k: int,
    seen: SparseRows | None,
    ticket: Int[Array, ""] | None,
    mesh: Mesh,
) -> tuple[Float[Array, "batches b k"], Int[Array, "batches b k"], dict[str, Any]]:
    """:func:`batched_top_k` with the stacked batches split across the devices of ``mesh``.

    Each device runs ``lax.map`` over its share of the batches (the leading axis, whose
    length must be a multiple of the number of devices); the model's arrays (the
    item-side operators) are replicated on every device.
    """
    params, static = eqx.partition(model, eqx.is_array)

    def local(params: Any, rows: SparseRows, seen: SparseRows, ticket: Any) -> Any:
        return _map_top_k(eqx.combine(params, static), rows, k, seen, ticket)

    shard = PartitionSpec(SHARD_AXIS)
    run = jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(), shard, shard, PartitionSpec()),
                        out_specs=shard, check_vma=False)
    return run(params, rows, rows if seen is None else seen, ticket)


def device_mesh(devices: int | Sequence[jax.Device] | None) -> Mesh | None:
    """A one-axis mesh over ``devices`` (a count of local devices, or the devices); None for one device."""
    if devices is None:
        return None
    if isinstance(devices, numbers.Integral) and not isinstance(devices, bool):
        local = jax.local_devices()
        if not 1 <= devices <= len(local):
            raise ConfigError(f"devices must be in 1..{len(local)} (the local {local[0].platform} devices), got {devices}")
        devices = local[:devices]
    devices = list(devices)
    if not devices:
        raise ConfigError("devices must name at least one device")
    return None if len(devices) == 1 else Mesh(np.array(devices), (SHARD_AXIS,))


class BatchTicker:
    """Advances a progress iterator from inside a device program, one step per finished batch.

    The compiled program holds only an integer ticket; the host looks the iterator up by
    it, so one compiled program serves every progress bar.
    """

    _live: ClassVar[dict[int, Iterator[Any]]] = {}

    def __init__(self, steps: Iterable[Any]):
        self.steps = iter(steps)

    def __enter__(self) -> Int[Array, ""]:
        self.ticket = max(self._live, default=0) + 1
        self._live[self.ticket] = self.steps
        next(self.steps, None)
        return jnp.asarray(self.ticket, dtype=jnp.int32)

    def __exit__(self, *exc: object) -> None:
        self._live.pop(self.ticket, None)
        for _ in self.steps:  # finish (and close) the progress bar
            pass

    @classmethod
    def tick(cls, ticket: Array, _done: Array) -> None:
        steps = cls._live.get(int(ticket))
        if steps is not None:
            next(steps, None)


Progress = Callable[..., Iterable[Any]]
"""A wrapper of iterables that shows progress, e.g. ``tqdm``: ``progress(iterable, desc=..., unit=...)``."""


def no_progress(iterable: Iterable[Any], **_: Any) -> Iterable[Any]:
    return iterable


Fits = dict[Hashable, "AbstractRecommender"]
"""Fitted models by (class, train matrix, ``fit_key``): see :func:`fit_shared`."""


def fit_shared(model: AbstractRecommender, train: sp.csr_matrix, fits: Fits) -> AbstractRecommender:
    """``model`` fitted on ``train``, reusing the fit in ``fits`` of a model with the same ``fit_key``.

    BSPM's fit (normalisation and SVD) depends only on the SVD rank, so a grid over the ODE
    settings fits once per rank.
    """
    key = (type(model), id(train), model.fit_key())
    if key not in fits:
        fits[key] = model.fit(train)
    return model.with_fit_of(fits[key])


@dataclasses.dataclass(frozen=True)
class Ranking:
    """Top-k items per user row: ``items``/``scores`` (n, k); ``scores`` is -inf where a row
    has fewer than k candidates. ``seconds`` is the device time, ``solver_stats`` per batch."""

    items: np.ndarray
    scores: np.ndarray
    batches: list[np.ndarray]
    seconds: float
    solver_stats: list[dict[str, dict[str, int]]]


def rank_rows(
    model: AbstractRecommender,
    rows: sp.csr_matrix,
    k: int,
    batch_size: int | str = 1024,
    filter_seen: bool = True,
    progress: Progress | None = None,
    batches_per_call: int | None = None,
    devices: int | Sequence[jax.Device] | None = None,
    exclude: sp.csr_matrix | None = None,
) -> Ranking:
    """Top-k items of every user row of ``rows`` (their interaction histories), scored in batches.

    Rows are scored ``batch_size`` at a time (the last batch padded, so scoring compiles
    once; "auto" plans it from the available memory, and a size that cannot fit is refused), ``batches_per_call`` batches per device call (None: all in one call). With
    ``filter_seen`` a row's own items are never recommended; ``exclude`` (a matrix of the
    shape of ``rows``) names the items never recommended to each row instead. ``progress`` (e.g. tqdm) wraps
    the batches of each call and advances as the device finishes each one. ``devices``
    (a number of local devices, or a list of devices) splits the batches across devices.
    In a multi-process run (:mod:`bspm_jax.distributed`) every process passes the same
    ``rows``, scores its share of the batches on its local devices, and gets every share.
    """
    rows = sp.csr_matrix(rows, dtype=np.float32)
    n, n_items = rows.shape
    if not (isinstance(k, numbers.Integral) and 1 <= k <= n_items):
        raise ConfigError(f"k must be an integer in 1..{n_items}, got {k!r}")
    mesh = device_mesh(devices)
    n_devices = 1 if mesh is None else mesh.size
    if batch_size == "auto":
        batch_size = plan_batch_size(model, *rows.shape, devices=n_devices)
    if not (isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool) and batch_size >= 1):
        raise ConfigError(f"batch_size must be an integer >= 1 or \"auto\", got {batch_size!r}")
    check_batch_size(model, int(min(batch_size, max(n, 1))), *rows.shape, devices=n_devices)
    if exclude is not None:
        exclude = sp.csr_matrix(exclude, dtype=np.float32)
        if exclude.shape != rows.shape:
            raise ConfigError(f"exclude has shape {exclude.shape}, rows have shape {rows.shape}")
    if batches_per_call is not None and not (isinstance(batches_per_call, numbers.Integral) and batches_per_call >= 1):
        raise ConfigError(f"batches_per_call must be an integer >= 1 or None, got {batches_per_call!r}")
    batch_size = int(max(1, min(batch_size, n)))
    batches = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    process, processes, per_process = distributed.share(len(batches))
    mine = batches[process::processes]  # batch j of process p is batches[p + j * processes]
    if processes > 1:  # equal shares for the gather: a short one gets an empty batch
        mine = mine + [np.zeros(0, dtype=np.int64)] * (per_process - len(mine))
    values, top, stats, seconds = _rank_batches(model, rows, mine, batch_size, k, filter_seen, progress,
                                                batches_per_call, mesh, n_devices, exclude)
    if processes > 1:  # every process gets every share
        stacked = jax.tree.map(lambda *a: np.asarray(a), *stats) if stats else {}
        all_values, all_top, all_stats, all_seconds = distributed.gather((values, top, stacked, np.float64(seconds)))
        order = [(p, j) for j in range(per_process) for p in range(processes) if p + j * processes < len(batches)]
        values = np.stack([all_values[p, j] for p, j in order])
        top = np.stack([all_top[p, j] for p, j in order])
        stats = [jax.tree.map(lambda a: int(a[p, j]), all_stats) for p, j in order]
        seconds = float(all_seconds.max())
        mine = batches
    items = np.zeros((n, k), dtype=np.int32)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    for j, batch in enumerate(mine):
        items[batch] = top[j, : len(batch)]
        scores[batch] = values[j, : len(batch)]
    return Ranking(items, scores, batches, seconds, stats)


def _rank_batches(
    model: AbstractRecommender,
    rows: sp.csr_matrix,
    batches: list[np.ndarray],
    batch_size: int,
    k: int,
    filter_seen: bool,
    progress: Progress | None,
    batches_per_call: int | None,
    mesh: Mesh | None,
    n_devices: int,
    exclude: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, dict[str, int]]], float]:
    """Top-k values and items (batches, batch_size, k) of ``batches`` of ``rows`` on the local devices,
    with each batch's solver statistics and the device time."""
    per_call = int(batches_per_call or max(1, len(batches)))
    calls = [batches[i : i + per_call] for i in range(0, len(batches), per_call)]
    empty = sp.csr_matrix(rows.shape, dtype=np.float32)
    values_out, top_out = [np.full((0, batch_size, k), -np.inf, np.float32)], [np.zeros((0, batch_size, k), np.int32)]
    stats: list[dict[str, dict[str, int]]] = []
    seconds = 0.0
    for group in calls:
        t0 = time.perf_counter()
        padded = group + [np.zeros(0, dtype=np.int64)] * (-len(group) % n_devices)  # whole batches per device
        x = SparseRows.stacked(rows, padded, batch_size)
        if exclude is not None:
            seen = SparseRows.stacked(exclude, padded, batch_size)
        else:
            seen = None if filter_seen else SparseRows.stacked(empty, padded, batch_size)
        with contextlib.ExitStack() as stack:
            ticket = None if progress is None else stack.enter_context(
                BatchTicker(progress(range(len(padded)), desc="users", unit="batch")))
            if mesh is None:
                out = jax.block_until_ready(batched_top_k(model, x, k, seen, ticket))
            else:
                out = jax.block_until_ready(sharded_top_k(model, x, k, seen, ticket, mesh))
        seconds += time.perf_counter() - t0
        values, top, batch_stats = jax.tree.map(np.asarray, out)
        values_out.append(values[: len(group)])
        top_out.append(top[: len(group)])
        stats += [jax.tree.map(lambda a: int(a[j]), batch_stats) for j in range(len(group))]
    return np.concatenate(values_out), np.concatenate(top_out), stats, seconds


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

    def scoring_bytes_per_user(self, n_items: int) -> int:
        """Working memory of scoring, per user of a batch (for batch planning): a few score rows."""
        return 3 * n_items * 4

    def fit_key(self) -> Hashable:
        """The settings the fitted state depends on: models with equal keys can share a fit."""
        return tuple(sorted(self.config().items()))

    def with_fit_of(self, fitted: Self) -> Self:
        """This model's settings with the fitted state of ``fitted`` (whose ``fit_key`` must match)."""
        if fitted.fit_key() != self.fit_key():
            raise ValueError(f"fit keys differ: {fitted.fit_key()} != {self.fit_key()}")
        names = [f.name for f in dataclasses.fields(self) if not f.metadata.get("static", False) or f.metadata.get("fitted", False)]
        return dataclasses.replace(self, **{name: getattr(fitted, name) for name in names})

    def recommend(
        self, users_or_rows: Any, k: int = 20, filter_seen: bool = True, batch_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for user indices (1-D ints) or interaction rows (2-D)."""
        ranking = rank_rows(self, self._as_rows(users_or_rows), k, batch_size, filter_seen=filter_seen)
        return ranking.items, ranking.scores

    def _as_rows(self, users_or_rows: Any) -> sp.csr_matrix:
        """User rows as CSR: from user indices (rows of the train matrix) or given rows."""
        train: HostMatrix | None = getattr(self, "train", None)
        if train is None:
            raise ConfigError("the model is not fitted: call fit(train) first")
        n, n_items = train.matrix.shape
        arr = users_or_rows if sp.issparse(users_or_rows) else np.asarray(users_or_rows)
        if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                raise ConfigError(f"user indices must be in 0..{n - 1}")
            return train.matrix[arr]
        if arr.ndim != 2:
            raise ConfigError("pass user indices (1-D integers) or interaction rows (2-D)")
        if arr.shape[1] != n_items:
            raise ConfigError(f"interaction rows must have {n_items} columns (items), got {arr.shape[1]}")
        return sp.csr_matrix(arr, dtype=np.float32)
