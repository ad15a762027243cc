"""Grid search on a validation split; pre-processing shared across grid points.

Protocol: the dataset's own validation split (e.g. DiffRec's ``valid_list.npy``) or, when it
has none, one carved from train by :func:`carve_validation` (a seeded per-user holdout of
each user's train items); every grid point is fitted on the (remaining) train items and
ranked on the validation items with the train items excluded, never on test. Grid points whose models have the same
``fit_key`` (for BSPM: the SVD rank) share one fit, so the normalisation and the SVD run
once per rank. The best point is then refitted on the dataset's train split (the whole train when the validation
was carved from it) and evaluated on test, with train and any given validation items excluded.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import Config, dumps
from ..data import Dataset, carve_validation
from ..errors import ConfigError
from ..evaluation.protocol import evaluate
from ..runtime.io import write_json_atomic, write_text_atomic
from ..ranking.metrics import check_metric
from ..models import AbstractTrainingFree, FitCache, make_model
from ..ranking import Progress, no_progress
from ..spectral import SpectrumCache

PAPER_GRID: dict[str, list[Any]] = {
    "sharpen_solver": ["euler", "rk4"],
    "K_b": [1, 2, 3, 4],
    "K_s": [1, 2, 3, 4],
    "T_b": [1.0, 2.0, 3.0, 4.0, 5.0],
    "T_s": [1.0, 2.0, 3.0, 4.0, 5.0],
    "beta": [round(0.1 * i, 1) for i in range(11)],
    "k": [round(0.1 * i, 1) for i in range(1, 11)],
}
"""The BSPM paper's search space (section 4.1.2): Euler/RK4, 1-4 steps per process,
T_b and T_s in 1..5, beta in 0.0..1.0, heat capacity k in 0.1..1.0."""


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """Every grid point's validation metrics (sorted best first), the best settings and its test metrics."""

    metric: str
    rows: list[dict[str, Any]]
    best: dict[str, Any]
    test_metrics: dict[str, float]
    validation: dict[str, Any]
    timings_s: dict[str, float]


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of the grid's values, in the grid's key order."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def validation_split(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """The dataset itself if it has a validation split, else :func:`carve_validation` of it (``fraction``, ``seed``)."""
    return dataset if dataset.valid is not None else carve_validation(dataset, fraction, seed)


def validation_record(dataset: Dataset, val: Dataset, fraction: float, seed: int) -> dict[str, Any]:
    """How the validation split ``val`` of ``dataset`` was made, for the results files."""
    carved = val is not dataset
    return {
        "protocol": ("per-user holdout of the train split (carve_validation)" if carved
                     else "the dataset's validation split") + "; test never used for selection",
        "fraction": fraction if carved else None,
        "seed": seed if carved else None,
        "n_fit_interactions": val.n_train,
        "n_validation_interactions": val.n_valid,
    }


def tune(
    model_name: str,
    base_settings: Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    dataset: Dataset,
    metric: str = "recall@20",
    validation: float = 0.2,
    seed: int = 0,
    ks: Sequence[int] = (20,),
    batch_size: int = 1024,
    max_points: int = 1000,
    progress: Progress | None = None,
    spectra: SpectrumCache | None = None,
) -> TuneResult:
    """Grid search of ``model_name`` over ``grid`` (model settings) on a validation split.

    ``metric`` (e.g. ``ndcg@20``) selects the best point; ties keep the grid's order.
    Every grid point is validated before anything is fitted, so a bad value fails fast.
    ``spectra`` shares SVDs with other runs (e.g. kept on disk).
    """
    _, cut = check_metric(metric)
    ks = sorted(set(int(k) for k in ks) | {cut})
    points = grid_points(grid)
    if not points:
        raise ConfigError("the grid is empty")
    if len(points) > max_points:
        raise ConfigError(
            f"the grid has {len(points):,} points, more than max_points={max_points:,}; "
            "give a subset (--grid KEY=v1,v2 or [tune.grid]) or raise --max-points"
        )
    try:
        base = make_model(model_name, **base_settings)  # the settings the grid does not vary must be valid too
    except ConfigError as err:
        raise ConfigError(f"base settings: {err}") from None
    if not isinstance(base, AbstractTrainingFree):
        raise ConfigError(f"bspm tune searches training-free models; the {model_name} model is trained: choose its "
                          "settings with runs early-stopped on validation (bspm run --set train.lr=...)")
    models = []
    for point in points:
        try:
            models.append(make_model(model_name, **{**base_settings, **point}))
        except ConfigError as err:
            raise ConfigError(f"grid point {point}: {err}") from None
    t0 = time.perf_counter()
    val = validation_split(dataset, validation, seed)
    fits = FitCache(spectra)
    fit_s = 0.0
    rows = []
    for point, model in zip(points, (progress or no_progress)(models, desc="grid", unit="point")):
        t = time.perf_counter()
        n_fits = len(fits)
        model = fits.fit(model, val.train)
        fit_s += (time.perf_counter() - t) if len(fits) > n_fits else 0.0
        result = evaluate(model, val, ks=ks, batch_size=batch_size, split="valid")
        rows.append({**point, **result.metrics, "seconds": time.perf_counter() - t})
    search_s = time.perf_counter() - t0
    order = sorted(range(len(rows)), key=lambda i: (-_score(rows[i][metric]), i))
    rows = [rows[i] for i in order]
    best = {**base_settings, **points[order[0]]}
    t = time.perf_counter()
    test = evaluate(make_model(model_name, **best).fit(dataset.train, fits.spectra), dataset, ks=ks, batch_size=batch_size)
    protocol = {**validation_record(dataset, val, validation, seed), "n_users_evaluated": result.n_users}
    timings = {"fit_validation": fit_s, "search": search_s, "test": time.perf_counter() - t}
    return TuneResult(metric, rows, best, test.metrics, protocol, timings)


def _score(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def write_tune_results(
    out: str | Path, config: Config, dataset: Dataset, result: TuneResult, grid: Mapping[str, Sequence[Any]], wall: float
) -> list[str]:
    """Write ``results.csv``, ``results.json`` and ``best.toml`` (the best configuration) into folder ``out``.

    Returns the CSV's columns: the grid's settings, then the metrics and seconds.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(grid) + [k for k in result.rows[0] if k not in grid]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[row[c] for c in columns] for row in result.rows])
    write_text_atomic(out / "results.csv", buffer.getvalue())
    best_config = Config({"model": {"name": config.model_name, **result.best}, "data": config["data"],
                          "evaluation": config["evaluation"]},
                         f"best of bspm tune by validation {result.metric} on {dataset.name}")
    write_text_atomic(out / "best.toml", dumps(best_config.to_dict()))
    write_json_atomic(out / "results.json", {
        "model": config.model_name, "config": config.to_dict(), "dataset": dataset.summary(),
        "metric": result.metric, "grid": dict(grid), "validation": result.validation,
        "results": result.rows, "best": result.best, "test_metrics": result.test_metrics,
        "timings_s": {**result.timings_s, "wall": wall},
    })
    return columns
