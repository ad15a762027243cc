"""``rank_rows``: the top-k items of every user row, scored in batches over devices and processes."""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import time
from collections.abc import Sequence

import jax
import numpy as np
import scipy.sparse as sp
from jax.sharding import Mesh

from ..runtime import distributed
from ..errors import ConfigError
from ..models.base import AbstractRecommender
from ..filtering.rows import SparseRows
from .batching import check_batch_size, plan_batch_size
from .devices import batched_top_k, device_mesh, sharded_top_k
from .progress import BatchTicker, Progress
from .topk import check_k


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
    users: np.ndarray | None = None,
    exclude: sp.spmatrix | None = None,
    local: bool = False,
) -> Ranking:
    """Top-k items of every user row of ``rows`` (their interaction histories), scored in batches.

    ``users[r]`` is the index of row ``r``'s user among those the model was fitted on (-1
    for a new user; default: all new), for models that learn a vector per user. With
    ``filter_seen`` the items of ``exclude`` (default: the rows themselves) are never
    recommended; e.g. a test ranking excludes train and validation items.

    Rows are scored ``batch_size`` at a time (the last batch padded, so scoring compiles
    once; "auto" plans it from the available memory, and a size that cannot fit is refused),
    ``batches_per_call`` batches per device call (None: all in one call). ``progress`` (e.g. tqdm) wraps
    the batches of each call and advances as the device finishes each one. ``devices``
    (a number of local devices, or a list of devices) splits the batches across devices.
    In a multi-process run (:mod:`bspm_jax.runtime.distributed`) every process passes the same
    ``rows``, scores its share of the batches on its local devices, and gets every share;
    with ``local`` each process ranks all of its own ``rows`` instead (processes that each
    export their own share of the users).
    """
    rows = sp.csr_matrix(rows, dtype=np.float32)
    n, n_items = rows.shape
    k = check_k(k, n_items)
    if exclude is not None:
        exclude = sp.csr_matrix(exclude, dtype=np.float32)
        if exclude.shape != rows.shape:
            raise ConfigError(f"exclude has shape {exclude.shape}, rows have shape {rows.shape}")
    if users is not None:
        users = np.asarray(users, dtype=np.int64)
        if users.shape != (n,):
            raise ConfigError(f"users must give one index per row ({n}), got shape {users.shape}")
    if not model.scores_new_users:
        fitted = model.require_fitted().n_users
        if users is None or (users.size and (users.min() < 0 or users.max() >= fitted)):
            raise ConfigError(f"the {model.name} model scores the {fitted:,} users it was trained on, by index: "
                              "new users (histories without a known user) cannot be scored by it")
    mesh = device_mesh(devices)
    n_devices = 1 if mesh is None else mesh.size
    if batch_size == "auto":
        batch_size = plan_batch_size(model, *rows.shape, devices=n_devices)
    if not (isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool) and batch_size >= 1):
        raise ConfigError(f"batch_size must be an integer >= 1 or \"auto\", got {batch_size!r}")
    check_batch_size(model, int(min(batch_size, max(n, 1))), *rows.shape, devices=n_devices)
    if batches_per_call is not None and not (isinstance(batches_per_call, numbers.Integral) and batches_per_call >= 1):
        raise ConfigError(f"batches_per_call must be an integer >= 1 or None, got {batches_per_call!r}")
    batch_size = int(max(1, min(batch_size, n)))
    batches = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    process, processes, per_process = (0, 1, len(batches)) if local else distributed.share(len(batches))
    mine = batches[process::processes]  # batch j of process p is batches[p + j * processes]
    if processes > 1:  # equal shares for the gather: a short one gets an empty batch
        mine = mine + [np.zeros(0, dtype=np.int64)] * (per_process - len(mine))
    seen = (rows if exclude is None else exclude) if filter_seen else sp.csr_matrix(rows.shape, dtype=np.float32)
    values, top, stats, seconds = _rank_batches(model, rows, seen, users, mine, batch_size, k, progress,
                                                batches_per_call, mesh, n_devices)
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
    seen_rows: sp.csr_matrix,
    users: np.ndarray | None,
    batches: list[np.ndarray],
    batch_size: int,
    k: int,
    progress: Progress | None,
    batches_per_call: int | None,
    mesh: Mesh | None,
    n_devices: int,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, dict[str, int]]], float]:
    """Top-k values and items (batches, batch_size, k) of ``batches`` of ``rows`` on the local devices,
    the items of ``seen_rows`` excluded, with each batch's solver statistics and the device time."""
    per_call = int(batches_per_call or max(1, len(batches)))
    calls = [batches[i : i + per_call] for i in range(0, len(batches), per_call)]
    values_out, top_out = [np.full((0, batch_size, k), -np.inf, np.float32)], [np.zeros((0, batch_size, k), np.int32)]
    stats: list[dict[str, dict[str, int]]] = []
    seconds = 0.0
    for group in calls:
        t0 = time.perf_counter()
        padded = group + [np.zeros(0, dtype=np.int64)] * (-len(group) % n_devices)  # whole batches per device
        x = SparseRows.stacked(rows, padded, batch_size, users)
        seen = None if seen_rows is rows else SparseRows.stacked(seen_rows, padded, batch_size)
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
