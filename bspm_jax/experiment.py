"""One experiment end to end: load, fit (or load a saved fit), evaluate; returns the JSON output contract."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import scipy.sparse as sp

from .serial import check_target, read_header
from .config import DEFAULTS, Config, config_from_dict, effective
from .data import Dataset, carve_validation, load_dataset
from .runtime.environment import environment_info, memory_info
from .errors import ConfigError
from .evaluation.fit import FitOptions, fit_model
from .evaluation.protocol import evaluate, protocol_of
from .figures.curves import plot_curves
from .models import AbstractRecommender, AbstractTrainingFree, load_model, make_model
from .ranking import Progress, Recommendations, recommend_for
from .spectral import SpectrumCache, SpectrumStore
from .training import TrainSettings


def model_from_config(config: Config) -> AbstractRecommender:
    """The (unfitted) model of ``config``'s ``[model]`` table."""
    return make_model(config.model_name, **config.model_settings)


_CARVE = ("validation", "validation_seed")


def data_source(config: Config) -> tuple[str | None, dict[str, Any]]:
    """``[data]`` as (path or None for the shipped sample, loader options)."""
    data = {k: v for k, v in config["data"].items() if k not in _CARVE}
    path = data.pop("path", None)
    return path, {("test_path" if k == "test" else k): v for k, v in data.items()}


def dataset_from_config(config: Config) -> Dataset:
    """The dataset named by ``[data]`` (the shipped sample when it has no path).

    With ``data.validation`` (a share of each user's train items), a validation split is
    carved from train (:func:`bspm_jax.data.carve_validation`, seeded by ``data.validation_seed``,
    default 0) when the data has none; data that has one keeps it.
    """
    path, options = data_source(config)
    dataset = load_dataset(path, **options)
    data = config["data"]
    if "validation" in data and dataset.valid is None:
        seed = data.get("validation_seed", 0)
        if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
            raise ConfigError(f"data.validation_seed must be an integer >= 0, got {seed!r}")
        dataset = carve_validation(dataset, data["validation"], seed)
    return dataset


def evaluation_settings(config: Config) -> tuple[list[int], int]:
    """``[evaluation]`` as (cut-offs K, users per batch)."""
    ev = {**DEFAULTS["evaluation"], **config["evaluation"]}
    return ev["k"], ev["batch_size"]


def refit_with_valid(config: Config) -> bool:
    """``evaluation.refit_with_valid``: fit on train + validation before the test ranking."""
    return bool(config["evaluation"].get("refit_with_valid", False))


def device_count(config: Config) -> int | None:
    """``evaluation.devices``: a number of local devices, "all", or None (one device)."""
    devices = config["evaluation"].get("devices")
    return len(jax.local_devices()) if devices == "all" else devices


def saved_config(path: str | Path, config: Config | None = None) -> Config:
    """The configuration a saved model was fitted with (its header's notes), ``config``'s values on top.

    ``config`` holds what the command line gave: its ``data`` and ``evaluation`` tables
    replace the saved ones; its model table must not name another model.
    """
    header = read_header(path)
    saved = header.get("notes", {}).get("config") or {"model": {"name": header["model"]}}
    base = config_from_dict({t: v for t, v in saved.items() if t in ("model", "data", "evaluation")}, None,
                            f"the config saved in {path}")
    base = base.with_values({f"model.{k}": v for k, v in header["settings"].items()})
    if config is None:
        return base
    given = config.tables
    if "name" in given.get("model", {}) and given["model"]["name"] != base.model_name:
        raise ConfigError(f"{path} holds a {base.model_name} model, not {given['model']['name']!r}")
    if config.model_settings:
        raise ConfigError(f"a saved model keeps its settings; {', '.join(config.model_settings)} cannot be changed with --load")
    values = {f"{t}.{k}": v for t in ("data", "evaluation") for k, v in given.get(t, {}).items()}
    if "path" in given.get("data", {}):  # other data: none of the saved data options
        base = Config({t: v for t, v in base.tables.items() if t != "data"}, base.description)
    return base.with_values(values)


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
    options = fit_options(config, train_dir, resume, progress)
    model = model_from_config(config)
    t0 = time.perf_counter()
    dataset = dataset_from_config(config)
    t1 = time.perf_counter()
    fitted, record = fit_model(model, dataset, options)
    t2 = time.perf_counter()
    path, options = data_source(config)
    ks, batch_size = evaluation_settings(config)
    data = {**({} if path is None else {"path": _absolute(path)}), **_option_keys(options)}
    tables = effective(Config({"model": {"name": config.model_name}, "data": data,
                               "evaluation": {"k": ks, "batch_size": batch_size,
                                              "refit_with_valid": refit_with_valid(config)}}), fitted.config())
    extra = {} if record is None else {"training": record}
    if record is not None:
        tables["train"] = record["settings"]
    if save is not None:
        fitted.save(save, notes={"config": tables, "dataset": dataset.summary(), **extra})
    return {"model": config.model_name, "fitted": fitted, "config": tables, "dataset": dataset.summary(), **extra,
            "timings_s": {"load": t1 - t0, "preprocess": t2 - t1, "total": time.perf_counter() - t0}}


