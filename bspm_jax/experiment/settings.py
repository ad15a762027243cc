"""A configuration taken apart once into typed settings (:class:`RunSettings`), and the configuration of a saved model."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax

from ..config import DEFAULTS, Config, config_from_dict
from ..data import Dataset, carve_validation, load_dataset
from ..errors import ConfigError
from ..evaluation.fit import FitOptions
from ..figures.curves import plot_curves
from ..models import AbstractRecommender, make_model
from ..ranking import Progress
from ..serial import read_header
from ..spectral import SpectrumCache, SpectrumStore
from ..training import TrainSettings

_CARVE = ("validation", "validation_seed")


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything a run reads from its :class:`~bspm_jax.config.Config`, checked once.

    ``model``: the unfitted model of ``[model]``; ``data_path`` (None: the shipped sample)
    and ``data_options`` (the loader's keyword arguments) from ``[data]``, and
    ``validation`` / ``validation_seed``: the share of each user's train items carved as a
    validation split when the data has none; ``ks``, ``batch_size``, ``devices`` (local
    devices, None for one) and ``refit_with_valid`` from ``[evaluation]``; ``train``
    from ``[train]``; ``spectra``: where training-free models find and keep their SVDs
    (on disk unless ``cache.spectra`` is false).
    """

    config: Config
    model: AbstractRecommender
    data_path: str | None
    data_options: dict[str, Any]
    validation: float | None
    validation_seed: int
    ks: list[int]
    batch_size: int | str
    devices: int | None
    refit_with_valid: bool
    train: TrainSettings
    spectra: SpectrumCache

    @classmethod
    def of(cls, config: Config) -> RunSettings:
        data = {k: v for k, v in config["data"].items() if k not in _CARVE}
        path = data.pop("path", None)
        seed = config["data"].get("validation_seed", 0)
        if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
            raise ConfigError(f"data.validation_seed must be an integer >= 0, got {seed!r}")
        evaluation = {**DEFAULTS["evaluation"], **config["evaluation"]}
        devices = evaluation.get("devices")
        cache = {**DEFAULTS["cache"], **config["cache"]}
        spectra = SpectrumCache(SpectrumStore(max_bytes=int(float(cache["max_gib"]) * 2**30))) if cache["spectra"] \
            else SpectrumCache()
        return cls(
            config=config,
            model=make_model(config.model_name, **config.model_settings),
            data_path=path,
            data_options={("test_path" if k == "test" else k): v for k, v in data.items()},
            validation=config["data"].get("validation") or None,  # false: none carved
            validation_seed=seed,
            ks=evaluation["k"],
            batch_size=evaluation["batch_size"],
            devices=len(jax.local_devices()) if devices == "all" else devices,
            refit_with_valid=bool(evaluation.get("refit_with_valid", False)),
            train=TrainSettings.from_table(config["train"]),
            spectra=spectra,
        )

    def dataset(self) -> Dataset:
        """The dataset of ``[data]``, with a validation split carved from train when asked and it has none."""
        path = self.data_path
        if path is not None and Path(path).is_file() and "test_path" not in self.data_options:
            # an interactions file: validation is held out the way test is (a time split's by time)
            return load_dataset(path, **self.data_options, validation=self.validation,
                                validation_seed=self.validation_seed)
        dataset = load_dataset(path, **self.data_options)
        if self.validation is not None and dataset.valid is None:
            dataset = carve_validation(dataset, self.validation, self.validation_seed)
        return dataset

    def fit_options(self, train_dir: str | Path | None = None, resume: bool = False,
                    progress: Progress | None = None) -> FitOptions:
        """How the model is fitted: on train (or train + validation), trained models checkpointed in ``train_dir``."""
        return FitOptions(self.refit_with_valid, self.train, train_dir, resume, self.batch_size, progress,
                          spectra=self.spectra, draw_curve=plot_curves)

    def data_table(self, saved: bool = True) -> dict[str, Any]:
        """``[data]`` as a run records it: the path, the loader's options and the validation hold-out (the model
        was fitted without those interactions). A saved model (``saved``) keeps the path made absolute where it
        exists here; a run's record names the path as given (``<sample>`` for the shipped sample)."""
        options = {("test" if k == "test_path" else k): v for k, v in self.data_options.items()}
        carve = {} if self.validation is None else {"validation": self.validation, "validation_seed": self.validation_seed}
        if saved:
            path = self.data_path
            if path is not None and Path(path).exists():
                path = str(Path(path).resolve())
            return {**({} if path is None else {"path": path}), **options, **carve}
        return {"path": "<sample>" if self.data_path is None else str(self.data_path), **options, **carve}


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


def saved_data_table(path: str | Path) -> dict[str, Any]:
    """The ``[data]`` table a saved model was fitted with (its header's notes; empty when it has none)."""
    return dict((read_header(path).get("notes", {}).get("config") or {}).get("data", {}))


def model_from_config(config: Config) -> AbstractRecommender:
    """The (unfitted) model of ``config``'s ``[model]`` table."""
    return make_model(config.model_name, **config.model_settings)


def dataset_from_config(config: Config) -> Dataset:
    """The dataset named by ``[data]`` (:meth:`RunSettings.dataset`)."""
    return RunSettings.of(config).dataset()


def train_settings(config: Config) -> TrainSettings:
    """``[train]`` as :class:`~bspm_jax.training.TrainSettings` (defaults for missing keys)."""
    return TrainSettings.from_table(config["train"])
