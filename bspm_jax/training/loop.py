"""The training loop: epochs of steps on the model's objective, validation every few epochs, early stopping, checkpoints.

Randomness comes from one seed: ``seed_key = jax.random.key(seed)``, the parameters are
initialised with ``fold_in(seed_key, 0)`` (by :func:`~bspm_jax.training.pretrain.initial_model`:
``model.init``, or pre-training runs for models that start from trained parts) and epoch
``e`` samples with ``fold_in(seed_key, e)`` (its examples on the host, its steps' keys from
``split(fold_in(that key, 1), n_steps)``). A run resumed from the checkpoint of epoch ``e``
therefore continues with exactly the batches, and so the parameters, of the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
import scipy.sparse as sp

from ..errors import ConfigError, TrainingError
from ..runtime.io import check_writable
from ..ranking.progress import Progress
from ..models.trained import AbstractTrainedRecommender
from ..data.dataset import Dataset
from ..data.interactions import Interactions, interaction_matrix
from ..data.sparse import matrix_digest
from .checkpoint import CHECKPOINT, TrainState, load_checkpoint, save_checkpoint
from .curves import CURVE, write_curves
from .objective import Objective, objective
from .optimizer import run_optimizer
from .pretrain import initial_model, starts_trained
from .sampling import epoch_key, stacked_batches
from .settings import TrainSettings, Validate, restart_seed
from .step import init_optimizer, train_step, train_steps

@dataclasses.dataclass(frozen=True)
class TrainResult:
    """The best model (by the validation metric; the last one without validation) and the run's record.

    ``history`` has one row per epoch: epoch, loss (mean over the epoch's steps), seconds
    (cumulative wall time, validation included), step_seconds (the epoch's sampling and
    steps alone) and the validation metrics where validated. ``interrupted``: the run
    stopped at its ``time_limit`` before its epochs or patience ran out (resume it).
    """

    model: AbstractTrainedRecommender
    epochs_run: int
    best_epoch: int
    best_metric: float | None
    seconds: float
    history: list[dict[str, Any]]
    stopped_early: bool
    resumed_from: int = 0
    interrupted: bool = False
    restarts: tuple[dict[str, Any], ...] = ()
    """With ``train.restarts`` > 1: each start tried (start, seed, best_epoch, best_metric, seconds, chosen); the
    run is the whole run of the chosen one's seed."""


def init_key(settings: TrainSettings) -> jax.Array:
    """The key a run's initial parameters are drawn from: fold_in(key(seed), 0)."""
    return jax.random.fold_in(jax.random.key(settings.seed), 0)


def fingerprint(model: AbstractTrainedRecommender, train: sp.csr_matrix, settings: TrainSettings) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: model, settings and data."""
    return {
        "model": {"name": model.name, **model.config()},
        "settings": settings.to_dict(),
        "shape": list(train.shape),
        "data": matrix_digest(train),
    }


def train(
    model: AbstractTrainedRecommender,
    train_matrix: Interactions | Dataset | sp.spmatrix,
    settings: TrainSettings,
    validate: Validate | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    out_dir: str | Path | None = None,
    progress: Progress | None = None,
    time_limit: float | None = None,
) -> TrainResult:
    """Train ``model`` on its objective (BPR, denoising) on ``train_matrix``; returns the best model.

    ``train_matrix``: :class:`~bspm_jax.data.Interactions` (every pair), a :class:`~bspm_jax.data.Dataset`
    (its train split) or a binary (users x items) sparse matrix.

    ``validate(model)`` is called after every ``eval_every`` epochs and after the last, and
    before the first (epoch 0, a history row without loss) when the model starts from trained
    parts (a pre-trained NeuMF), so that early stopping can keep that start;
    training stops after ``settings.patience`` validations without a higher
    ``settings.metric``. With ``checkpoint_dir`` a checkpoint is written there every
    ``checkpoint_every`` epochs and when the run ends; ``resume=True`` continues from it
    (bit-identical to an uninterrupted run). ``out_dir`` receives the learning curve
    (``learning_curve.csv`` / ``.json``) after every epoch. ``progress`` (e.g. tqdm) wraps
    the epochs and shows the running loss. ``time_limit`` (seconds): stop after the first
    epoch that ends past it, checkpointing it, with ``interrupted=True`` (resumable).
    """
    if not isinstance(settings, TrainSettings):
        raise ConfigError(f"settings must be a TrainSettings, got {type(settings).__name__}")
    if not isinstance(model, AbstractTrainedRecommender):
        raise ConfigError(f"model {getattr(model, 'name', type(model).__name__)!r} is not trained by gradient descent")
    train_matrix = interaction_matrix(train_matrix)
    if settings.restarts > 1:
        return _restarted(model, train_matrix, settings, validate, checkpoint_dir=checkpoint_dir, resume=resume,
                          out_dir=out_dir, progress=progress, time_limit=time_limit)
    train_csr = sp.csr_matrix(train_matrix, dtype=np.float32)
    plan = objective(model, train_csr)
    checkpoint_path = _checkpoint_path(checkpoint_dir, resume)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for ext in ("csv", "json"):
            check_writable(out_dir / f"{CURVE}.{ext}")
    seed_key = jax.random.key(settings.seed)
    model = initial_model(model, init_key(settings), train_csr, settings, validate,
                          None if checkpoint_path is None else checkpoint_path.parent, resume=resume,
                          progress=progress, run=train).with_train(train_csr)
    optimizer = run_optimizer(model, settings)
    state = TrainState(model, init_optimizer(optimizer, model), seed_key, best_model=model)
    stamp = fingerprint(model, train_csr, settings)
    if checkpoint_path is not None and checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path.parent, state, stamp)
    if validate is not None and not state.history and starts_trained(state.model):
        state = _validated_start(state, settings, validate)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path.parent, state, stamp)
        if out_dir is not None:
            write_curves(state.history, out_dir, {"fingerprint": stamp, "best_epoch": state.best_epoch})
    resumed_from = state.epoch
    if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise ConfigError(f"time_limit must be a number of seconds > 0, got {time_limit!r}")
    deadline = None if time_limit is None else time.monotonic() + time_limit
    interrupted = False
    epochs = range(state.epoch + 1, settings.epochs + 1) if not state.finished else range(0)
    bar = progress(epochs, desc="epochs", unit="epoch") if progress is not None else epochs
    for epoch in bar:
        state = _epoch(state, epoch, plan, optimizer, settings, validate)
        interrupted = not state.finished and deadline is not None and time.monotonic() > deadline
        if checkpoint_path is not None and (epoch % settings.checkpoint_every == 0 or state.finished or interrupted):
            save_checkpoint(checkpoint_path.parent, state, stamp)
        if out_dir is not None:
            write_curves(state.history, out_dir, {"fingerprint": stamp, "best_epoch": state.best_epoch})
        postfix = getattr(bar, "set_postfix", None)
        if postfix is not None:
            shown = {"loss": f"{state.history[-1]['loss']:.4f}"}
            if state.best_metric is not None:
                shown[f"best {settings.metric}"] = f"{state.best_metric:.4f}"
            postfix(shown)
        if state.finished or interrupted:
            break
    last = state.history[-1]["epoch"] if state.history else 0
    return TrainResult(
        model=state.best_model,
        epochs_run=last,
        best_epoch=state.best_epoch,
        best_metric=state.best_metric,
        seconds=state.seconds,
        history=[dict(r) for r in state.history],
        stopped_early=state.finished and last < settings.epochs,
        resumed_from=resumed_from,
        interrupted=interrupted,
    )


def _restarted(
    model: AbstractTrainedRecommender,
    train_matrix: sp.spmatrix,
    settings: TrainSettings,
    validate: Validate | None,
    *,
    checkpoint_dir: str | Path | None,
    resume: bool,
    out_dir: str | Path | None,
    progress: Progress | None,
    time_limit: float | None,
) -> TrainResult:
    """``settings.restarts`` starts trained for ``restart_epochs`` epochs each (checkpointed in
    ``<checkpoint_dir>/restarts/start-<n>``, so a resumed run does not train them again), then the whole run of
    the start with the best validation metric (the earliest start on a tie), as :func:`train` runs it with that
    seed; ``time_limit`` applies to the whole run."""
    if validate is None:
        raise ConfigError("train.restarts chooses a start on validation: give a validation split, or train.restarts = 1")
    trials = []
    for n in range(settings.restarts):
        seed = restart_seed(settings, n)
        probe = dataclasses.replace(settings, seed=seed, epochs=min(settings.restart_epochs, settings.epochs), restarts=1)
        folder = None if checkpoint_dir is None else Path(checkpoint_dir) / "restarts" / f"start-{n}"
        tried = train(model, train_matrix, probe, validate, checkpoint_dir=folder, resume=resume, out_dir=folder,
                      progress=progress)
        trials.append({"start": n, "seed": seed, "best_epoch": tried.best_epoch, "best_metric": tried.best_metric,
                       "seconds": tried.seconds})
    scored = [t for t in trials if t["best_metric"] is not None and math.isfinite(t["best_metric"])]
    chosen = max(scored, key=lambda t: (t["best_metric"], -t["start"])) if scored else trials[0]
    whole = dataclasses.replace(settings, seed=chosen["seed"], restarts=1)
    result = train(model, train_matrix, whole, validate, checkpoint_dir=checkpoint_dir, resume=resume,
                   out_dir=out_dir, progress=progress, time_limit=time_limit)
    return dataclasses.replace(result, restarts=tuple({**t, "chosen": t is chosen} for t in trials))


def initial_run(
    model: AbstractTrainedRecommender,
    train_matrix: sp.spmatrix,
    settings: TrainSettings,
    checkpoint_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: Progress | None = None,
) -> TrainResult:
    """A run of no epochs and no validation: the model :func:`train` starts from (e.g. a NeuMF fused from its parts,
    which train, and checkpoint in ``checkpoint_dir``, for their ``part_epochs``); a refit whose best epoch was 0."""
    t0 = time.perf_counter()
    train_csr = sp.csr_matrix(train_matrix, dtype=np.float32)
    start = initial_model(model, init_key(settings), train_csr, settings, None, checkpoint_dir, resume=resume,
                          progress=progress, run=train).with_train(train_csr)
    return TrainResult(model=start, epochs_run=0, best_epoch=0, best_metric=None, seconds=time.perf_counter() - t0,
                       history=[], stopped_early=False)


def _checkpoint_path(folder: str | Path | None, resume: bool) -> Path | None:
    """The checkpoint file in ``folder`` (created if missing); an existing one needs ``resume``."""
    if folder is None:
        if resume:
            raise ConfigError("resume=True needs a checkpoint folder")
        return None
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"checkpoint folder {folder} is a file")
    folder.mkdir(parents=True, exist_ok=True)
    path = check_writable(folder / CHECKPOINT)
    if path.exists() and not resume:
        raise ConfigError(f"{path} holds a checkpoint: resume it (resume=True) or use another folder")
    return path


def _epoch(
    state: TrainState,
    epoch: int,
    plan: Objective,
    optimizer: optax.GradientTransformation,
    settings: TrainSettings,
    validate: Validate | None,
) -> TrainState:
    """The state after epoch ``epoch``: its steps, then validation and the early-stopping record."""
    t0 = time.perf_counter()
    key = epoch_key(state.key, epoch)
    full, rest = stacked_batches(plan.sampler.epoch(key), settings.batch_size)
    n_full = full[0].shape[0]
    keys = jax.random.split(jax.random.fold_in(key, 1), n_full + 1)
    n_steps = n_full + (rest[0].shape[0] > 0)
    first = np.int32((epoch - 1) * n_steps)  # every epoch has the same number of examples, so of steps
    model, opt_state, parts = state.model, state.opt_state, []
    if n_full:
        model, opt_state, losses = train_steps(model, opt_state, optimizer, plan.loss, full, keys[:n_full], first)
        parts.append(np.asarray(losses))
    if rest[0].shape[0]:
        model, opt_state, loss = train_step(model, opt_state, optimizer, plan.loss, rest, keys[n_full], first + n_full)
        parts.append(np.asarray(loss)[None])
    losses = np.concatenate(parts)
    step_seconds = time.perf_counter() - t0
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        step = int(bad[0]) + 1
        raise TrainingError(
            f"the training loss became {losses[step - 1]} at epoch {epoch}, step {step} of {losses.size}: "
            f"lower train.lr (now {settings.lr:g}) or check the model's parameters"
        )
    row: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses, dtype=np.float64)), "step_seconds": step_seconds}
    state = dataclasses.replace(state, model=model, opt_state=opt_state, epoch=epoch,
                                finished=epoch >= settings.epochs)
    if validate is None:
        state = dataclasses.replace(state, best_model=model, best_epoch=epoch)
    elif epoch % settings.eval_every == 0 or state.finished:
        state = _validated(state, row, settings, validate)
    seconds = state.seconds + time.perf_counter() - t0
    row["seconds"] = seconds
    return dataclasses.replace(state, history=(*state.history, row), seconds=seconds)


def _validated(state: TrainState, row: dict[str, Any], settings: TrainSettings, validate: Validate) -> TrainState:
    """``state`` after validating its model: the metrics added to ``row``, the best model and patience updated."""
    metrics = {name: float(value) for name, value in dict(validate(state.model)).items()}
    if settings.metric not in metrics:
        raise ConfigError(f"validate returned no {settings.metric!r} (train.metric); it returned {', '.join(metrics) or 'nothing'}")
    row.update(metrics)
    value = metrics[settings.metric]
    if math.isfinite(value) and (state.best_metric is None or value > state.best_metric):
        return dataclasses.replace(state, best_model=state.model, best_metric=value, best_epoch=state.epoch, bad_evals=0)
    bad = state.bad_evals + 1
    return dataclasses.replace(state, bad_evals=bad, finished=state.finished or bad >= settings.patience)


def _validated_start(state: TrainState, settings: TrainSettings, validate: Validate) -> TrainState:
    """``state`` (epoch 0) after validating the initial model: a history row for epoch 0, without a loss."""
    t0 = time.perf_counter()
    row: dict[str, Any] = {"epoch": 0}
    state = _validated(state, row, settings, validate)
    row["seconds"] = state.seconds + time.perf_counter() - t0
    return dataclasses.replace(state, history=(row,), seconds=row["seconds"])
