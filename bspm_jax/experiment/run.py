"""The entry points of a run: fit and save, recommend, and fit then evaluate, each from a configuration."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..config import Config, effective
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..evaluation.fit import FitOptions, fit_model
from ..evaluation.fit import fitting_matrix
from ..evaluation.protocol import evaluate, protocol_of
from ..models import AbstractRecommender, AbstractTrainingFree, load_model
from ..ranking import Progress, Recommendations, recommend_rows, write_recommendations
from ..runtime.environment import environment_info, memory_info
from ..serial import check_target, load_history
from .settings import RunSettings, saved_config, saved_data_table


def fit_config(
    config: Config,
    save: str | Path | None = None,
    progress: Progress | None = None,
    train_dir: str | Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Fit (or train) the model of ``config`` on its data's train split, and save it to folder ``save``.

    Returns the model, dataset block, settings (as config tables), training record and timings.
    """
    if save is not None:
        check_target(Path(save))
    run = RunSettings.of(config)
    t0 = time.perf_counter()
    dataset = run.dataset()
    t1 = time.perf_counter()
    fitted, record = fit_model(run.model, dataset, run.fit_options(train_dir, resume, progress))
    t2 = time.perf_counter()
    tables = effective(Config({"model": {"name": config.model_name}, "data": run.data_table(),
                               "evaluation": {"k": run.ks, "batch_size": run.batch_size,
                                              "refit_with_valid": run.refit_with_valid}}), fitted.config())
    extra = {} if record is None else {"training": record}
    if record is not None:
        tables["train"] = record["settings"]
    if save is not None:
        history = dataclasses.replace(dataset, train=fitting_matrix(dataset, run.refit_with_valid), valid=None,
                                      test=sp.csr_matrix(dataset.train.shape, dtype=np.float32))
        fitted.save(save, notes={"config": tables, "dataset": dataset.summary(), **extra}, data=history)
    return {"model": config.model_name, "fitted": fitted, "config": tables, "dataset": dataset.summary(), **extra,
            "timings_s": {"load": t1 - t0, "preprocess": t2 - t1, "total": time.perf_counter() - t0}}


@dataclasses.dataclass(frozen=True)
class Recommender:
    """A fitted model and the data it recommends from: ``dataset`` (its ids), ``history`` (the fitted-on matrix)."""

    model: AbstractRecommender
    dataset: Dataset
    history: sp.csr_matrix
    batch_size: int | str

    def users(self, user_ids: Sequence[Any] | str) -> np.ndarray:
        """Indices of known users given in their ids, or every user for ``"all"``."""
        if isinstance(user_ids, str):
            if user_ids != "all":
                raise ConfigError(f"users must be 'all' or a list of ids, got {user_ids!r}")
            return np.arange(self.dataset.n_users)
        return self.dataset.user_indices(list(user_ids)) if len(user_ids) else np.zeros(0, dtype=np.int64)


def recommender_config(config: Config, include_test: bool = False, load: str | Path | None = None) -> Recommender:
    """The model of ``config`` fitted on its data's train split (and test with ``include_test``; an interactions file
    is not split unless ``[data]`` asks for a split), or the model saved at ``load`` with the data saved beside it
    (or ``config``'s data when it names a path)."""
    run = RunSettings.of(config if load is None else saved_config(load, config))
    if load is not None:
        model = load_model(load)
        saved = load_history(load)
        if saved is not None and "path" not in config["data"]:
            if include_test:
                raise ConfigError(f"--include-test is for fitting: the model saved in {load} recommends from the "
                                  "interactions it was fitted on, saved with it")
            return Recommender(model, saved, saved.train, run.batch_size)
    options = run.data_options
    if run.data_path is not None and Path(run.data_path).is_file() and not _SPLIT_KEYS & set(options):
        # an interactions file is split as the saved model's was, or when fitting here, not at all
        if load is None:
            run = dataclasses.replace(run, data_options={**options, "split": "none"})
        else:
            fitted = saved_data_table(load)
            run = dataclasses.replace(
                run, data_options={**{k: fitted[k] for k in _SPLIT_KEYS | _READ_KEYS if k in fitted}, **options},
                validation=run.validation if run.validation is not None else fitted.get("validation"),
                validation_seed=fitted.get("validation_seed", run.validation_seed))
    dataset = run.dataset()
    history = sp.csr_matrix((dataset.train + dataset.test) > 0 if include_test else dataset.train, dtype=np.float32)
    if load is None:
        if not isinstance(run.model, AbstractTrainingFree):
            raise ConfigError(f"the {run.model.name} model is trained: train and save it with bspm fit --save DIR, "
                              "then recommend with --load DIR")
        model = run.model.fit(history, run.spectra)
    return Recommender(model, dataset, history, run.batch_size)


_SPLIT_KEYS = {"split", "holdout", "seed", "cut", "last_n", "test_path"}
"""``[data]`` keys that ask for a split of an interactions file."""
_READ_KEYS = {"time_col", "weight_col", "min_weight"}
"""``[data]`` keys a saved model's split of an interactions file needs besides its own."""


