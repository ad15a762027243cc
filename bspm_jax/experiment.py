"""One experiment end to end: load, fit (or load a saved fit), evaluate; returns the JSON output contract."""

from __future__ import annotations

import dataclasses
import numbers
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import scipy.sparse as sp

from . import serial
from .config import DEFAULTS, Config, config_from_dict, effective
from .data import Dataset, carve_validation, load_dataset
from .data.dataset import matrix_digest
from .environment import environment_info, memory_info
from .errors import ConfigError
from .evaluation import evaluate, protocol_of
from . import training
from .metrics import check_metric
from .models import AbstractRecommender, AbstractTrainedRecommender, AbstractTrainingFree, load_model, make_model
from .ranking import Progress, Recommendations, check_cutoffs, recommend_for
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
    header = serial.read_header(path)
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
        serial.check_target(Path(save))
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


def fit_matrix(dataset: Dataset, refit_with_valid: bool = False) -> sp.csr_matrix:
    """The interactions a model is fitted on: train, or train + validation (``refit_with_valid``)."""
    if not refit_with_valid:
        return dataset.train
    if dataset.valid is None:
        raise ConfigError(f"refit_with_valid needs a validation split, and {dataset.name} has none")
    both = sp.csr_matrix((dataset.train + dataset.valid) > 0, dtype=np.float32)
    both.sort_indices()
    return both


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """How a model is fitted: on train or train + validation, and for trained models the ``[train]``
    settings, the folder of checkpoints and learning curves, and whether to resume from it."""

    refit_with_valid: bool = False
    train: TrainSettings = dataclasses.field(default_factory=TrainSettings)
    train_dir: str | Path | None = None
    resume: bool = False
    batch_size: int | str = 1024
    """Users per batch when validation ranks every user (trained models)."""
    progress: Progress | None = None
    time_limit: float | None = None
    """Seconds of training after which a trained model's run stops at the end of an epoch, resumable."""
    spectra: SpectrumCache | None = None
    """Where training-free models find and keep their SVDs (None: computed afresh, in memory)."""


def fit_model(
    model: AbstractRecommender, dataset: Dataset, options: FitOptions | None = None
) -> tuple[AbstractRecommender, dict[str, Any] | None]:
    """``model`` fitted on the train split (and validation with ``refit_with_valid``), and the training
    record of a trained model (None for a training-free one).

    A model that is already fitted must have been fitted on exactly those interactions. A
    trained model is trained by :func:`bspm_jax.training.train`, early-stopped on the
    validation split's full-ranking ``train.metric`` (train items excluded); with
    ``refit_with_valid`` it is then trained afresh (same seed) on train + validation for
    the best epoch count found, with no validation (:func:`refit_trained`).
    """
    options = options or FitOptions()
    matrix = fit_matrix(dataset, options.refit_with_valid)
    if model.is_fitted:
        info = model.require_fitted()
        if info.digest != matrix_digest(matrix):
            raise ConfigError(
                f"the {model.name} model was fitted on another train matrix ({info.n_users:,} x {info.n_items:,}, "
                f"{info.n_interactions:,} interactions) than {dataset.name}'s ({matrix.shape[0]:,} x "
                f"{matrix.shape[1]:,}, {matrix.nnz:,}); give the data it was fitted on"
            )
        return model, None
    if isinstance(model, AbstractTrainingFree):
        return model.fit(matrix, options.spectra), None
    if not isinstance(model, AbstractTrainedRecommender):
        raise ConfigError(f"the {model.name} model is neither fitted in closed form nor trained")
    return _train(model, dataset, options)


