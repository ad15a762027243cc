"""Full-ranking evaluation over user batches: score, mask train items, top-K, metrics."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np

from .data.dataset import Dataset
from .errors import ConfigError
from .metrics import MetricAccumulator, item_self_information
from .models.base import AbstractRecommender, batched_top_k
from .rows import SparseRows

Progress = Callable[..., Iterable[Any]]


def _no_progress(iterable: Iterable[Any], **_: Any) -> Iterable[Any]:
    return iterable


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Metrics (flat ``name@K`` keys), users evaluated and timings in seconds."""

    metrics: dict[str, float]
    n_users: int
    timings_s: dict[str, float]
    solver_stats: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)


def user_batches(users: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive chunks of ``users`` of at most ``batch_size``."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    return [users[i : i + batch_size] for i in range(0, len(users), batch_size)]


def evaluate(
    model: AbstractRecommender,
    dataset: Dataset,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    progress: Progress | None = None,
    batches_per_call: int | None = None,
) -> Evaluation:
    """Evaluate a fitted model on ``dataset.test`` with the full-ranking protocol.

    Users without test items are skipped. Users are scored in batches of ``batch_size``
    rows (the last one padded, so scoring compiles once), ``batches_per_call`` batches per
    device call (None: all in one call), each call returning only the top-K items.
    ``progress`` wraps the iterable of calls (e.g. tqdm). Timings: ``inference`` is the
    device time (scoring and top-K), ``evaluate`` the metrics on the host.
    """
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 1 or ks[-1] > dataset.n_items:
        raise ConfigError(f"every K must be in 1..{dataset.n_items}, got {list(ks)}")
    train, test = dataset.train, dataset.test
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if batches_per_call is not None and not (isinstance(batches_per_call, int) and batches_per_call >= 1):
        raise ConfigError(f"batches_per_call must be an integer >= 1 or None, got {batches_per_call!r}")
    batch_size = max(1, min(batch_size, len(users)))
    batches = user_batches(users, batch_size)
    per_call = batches_per_call or max(1, len(batches))
    acc = MetricAccumulator(ks, dataset.n_items, item_self_information(train))
    t_inf = t_eval = 0.0
    solver_stats: dict[str, dict[str, int]] = {}
    wrap = progress or _no_progress
    for call in wrap(user_batches(np.arange(len(batches)), per_call), desc="users", unit="call"):
        t0 = time.perf_counter()
        group = [batches[i] for i in call]
        rows = SparseRows.stacked(train, group, batch_size)
        values, items, stats = jax.block_until_ready(batched_top_k(model, rows, ks[-1]))
        t1 = time.perf_counter()
        values, items, host_stats = jax.tree.map(np.asarray, (values, items, stats))
        for j, batch in enumerate(group):
            _add_stats(solver_stats, jax.tree.map(lambda a: a[j], host_stats))
            acc.add(items[j, : len(batch)], np.isfinite(values[j, : len(batch)]), test[batch])
        t_inf += t1 - t0
        t_eval += time.perf_counter() - t1
    timings = {"inference": t_inf, "evaluate": t_eval}
    return Evaluation(acc.result(), acc.n_users, timings, solver_stats)


def _add_stats(total: dict[str, dict[str, int]], stats: dict[str, dict[str, Any]]) -> None:
    """Accumulate per-batch solver counts: totals and the largest batch's value."""
    for process, counts in stats.items():
        entry = total.setdefault(process, {"batches": 0})
        entry["batches"] += 1
        for key, value in counts.items():
            value = int(value)
            entry[f"total_{key}"] = entry.get(f"total_{key}", 0) + value
            entry[f"max_{key}"] = max(entry.get(f"max_{key}", 0), value)