def recommend_config(
    config: Config,
    user_ids: Sequence[Any] | str,
    new_users: Sequence[tuple[str, Sequence[Any]]],
    k: int,
    filter_seen: bool = True,
    include_test: bool = False,
    load: str | Path | None = None,
    progress: Progress | None = None,
    out: str | Path | None = None,
) -> Recommendations | tuple[Path, int]:
    """Top-``k`` recommendations for known users (ids, or ``"all"``) and new users from the model of ``config``
    (or the saved one at ``load``); with ``out`` (``.parquet`` or ``.csv``) they are streamed to that file in chunks
    of users (:func:`~bspm_jax.ranking.write_recommendations`), which returns the file and the users in it."""
    rec = recommender_config(config, include_test, load)
    known = rec.users(user_ids)
    if out is not None:
        return write_recommendations(rec.model, rec.dataset, rec.history, out, known, new_users, k, filter_seen,
                                     rec.batch_size, progress)
    return recommend_rows(rec.model, rec.dataset, rec.history, known, new_users, k, filter_seen, rec.batch_size,
                          progress)


def run_config(
    config: Config,
    progress: Progress | None = None,
    load: str | Path | None = None,
    train_dir: str | Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """:func:`run_experiment` for a configuration (or the model saved at ``load``, evaluated without refitting);
    the result echoes the effective config. ``train_dir`` and ``resume`` as in :class:`FitOptions`."""
    run = RunSettings.of(config if load is None else saved_config(load, config))
    model = run.model if load is None else load_model(load)
    result = run_experiment(model, run.dataset(), run.ks, run.batch_size, progress, name=run.config.model_name,
                            devices=run.devices, fitting=run.fit_options(train_dir, resume, progress))
    result["config"]["data"] = run.data_table(saved=False)  # the data as the config names it, not the loaded name
    if run.config.description:
        result["config"] = {"description": run.config.description, **result["config"]}
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
    fitting: FitOptions | None = None,
) -> dict[str, Any]:
    """Fit ``model`` on the train split of ``data`` (unless it is fitted already) and evaluate it on the test split.

    ``data`` is a Dataset, a LightGCN folder, a pairs file, a DiffRec folder, or None for
    the shipped sample. With a validation split, test excludes train and validation items
    and the result also has ``validation_metrics``; ``refit_with_valid`` fits on train +
    validation and scores test from that history (``fitting``: :class:`FitOptions`, which
    also trains trained models). The result has the keys model, config (the effective
    settings, as config-file tables), protocol (:func:`bspm_jax.evaluation.protocol_of`), dataset,
    metrics, solver_stats, timings_s, memory and environment, and ``training`` (epochs, best epoch,
    seconds) for a trained model.
    """
    fitting = fitting or FitOptions(batch_size=batch_size, progress=progress)
    refit_with_valid = fitting.refit_with_valid
    t_start = time.perf_counter()
    dataset = data if isinstance(data, Dataset) else load_dataset(data, **(data_options or {}))
    t_loaded = time.perf_counter()
    fitted, record = fit_model(model, dataset, fitting)
    t_fitted = time.perf_counter()
    history = "train+valid" if refit_with_valid else "train"
    result = evaluate(fitted, dataset, ks=ks, batch_size=batch_size, progress=progress, devices=devices,
                      history=history)
    validation = None
    if dataset.valid is not None and not refit_with_valid:
        validation = evaluate(fitted, dataset, ks=ks, batch_size=batch_size, devices=devices, split="valid")
    total = time.perf_counter() - t_start
    source = "<sample>" if data is None else str(getattr(data, "name", data))
    options = {("test" if k == "test_path" else k): v for k, v in (data_options or {}).items()}
    tables = {
        "data": {"path": source, **options},
        "evaluation": {"k": sorted(set(int(k) for k in ks)), "batch_size": batch_size, "devices": devices or 1,
                       **({"refit_with_valid": True} if refit_with_valid else {})},
    }
    extra = {} if validation is None else {"validation_metrics": validation.metrics}
    if record is not None:
        tables["train"] = record["settings"]
        extra["training"] = record
    return {
        "model": name or model.name,
        "protocol": protocol_of(dataset, refit_with_valid),
        "config": effective(Config({"model": {"name": name or model.name}, **tables}), model.config()),
        "dataset": {**dataset.summary(), "n_users_evaluated": result.n_users, **dataset.stats},
        "metrics": result.metrics,
        **extra,
        "solver_stats": result.solver_stats,
        "timings_s": {
            "load": t_loaded - t_start,
            "preprocess": t_fitted - t_loaded,
            **result.timings_s,
            **({} if validation is None else {"validation": sum(validation.timings_s.values())}),
            "total": total,
        },
        "memory": memory_info(),
        "environment": environment_info(fitted.config().get("kernel", "auto")),
    }
