"""The settings of a training run (the ``[train]`` table) and the validation callback's type."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..config import DEFAULTS
from ..errors import ConfigError
from ..ranking.metrics import check_metric
from ..models.trained import AbstractTrainedRecommender

_D = DEFAULTS["train"]
Validate = Callable[[AbstractTrainedRecommender], Mapping[str, float]]
"""Validation metrics of a model, flat ``name@K`` keys (e.g. full-ranking recall@20)."""


def _int(name: str, value: Any, low: int) -> None:
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low):
        raise ConfigError(f"train.{name} must be an integer >= {low}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Settings of a training run (the ``[train]`` table); impossible values are refused on creation.

    Adam with learning rate ``lr`` (unless the model asks for another optimiser:
    :func:`~bspm_jax.training.optimizer.run_optimizer`); ``epochs`` at most; validation after every
    ``eval_every`` epochs (and after the last); stop after ``patience`` validations
    without improvement of ``metric``; a checkpoint every ``checkpoint_every`` epochs. With
    ``restarts`` = N > 1, N starts (seeds :func:`restart_seed`) are each trained for
    ``restart_epochs`` epochs and the one with the best validation ``metric`` is trained whole:
    for models whose runs settle in basins of unequal quality depending on the start (GiffCF).
    """

    epochs: int = _D["epochs"]
    lr: float = _D["lr"]
    batch_size: int = _D["batch_size"]
    eval_every: int = _D["eval_every"]
    patience: int = _D["patience"]
    metric: str = _D["metric"]
    seed: int = _D["seed"]
    checkpoint_every: int = _D["checkpoint_every"]
    restarts: int = _D["restarts"]
    restart_epochs: int = _D["restart_epochs"]

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every", "patience", "checkpoint_every", "restarts", "restart_epochs"):
            _int(name, getattr(self, name), 1)
        _int("seed", self.seed, 0)
        lr = self.lr
        if not (isinstance(lr, numbers.Real) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"train.lr must be a finite number > 0, got {lr!r}")
        try:
            check_metric(self.metric)
        except ConfigError as err:
            raise ConfigError(f"train.{err}") from None

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> TrainSettings:
        """Settings from a ``[train]`` table (missing keys take the defaults)."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise ConfigError(f"unknown key {', '.join(unknown)} in [train]; keys: {', '.join(known)}")
        return cls(**dict(table))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def restart_seed(settings: TrainSettings, n: int) -> int:
    """The seed of start ``n`` of a run with ``restarts``: the run's own seed for n = 0, then seeds drawn from
    (seed, n) by NumPy's SeedSequence, so that runs of different seeds try different starts."""
    if n == 0:
        return settings.seed
    return int(np.random.SeedSequence([settings.seed, n]).generate_state(1)[0] >> 1)
