"""One experiment end to end: load, fit, evaluate; returns the JSON output contract."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data import Dataset, load_dataset
from .environment import environment_info, memory_info
from .evaluation import Progress, evaluate
from .models import AbstractRecommender


def run_experiment(
    model: AbstractRecommender,
    data: str | Path | Dataset | None = None,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    progress: Progress | None = None,
    data_options: dict[str, Any] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Fit ``model`` on the train split of ``data`` and evaluate it on the test split.

    ``data`` is a Dataset, a LightGCN folder, a pairs file, or None for the shipped sample.
    The result has the keys model, config, dataset, metrics, timings_s and environment.
    """
    t_start = time.perf_counter()
    dataset = data if isinstance(data, Dataset) else load_dataset(data, **(data_options or {}))
    t_loaded = time.perf_counter()
    fitted = model.fit(dataset.train)
    t_fitted = time.perf_counter()
    result = evaluate(fitted, dataset, ks=ks, batch_size=batch_size, progress=progress)
    total = time.perf_counter() - t_start
    config = {
        **model.config(),
        "ks": sorted(set(int(k) for k in ks)),
        "batch_size": batch_size,
        "data": "<sample>" if data is None else str(getattr(data, "name", data)),
        **({"data_options": data_options} if data_options else {}),
    }
    return {
        "model": name or model.name,
        "config": config,
        "dataset": {**dataset.summary(), "n_users_evaluated": result.n_users, **dataset.stats},
        "metrics": result.metrics,
        "solver_stats": result.solver_stats,
        "timings_s": {
            "load": t_loaded - t_start,
            "preprocess": t_fitted - t_loaded,
            **result.timings_s,
            "total": total,
        },
        "memory": memory_info(),
        "environment": environment_info(),
    }
