"""What each kind of trained model is trained on: its epoch sampler and its loss, dispatched on the model's class."""

from __future__ import annotations

import functools
from typing import NamedTuple

import scipy.sparse as sp

from ..errors import ConfigError
from ..models.autoencoder import AbstractAutoencoder
from ..models.giffcf import GiffCF
from ..models.ncf import AbstractNCF
from ..models.s_diff import SDiff
from ..models.trained import AbstractBPR, AbstractPairwise, AbstractTrainedRecommender
from .losses import AbstractLoss, BCELoss, BPRLoss, DenoisingLoss, GraphDiffusionLoss, MultinomialLoss
from .sampling import PAIR_SAMPLERS, AbstractSampler, NegativeSampler, UserSampler


class Objective(NamedTuple):
    """An epoch's examples (host side) and the loss of a batch of them (device side)."""

    sampler: AbstractSampler
    loss: AbstractLoss


@functools.singledispatch
def objective(model: AbstractTrainedRecommender, train: sp.csr_matrix) -> Objective:
    """The :class:`Objective` of ``model`` on the binary ``train`` matrix."""
    raise ConfigError(f"model {getattr(model, 'name', type(model).__name__)!r} has no training objective")


@objective.register(AbstractBPR)
def _bpr(model: AbstractPairwise, train: sp.csr_matrix) -> Objective:
    return Objective(PAIR_SAMPLERS[model.sampling].from_matrix(train), BPRLoss())


def _bce(model: AbstractNCF, train: sp.csr_matrix) -> Objective:
    return Objective(NegativeSampler.from_matrix(train, model.negatives), BCELoss())


NCF_OBJECTIVES = {"bce": _bce, "bpr": _bpr}
"""The objective of each ``loss`` setting of a neural CF model (:data:`bspm_jax.models.ncf.NCF_LOSSES`)."""


@objective.register(AbstractNCF)
def _neural_cf(model: AbstractNCF, train: sp.csr_matrix) -> Objective:
    return NCF_OBJECTIVES[model.loss](model, train)


@objective.register(SDiff)
def _spectral_diffusion(model: SDiff, train: sp.csr_matrix) -> Objective:
    return Objective(UserSampler.from_matrix(train), DenoisingLoss.from_matrix(train))


@objective.register(GiffCF)
def _graph_signal_diffusion(model: GiffCF, train: sp.csr_matrix) -> Objective:
    return Objective(UserSampler.from_matrix(train), GraphDiffusionLoss.from_matrix(train))


@objective.register(AbstractAutoencoder)
def _history_autoencoder(model: AbstractAutoencoder, train: sp.csr_matrix) -> Objective:
    return Objective(UserSampler.from_matrix(train), MultinomialLoss.from_matrix(train))
