"""The fit policy of a run: a model fitted in closed form on its fit matrix, or trained on train and
early-stopped on the validation split (full ranking, train items excluded), optionally refitted on
train + validation for the epoch count validation chose."""

from __future__ import annotations

import dataclasses
import numbers
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..data import Dataset
from ..data.sparse import matrix_digest
from ..errors import ConfigError
from ..models import AbstractRecommender, AbstractTrainedRecommender, AbstractTrainingFree
from ..ranking import Progress, check_cutoffs
from ..ranking.metrics import check_metric
from ..spectral import SpectrumCache
from ..training import CURVE, TrainResult, TrainSettings, initial_run, train
from .protocol import evaluate


def fitting_matrix(dataset: Dataset, refit_with_valid: bool = False) -> sp.csr_matrix:
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
    draw_curve: Callable[..., list[Path]] | None = None
    """Draws a trained run's learning curve beside its CSV in ``train_dir``
    (``draw_curve(history, stem, title=...)``, e.g. :func:`bspm_jax.figures.curves.plot_curves`); a
    :class:`ConfigError` from it (matplotlib missing) leaves the CSV and JSON curves alone."""


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
    matrix = fitting_matrix(dataset, options.refit_with_valid)
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
    result = train(model, dataset.train, settings, validate, checkpoint_dir=folder, resume=options.resume,
                            out_dir=folder, progress=options.progress, time_limit=options.time_limit)
    files = [] if folder is None else [str(folder / f"{CURVE}.{ext}") for ext in ("csv", "json")]
    if folder is not None and result.history and options.draw_curve is not None:
        try:
            files += [str(p) for p in options.draw_curve(result.history, folder / CURVE,
                                                         title=f"{model.name} on {dataset.name}")]
        except ConfigError:  # matplotlib is optional: the CSV and JSON curves are written anyway
            pass
    refit = None
    if options.refit_with_valid and not result.interrupted:  # an interrupted run has no settled epoch count yet
        t0 = time.perf_counter()
        chosen = next((t["seed"] for t in result.restarts if t["chosen"]), settings.seed)  # the start validation chose
        again = dataclasses.replace(settings, seed=chosen, restarts=1)
        refitted = refit_trained(result.model, dataset, again, result.best_epoch,
                                 None if folder is None else folder / "refit", options.resume, options.progress).model
        refit = {"epochs": result.best_epoch, "seconds": time.perf_counter() - t0,
                 "matrix": "train+valid", "interactions": int(fitting_matrix(dataset, True).nnz)}
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
        **({"restarts": [dict(t) for t in result.restarts]} if result.restarts else {}),
        **({"refit_with_valid": refit} if refit else {}),
    }
    return (result.model if refit is None else refitted), record


def refit_trained(
    model: AbstractTrainedRecommender, dataset: Dataset, settings: TrainSettings, epochs: int,
    checkpoint_dir: str | Path | None = None, resume: bool = False, progress: Progress | None = None,
    time_limit: float | None = None,
) -> TrainResult:
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
        return initial_run(model, fitting_matrix(dataset, True), settings, checkpoint_dir, resume=resume,
                                    progress=progress)
    fixed = dataclasses.replace(settings, epochs=int(epochs))
    return train(model, fitting_matrix(dataset, True), fixed, None, checkpoint_dir=checkpoint_dir,
                          resume=resume, progress=progress, time_limit=time_limit)
