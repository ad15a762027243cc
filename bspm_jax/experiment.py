"""One experiment end to end: load, fit, evaluate; returns the JSON output contract."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from .config import DEFAULTS, Config, effective
from .data import Dataset, load_dataset
from .environment import environment_info, memory_info
from .evaluation import evaluate
from .models import AbstractRecommender, make_model
from .models.base import Progress


def model_from_config(config: Config) -> AbstractRecommender:
    """The (unfitted) model of ``config``'s ``[model]`` table."""
    return make_model(config.model_name, **config.model_settings)


def data_source(config: Config) -> tuple[str | None, dict[str, Any]]:
    """``[data]`` as (path or None for the shipped sample, loader options)."""
    data = config["data"]
    path = data.pop("path", None)
    return path, {("test_path" if k == "test" else k): v for k, v in data.items()}


def dataset_from_config(config: Config) -> Dataset:
    """The dataset named by ``[data]`` (the shipped sample when it has no path)."""
    path, options = data_source(config)
    return load_dataset(path, **options)


def evaluation_settings(config: Config) -> tuple[list[int], int]:
    """``[evaluation]`` as (cut-offs K, users per batch)."""
    ev = {**DEFAULTS["evaluation"], **config["evaluation"]}
    return ev["k"], ev["batch_size"]


def device_count(config: Config) -> int | None:
    """``evaluation.devices``: a number of local devices, "all", or None (one device)."""
    devices = config["evaluation"].get("devices")
    return len(jax.local_devices()) if devices == "all" else devices


def run_config(config: Config, progress: Progress | None = None) -> dict[str, Any]:
    """:func:`run_experiment` for a configuration; the result echoes the effective config."""
    model = model_from_config(config)
    path, options = data_source(config)
    ks, batch_size = evaluation_settings(config)
    result = run_experiment(model, path, ks, batch_size, progress, options, name=config.model_name,
                            devices=device_count(config))
    if config.description:
        result["config"] = {"description": config.description, **result["config"]}
    return result


def run_experiment(
    model: AbstractRecommender,
    data: str | Path | Dataset | None = None,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    progress: Progress | None = None,
    data_options: dict[str, Any] | None = None,
    name: str | None = None,
    devices: int | None = None,
) -> dict[str, Any]:
    """Fit ``model`` on the train split of ``data`` and evaluate it on the test split.

    ``data`` is a Dataset, a LightGCN folder, a pairs file, or None for the shipped sample.
    The result has the keys model, config (the effective settings, as config-file tables),
    dataset, metrics, solver_stats, timings_s, memory and environment.
    """
    t_start = time.perf_counter()
    dataset = data if isinstance(data, Dataset) else load_dataset(data, **(data_options or {}))
    t_loaded = time.perf_counter()
    fitted = model.fit(dataset.train)
    t_fitted = time.perf_counter()
    result = evaluate(fitted, dataset, ks=ks, batch_size=batch_size, progress=progress, devices=devices)
    total = time.perf_counter() - t_start
    source = "<sample>" if data is None else str(getattr(data, "name", data))
    options = {("test" if k == "test_path" else k): v for k, v in (data_options or {}).items()}
    tables = {
        "data": {"path": source, **options},
        "evaluation": {"k": sorted(set(int(k) for k in ks)), "batch_size": batch_size, "devices": devices or 1},
    }
    return {
        "model": name or model.name,
        "config": effective(Config({"model": {"name": name or model.name}, **tables}), model.config()),
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
        "environment": environment_info(fitted.config().get("kernel", "auto")),
    }
