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
from .models.base import AbstractRecommender, HostMatrix, layout_top_k

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
) -> Evaluation:
    """Evaluate a fitted model on ``dataset.test`` with the full-ranking protocol.

    Users without test items are skipped. Every batch is padded to ``batch_size`` rows so
    the scoring function compiles once. ``progress`` wraps the batch iterable (e.g. tqdm).
    """
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 1 or ks[-1] > dataset.n_items:
        raise ConfigError(f"every K must be in 1..{dataset.n_items}, got {list(ks)}")
    train, test = dataset.train, dataset.test
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    batch_size = max(1, min(batch_size, len(users)))
    acc = MetricAccumulator(ks, dataset.n_items, item_self_information(train))
    t_inf = t_eval = 0.0
    solver_stats: dict[str, dict[str, int]] = {}
    wrap = progress or _no_progress
    host_train = HostMatrix(train)
    for batch in wrap(user_batches(users, batch_size), desc="users", unit="batch"):
        t0 = time.perf_counter()
        x = host_train.device_rows(batch, batch_size)
        scores, stats = jax.block_until_ready(model.layout_scores_with_stats(x))
        _add_stats(solver_stats, stats)
        t1 = time.perf_counter()
        values, items = layout_top_k(scores, x, ks[-1])
        values, items = np.asarray(values)[: len(batch)], np.asarray(items)[: len(batch)]
        acc.add(items, np.isfinite(values), test[batch])
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
