"""Full-ranking evaluation: rank every evaluated user's unseen items, then compute the metrics."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import scipy.sparse as sp

from ..data.dataset import Dataset
from ..errors import ConfigError
from ..ranking.metrics import MetricAccumulator, item_self_information
from ..models import AbstractRecommender
from ..ranking import Progress, Ranking, check_cutoffs, rank_rows


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Metrics (flat ``name@K`` keys), users evaluated, timings in seconds and the ranking."""

    metrics: dict[str, float]
    n_users: int
    timings_s: dict[str, float]
    solver_stats: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    users: np.ndarray | None = None
    ranking: Ranking | None = dataclasses.field(default=None, repr=False)


SPLITS = ("valid", "test")
HISTORIES = ("train", "train+valid")

PROTOCOLS: dict[str, str] = {
    "A": "fitted on train, chosen on validation; validation and test scored from the train history, test ranked "
         "with train and validation items excluded (DiffRec's and GiffCF's code)",
    "refit": "chosen on validation, then fitted on train + validation; test scored from that history, ranked with "
             "train and validation items excluded (an easier task: never in one table with protocol A)",
    "holdout": "fitted on train, no validation split; test scored from the train history, ranked with train items "
               "excluded (LightGCN's and BSPM's code)",
}
"""The evaluation protocols a run's figures come from, by name (:func:`protocol_of`)."""


def protocol_of(dataset: Dataset, refit_with_valid: bool = False) -> dict[str, str]:
    """The protocol of a run on ``dataset``: its name (a key of :data:`PROTOCOLS`), description, and how its test
    (and validation) split was made (``split``)."""
    name = "refit" if refit_with_valid else "holdout" if dataset.valid is None else "A"
    return {"name": name, "description": PROTOCOLS[name], "split": split_of(dataset.stats)}


def split_of(stats: dict[str, Any]) -> str:
    """How a dataset's test and validation splits were made, from its loader's ``stats``."""
    test = {
        "random": lambda p: f"a random {stats.get(p + 'holdout', 0):.0%} of each user's interactions "
                            f"(seed {stats.get(p + 'seed', 0)})",
        "time": lambda p: f"every interaction at or after {stats.get(p + 'cut')}",
        "last": lambda p: f"each user's {stats.get(p + 'last_n')} latest interactions",
    }
    method = stats.get("split")
    if method not in test:
        text = "the test file given" if method == "file" else "the dataset's own test split"
    else:
        text = test[method]("")
    if stats.get("validation") == "carved":
        return f"test: {text}; validation: a random {stats['validation_fraction']:.0%} of each user's train " \
               f"interactions (seed {stats['validation_seed']})"
    if method in test and "validation_" + {"random": "holdout", "time": "cut", "last": "last_n"}[method] in stats:
        return f"test: {text}; validation: {test[method]('validation_')} of the rest"
    return f"test: {text}"


def evaluate(
    model: AbstractRecommender,
    dataset: Dataset,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    progress: Progress | None = None,
    batches_per_call: int | None = None,
    devices: int | Sequence[jax.Device] | None = None,
    split: str = "test",
    history: str = "train",
) -> Evaluation:
    """Evaluate a fitted model on ``dataset.test`` (or ``dataset.valid``) with the full-ranking protocol.

    Users without items in the evaluated split are skipped. ``split="valid"`` ranks every
    item not in the user's train items; ``split="test"`` every item in neither train nor
    valid. The rows scored (the input history) are train, or train + valid with
    ``history="train+valid"`` (a model refitted on both; test only). Scoring runs as in
    :func:`rank_rows` (``batch_size`` users per
    batch, ``batches_per_call`` batches per device call, ``progress`` around the calls,
    ``devices`` to split the batches across devices).
    Timings: ``inference`` is the device time (scoring and top-K), ``evaluate`` the
    metrics on the host. ``users`` and ``ranking`` hold the evaluated users' top-K items.
    """
    ks = check_cutoffs(ks, dataset.n_items)
    rows, exclude, truth = protocol_matrices(dataset, split, history)
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    ranking = rank_rows(model, rows[users], ks[-1], batch_size, progress=progress,
                        batches_per_call=batches_per_call, devices=devices, users=users,
                        exclude=None if exclude is None else exclude[users])
    t0 = time.perf_counter()
    acc = MetricAccumulator(ks, dataset.n_items, item_self_information(rows))
    acc.add(ranking.items, np.isfinite(ranking.scores), truth[users])
    timings = {"inference": ranking.seconds, "evaluate": time.perf_counter() - t0}
    stats: dict[str, dict[str, int]] = {}
    for batch_stats in ranking.solver_stats:
        _add_stats(stats, batch_stats)
    return Evaluation(acc.result(), acc.n_users, timings, stats, users, ranking)


def protocol_matrices(
    dataset: Dataset, split: str = "test", history: str = "train"
) -> tuple[sp.csr_matrix, sp.csr_matrix | None, sp.csr_matrix]:
    """(input history, items excluded or None for the history itself, items to find) of a split."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if history not in HISTORIES:
        raise ConfigError(f"history must be one of {', '.join(HISTORIES)}, got {history!r}")
    if split == "valid":
        if dataset.valid is None:
            raise ConfigError(f"{dataset.name} has no validation split (carve one with bspm_jax.data.carve_validation)")
        if history != "train":
            raise ConfigError("validation is scored from the train history only (history='train')")
        return dataset.train, None, dataset.valid
    if dataset.valid is None:
        if history != "train":
            raise ConfigError(f"history {history!r} needs a validation split, and {dataset.name} has none")
        return dataset.train, None, dataset.test
    seen = (dataset.train + dataset.valid).tocsr()
    seen.data[:] = 1.0
    if history == "train+valid":
        return seen, None, dataset.test
    return dataset.train, seen, dataset.test


def _add_stats(total: dict[str, dict[str, int]], stats: dict[str, dict[str, Any]]) -> None:
    """Accumulate per-batch solver counts: totals and the largest batch's value."""
    for process, counts in stats.items():
        entry = total.setdefault(process, {"batches": 0})
        entry["batches"] += 1
        for key, value in counts.items():
            value = int(value)
            entry[f"total_{key}"] = entry.get(f"total_{key}", 0) + value
            entry[f"max_{key}"] = max(entry.get(f"max_{key}", 0), value)
