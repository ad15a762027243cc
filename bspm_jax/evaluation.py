"""Full-ranking evaluation: rank every test user's unseen items, then compute the metrics."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from .data.dataset import Dataset
from .metrics import MetricAccumulator, item_self_information
from .models import AbstractRecommender
from .ranking import Progress, Ranking, check_cutoffs, rank_rows


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Metrics (flat ``name@K`` keys), users evaluated, timings in seconds and the ranking."""

    metrics: dict[str, float]
    n_users: int
    timings_s: dict[str, float]
    solver_stats: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    users: np.ndarray | None = None
    ranking: Ranking | None = dataclasses.field(default=None, repr=False)


def evaluate(
    model: AbstractRecommender,
    dataset: Dataset,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    progress: Progress | None = None,
    batches_per_call: int | None = None,
    devices: int | Sequence[jax.Device] | None = None,
) -> Evaluation:
    """Evaluate a fitted model on ``dataset.test`` with the full-ranking protocol.

    Users without test items are skipped; every item a user has not interacted with in
    train is a candidate. Scoring runs as in :func:`rank_rows` (``batch_size`` users per
    batch, ``batches_per_call`` batches per device call, ``progress`` around the calls,
    ``devices`` to split the batches across devices).
    Timings: ``inference`` is the device time (scoring and top-K), ``evaluate`` the
    metrics on the host. ``users`` and ``ranking`` hold the evaluated users' top-K items.
    """
    ks = check_cutoffs(ks, dataset.n_items)
    train, test = dataset.train, dataset.test
    users = dataset.test_users
    ranking = rank_rows(model, train[users], ks[-1], batch_size, progress=progress,
                        batches_per_call=batches_per_call, devices=devices, users=users)
    t0 = time.perf_counter()
    acc = MetricAccumulator(ks, dataset.n_items, item_self_information(train))
    acc.add(ranking.items, np.isfinite(ranking.scores), test[users])
    timings = {"inference": ranking.seconds, "evaluate": time.perf_counter() - t0}
    stats: dict[str, dict[str, int]] = {}
    for batch_stats in ranking.solver_stats:
        _add_stats(stats, batch_stats)
    return Evaluation(acc.result(), acc.n_users, timings, stats, users, ranking)


def _add_stats(total: dict[str, dict[str, int]], stats: dict[str, dict[str, Any]]) -> None:
    """Accumulate per-batch solver counts: totals and the largest batch's value."""
    for process, counts in stats.items():
        entry = total.setdefault(process, {"batches": 0})
        entry["batches"] += 1
        for key, value in counts.items():
            value = int(value)
            entry[f"total_{key}"] = entry.get(f"total_{key}", 0) + value
            entry[f"max_{key}"] = max(entry.get(f"max_{key}", 0), value)