def _train(model: AbstractTrainedRecommender, dataset: Dataset, options: FitOptions) -> tuple[AbstractRecommender, dict[str, Any]]:
    """Train on ``dataset.train``, early-stopped on its validation split; the best model and the record."""
    settings = options.train
    if dataset.valid is None:
        raise ConfigError(f"training the {model.name} model is early-stopped on a validation split, and {dataset.name} "
                          "has none: give a split with one (valid.txt, valid_list.npy) or carve one (bspm_jax.data.carve_validation)")
    _, k = check_metric(settings.metric)
    ks = check_cutoffs(sorted({k, *(c for c in (10, 20) if c <= dataset.n_items)}), dataset.n_items)

    def validate(m: AbstractRecommender) -> dict[str, float]:
        return evaluate(m, dataset, ks=ks, batch_size=options.batch_size, split="valid").metrics

    folder = None if options.train_dir is None else Path(options.train_dir)
    result = training.train(model, dataset.train, settings, validate, checkpoint_dir=folder, resume=options.resume,
                            out_dir=folder, progress=options.progress, time_limit=options.time_limit)
    files = [] if folder is None else [str(folder / f"{training.CURVE}.{ext}") for ext in ("csv", "json")]
    if folder is not None and result.history:
        try:
            files += [str(p) for p in training.plot_curves(result.history, folder / training.CURVE,
                                                           title=f"{model.name} on {dataset.name}")]
        except ConfigError:  # matplotlib is optional: the CSV and JSON curves are written anyway
            pass
    refit = None
    if options.refit_with_valid and not result.interrupted:  # an interrupted run has no settled epoch count yet
        t0 = time.perf_counter()
        refitted = refit_trained(result.model, dataset, settings, result.best_epoch,
                                 None if folder is None else folder / "refit", options.resume, options.progress).model
        refit = {"epochs": result.best_epoch, "seconds": time.perf_counter() - t0,
                 "matrix": "train+valid", "interactions": int(fit_matrix(dataset, True).nnz)}
    record = {
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_validation": {settings.metric: result.best_metric},
        "seconds_to_best": next((r["seconds"] for r in result.history if r["epoch"] == result.best_epoch), None),
        "stopped_early": result.stopped_early,
        "interrupted": result.interrupted,
        "resumed_from_epoch": result.resumed_from,
        "seconds": result.seconds,
        "settings": settings.to_dict(),
        "files": files,
        **({"refit_with_valid": refit} if refit else {}),
    }
    return (result.model if refit is None else refitted), record


def refit_trained(
    model: AbstractTrainedRecommender, dataset: Dataset, settings: TrainSettings, epochs: int,
    checkpoint_dir: str | Path | None = None, resume: bool = False, progress: Progress | None = None,
    time_limit: float | None = None,
) -> training.TrainResult:
    """A model with ``model``'s settings trained from scratch on train + validation for ``epochs`` epochs (the
    count chosen on validation), with ``settings``' seed and optimiser and no validation; the run (its ``model``
    is the last one; ``interrupted`` when ``time_limit`` stopped it first: resume from ``checkpoint_dir``).

    ``model`` may be the validation run's best model: only its settings are used, which for a pre-trained
    NeuMF include its parts' best epochs (``part_epochs``). Epoch 0 (the validation run kept its
    pre-trained start) refits the start alone: the parts, fused.
    """
    if not (isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool) and epochs >= 0):
        raise ConfigError(f"refitting on train + validation needs an epoch count >= 0, got {epochs!r}")
    model = model.unfitted()
    if epochs == 0:
        return training.initial_run(model, fit_matrix(dataset, True), settings, checkpoint_dir, resume=resume,
                                    progress=progress)
    fixed = dataclasses.replace(settings, epochs=int(epochs))
    return training.train(model, fit_matrix(dataset, True), fixed, None, checkpoint_dir=checkpoint_dir,
                          resume=resume, progress=progress, time_limit=time_limit)


def train_settings(config: Config) -> TrainSettings:
    """``[train]`` as :class:`TrainSettings` (defaults for missing keys)."""
    return TrainSettings.from_table(config["train"])


def fit_options(config: Config, train_dir: str | Path | None = None, resume: bool = False,
                progress: Progress | None = None) -> FitOptions:
    """The :class:`FitOptions` of a configuration and the command line's training folder."""
    return FitOptions(refit_with_valid(config), train_settings(config), train_dir, resume,
                      evaluation_settings(config)[1], progress, spectra=spectrum_cache(config))


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
