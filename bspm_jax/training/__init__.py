"""Training of models fitted by gradient descent (MF-BPR, S-Diff): sampling, losses, steps, loop, checkpoints, curves."""

from .checkpoint import CHECKPOINT, TrainState, checkpoint_info, load_checkpoint, save_checkpoint
from .curves import CURVE, write_curves
from .loop import TrainResult, TrainSettings, Validate, fingerprint, initial_run, train
from .losses import AbstractLoss, BPRLoss, DenoisingLoss, GraphDiffusionLoss, bpr_loss, padded_items
from .objective import Objective, objective
from .sampling import (PAIR_SAMPLERS, AbstractPairSampler, AbstractSampler, PairSampler, UserPairSampler, UserSampler,
                       epoch_key, stacked_batches)
from .step import init_optimizer, train_step, train_steps, trainable

__all__ = [
    "AbstractLoss",
    "AbstractSampler",
    "BPRLoss",
    "DenoisingLoss",
    "GraphDiffusionLoss",
    "Objective",
    "UserSampler",
    "objective",
    "padded_items",
    "trainable",
    "CURVE",
    "CHECKPOINT",
    "PairSampler",
    "PAIR_SAMPLERS",
    "AbstractPairSampler",
    "UserPairSampler",
    "TrainResult",
    "TrainSettings",
    "TrainState",
    "Validate",
    "bpr_loss",
    "checkpoint_info",
    "epoch_key",
    "fingerprint",
    "init_optimizer",
    "initial_run",
    "load_checkpoint",
    "save_checkpoint",
    "stacked_batches",
    "train",
    "train_step",
    "train_steps",
    "write_curves",
]
