"""Settings chosen on validation from a configuration: a grid search or gradient tuning, written to a folder."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ..config import DEFAULTS, Config
from ..errors import ConfigError
from ..ranking import Progress
from ..tuning.gradient import GradientSettings, GradientTuneResult, tune_gradient, write_gradient_results
from ..tuning.grid import PAPER_GRID, TuneResult, tune, write_tune_results
from .settings import RunSettings

GRADIENT_FIELDS = ("steps", "lr", "batch_users", "bands", "eval_every", "eval_users", "width")
"""The ``[tune]`` keys of gradient tuning's :class:`~bspm_jax.tuning.gradient.GradientSettings`."""


@dataclasses.dataclass(frozen=True)
class TuneRun:
    """A finished tuning: ``method`` (grid or gradient), its ``result``, the ``grid`` searched (grid search), the
    gradient ``settings`` (gradient tuning), the results CSV's ``columns`` (grid search), wall ``seconds`` and
    the ``files`` written."""

    method: str
    result: TuneResult | GradientTuneResult
    grid: dict[str, list[Any]] | None
    settings: GradientSettings | None
    columns: list[str]
    seconds: float
    files: list[Path]


def tune_plan(config: Config, method: str | None = None) -> tuple[str, dict[str, list[Any]] | None, GradientSettings | None]:
    """The method of ``config``'s ``[tune]`` table (``method`` overrides it), with its grid or its gradient settings."""
    opts = {**DEFAULTS["tune"], **config["tune"]}
    method = opts["method"] if method is None else method
    if method == "grid":
        return method, {k: v if isinstance(v, list) else [v] for k, v in (opts["grid"] or PAPER_GRID).items()}, None
    if method != "gradient":
        raise ConfigError(f"tune.method must be grid or gradient, got {method!r}")
    frozen = opts.get("frozen", [])
    if not (isinstance(frozen, list) and all(isinstance(name, str) for name in frozen)):
        raise ConfigError(f"tune.frozen must be a list of parameter names, got {frozen!r}")
    settings = GradientSettings(**{k: opts[k] for k in GRADIENT_FIELDS if k in opts}, seed=opts["seed"],
                                frozen=tuple(frozen))
    return method, None, settings


def tune_config(config: Config, out: str | Path, method: str | None = None, max_points: int = 1000,
                progress: Progress | None = None) -> TuneRun:
    """Tune the model of ``config`` on a validation split carved from its train split (``[tune]``: metric,
    validation share, seed; the grid or the gradient settings), score the best on test once, and write the
    results into folder ``out`` (``results.csv`` for a grid, ``results.json``, ``best.toml``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    method, grid, settings = tune_plan(config, method)
    opts = {**DEFAULTS["tune"], **config["tune"]}
    run = RunSettings.of(config)
    t0 = time.perf_counter()
    dataset = run.dataset()
    if grid is not None:
        result: TuneResult | GradientTuneResult = tune(
            config.model_name, config.model_settings, grid, dataset, opts["metric"], opts["validation"], opts["seed"],
            run.ks, run.batch_size, max_points, progress, run.spectra)
        wall = time.perf_counter() - t0
        columns = write_tune_results(out, config, dataset, result, grid, wall)
        files = [out / "results.csv", out / "results.json", out / "best.toml"]
    else:
        result = tune_gradient(run.model, dataset, opts["metric"], opts["validation"], opts["seed"], run.ks,
                               run.batch_size, settings, progress, run.spectra)
        wall = time.perf_counter() - t0
        write_gradient_results(out, config, dataset, result, wall)
        columns, files = [], [out / "results.json", out / "best.toml"]
    return TuneRun(method, result, grid, settings, columns, wall, files)
