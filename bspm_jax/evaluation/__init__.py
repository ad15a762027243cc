"""Evaluation: a model scored under a named protocol (:mod:`.protocol`); the metrics are in :mod:`bspm_jax.ranking.metrics`."""

from .protocol import HISTORIES, PROTOCOLS, SPLITS, Evaluation, evaluate, protocol_matrices, protocol_of

__all__ = ["HISTORIES", "PROTOCOLS", "SPLITS", "Evaluation", "evaluate", "protocol_matrices", "protocol_of"]
