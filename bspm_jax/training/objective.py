"""What each kind of trained model is trained on: its epoch sampler and its loss, dispatched on the model's class."""

from __future__ import annotations

import functools
from typing import NamedTuple

import scipy.sparse as sp

from ..errors import ConfigError
from ..models.s_diff import SDiff
from ..models.trained import AbstractPairwise, AbstractTrainedRecommender
from .losses import AbstractLoss, BPRLoss, DenoisingLoss
from .sampling import AbstractSampler, PairSampler, UserSampler


class Objective(NamedTuple):
    """An epoch's examples (host side) and the loss of a batch of them (device side)."""

    sampler: AbstractSampler
    loss: AbstractLoss


@functools.singledispatch
def objective(model: AbstractTrainedRecommender, train: sp.csr_matrix) -> Objective:
    """The :class:`Objective` of ``model`` on the binary ``train`` matrix."""
    raise ConfigError(f"model {getattr(model, 'name', type(model).__name__)!r} has no training objective")


@objective.register(AbstractPairwise)
def _pairwise(model: AbstractPairwise, train: sp.csr_matrix) -> Objective:
    return Objective(PairSampler.from_matrix(train), BPRLoss())


@objective.register(SDiff)
def _spectral_diffusion(model: SDiff, train: sp.csr_matrix) -> Objective:
    return Objective(UserSampler.from_matrix(train), DenoisingLoss.from_matrix(train))