def _absolute(path: str | None) -> str | None:
    """A data path that exists here, made absolute (so a saved model finds it from anywhere)."""
    return str(Path(path).resolve()) if path is not None and Path(path).exists() else path


def _option_keys(options: dict[str, Any]) -> dict[str, Any]:
    return {("test" if k == "test_path" else k): v for k, v in options.items()}


def train_settings(config: Config) -> TrainSettings:
    """``[train]`` as :class:`TrainSettings` (defaults for missing keys)."""
    return TrainSettings.from_table(config["train"])


def fit_options(config: Config, train_dir: str | Path | None = None, resume: bool = False,
                progress: Progress | None = None) -> FitOptions:
    """The :class:`FitOptions` of a configuration and the command line's training folder."""
    return FitOptions(refit_with_valid(config), train_settings(config), train_dir, resume,
                      evaluation_settings(config)[1], progress, spectra=spectrum_cache(config),
                      draw_curve=plot_curves)


def spectrum_cache(config: Config) -> SpectrumCache:
    """The spectra of a run: kept on disk (:class:`SpectrumStore`, ``$BSPM_CACHE_DIR``) unless ``cache.spectra`` is false."""
    table = {**DEFAULTS["cache"], **config["cache"]}
    if not table["spectra"]:
        return SpectrumCache()
    return SpectrumCache(SpectrumStore(max_bytes=int(float(table["max_gib"]) * 2**30)))


def recommend_config(
    config: Config,
    user_ids: Sequence[Any],
    new_users: Sequence[tuple[str, Sequence[Any]]],
    k: int,
    filter_seen: bool = True,
    include_test: bool = False,
    load: str | Path | None = None,
    progress: Progress | None = None,
) -> Recommendations:
    """Top-``k`` recommendations for known and new users from the model of ``config`` (or the saved one at ``load``)."""
    if load is not None:
        config = saved_config(load, config)
    dataset = dataset_from_config(config)
    history = sp.csr_matrix((dataset.train + dataset.test) > 0 if include_test else dataset.train, dtype=np.float32)
    if load is not None:
        model = load_model(load)
    else:
        model = model_from_config(config)
        if not isinstance(model, AbstractTrainingFree):
            raise ConfigError(f"the {model.name} model is trained: train and save it with bspm fit --save DIR, "
                              "then recommend with --load DIR")
        model = model.fit(history, spectrum_cache(config))
    _, batch_size = evaluation_settings(config)
    return recommend_for(model, dataset, history, user_ids, new_users, k, filter_seen, batch_size, progress)


def run_config(
    config: Config,
    progress: Progress | None = None,
    load: str | Path | None = None,
    train_dir: str | Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """:func:`run_experiment` for a configuration (or the model saved at ``load``, evaluated without refitting);
    the result echoes the effective config. ``train_dir`` and ``resume`` as in :class:`FitOptions`."""
    if load is not None:
        config = saved_config(load, config)
        model = load_model(load)
    else:
        model = model_from_config(config)
    path, options = data_source(config)
    ks, batch_size = evaluation_settings(config)
    result = run_experiment(model, path, ks, batch_size, progress, options, name=config.model_name,
                            devices=device_count(config), fitting=fit_options(config, train_dir, resume, progress))
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
    options = _option_keys(data_options or {})
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
