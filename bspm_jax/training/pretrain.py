"""The parameters a training run starts from: fresh ones (``model.init``), or a model built from pre-trained parts.

:func:`initial_model` dispatches on the model's class; the loop calls it where a run
initialises its model, so a model that pre-trains (NeuMF with ``pretrain = true``) needs
no case of its own in the loop.

NeuMF with ``pretrain``: a :class:`GMF` (NeuMF's ``factors``) and an :class:`MLP` (its
``layers``), with NeuMF's ``loss``, ``sampling``, ``negatives``, ``reg`` and
``init_scale``, are each trained by :func:`bspm_jax.training.train` with the run's
``[train]`` settings and validation (so early-stopped on it, and the best epoch's
parameters kept), then fused by
:func:`bspm_jax.models.neumf.neumf_from_parts` with NeuMF's ``alpha``. Their seeds are
drawn from the run's initialisation key (``seed = bits(fold_in(key, n)) >> 1``, n = 1 for
GMF, 2 for MLP), so the whole run is a function of ``train.seed``. With a checkpoint
folder they checkpoint (and write their learning curves) in its sub-folders ``gmf/`` and
``mlp/``; a resumed run resumes or reloads them there instead of training them again.
Without validation (e.g. the refit on train + validation) they train for NeuMF's
``part_epochs``, or the run's ``train.epochs`` when it is unset; the fused model records
the epochs its parts trained for (their best epochs under validation) in ``part_epochs``.
The parts' records are not in the NeuMF run's history or seconds.

:func:`starts_trained` tells the loop which initial models are worth validating before
the first epoch (epoch 0): those built from trained parts.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import scipy.sparse as sp

from ..models.gmf import GMF
from ..models.mlp_cf import MLP
from ..models.neumf import NeuMF, neumf_from_parts
from ..models.trained import AbstractTrainedRecommender
from ..ranking.progress import Progress

from .settings import TrainSettings, Validate

PARTS = ("gmf", "mlp")
"""The sub-folders of the checkpoint folder where NeuMF's pre-training runs checkpoint."""


@functools.singledispatch
def initial_model(
    model: AbstractTrainedRecommender,
    key: jax.Array,
    train: sp.csr_matrix,
    settings: TrainSettings,
    validate: Validate | None = None,
    checkpoint_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    run: Callable[..., Any],
) -> AbstractTrainedRecommender:
    """The model a run on ``train`` starts from, its parameters drawn from ``key``: by default ``model.init(key, train)``.

    ``run`` is the training function (:func:`bspm_jax.training.train`, passed by the loop) that trains
    a model's pre-trained parts."""
    return model.init(key, train)


@functools.singledispatch
def starts_trained(model: AbstractTrainedRecommender) -> bool:
    """Whether a run of ``model`` starts from trained parameters (then validated at epoch 0): by default not."""
    return False


@starts_trained.register(NeuMF)
def _neumf_starts_trained(model: NeuMF) -> bool:
    return model.pretrain


def part_seed(key: jax.Array, n: int) -> int:
    """A train.seed for the n-th pre-training run, drawn from the run's key: bits(fold_in(key, n)) >> 1."""
    return int(jax.random.bits(jax.random.fold_in(key, n), dtype=jnp.uint32)) >> 1


@initial_model.register(NeuMF)
def _neumf(
    model: NeuMF,
    key: jax.Array,
    train: sp.csr_matrix,
    settings: TrainSettings,
    validate: Validate | None = None,
    checkpoint_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    run: Callable[..., Any],
) -> NeuMF:
    """Fresh parameters, or with ``model.pretrain`` the fusion of a GMF and an MLP trained first (see the module)."""
    if not model.pretrain:
        return model.init(key, train)
    common = {"loss": model.loss, "sampling": model.sampling, "negatives": model.negatives, "reg": model.reg,
              "init_scale": model.init_scale}
    parts = (GMF(factors=model.factors, **common), MLP(layers=model.layers, **common))
    fixed = validate is None and model.part_epochs is not None
    trained, epochs = [], []
    for n, (name, part) in enumerate(zip(PARTS, parts), start=1):
        folder = None if checkpoint_dir is None else Path(checkpoint_dir) / name
        part_settings = dataclasses.replace(settings, seed=part_seed(key, n),
                                            epochs=model.part_epochs[n - 1] if fixed else settings.epochs)
        result = run(part, train, part_settings, validate, checkpoint_dir=folder, resume=resume, out_dir=folder,
                     progress=progress)
        trained.append(result.model)
        epochs.append(result.best_epoch)
    return dataclasses.replace(neumf_from_parts(model, *trained, alpha=model.alpha), part_epochs=tuple(epochs))
