"""A truncated decomposition of the normalised interaction graph, as kept in memory and on disk."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Spectrum:
    """Top-``rank`` singular values ``s`` and right vectors ``Vbar`` of ``R~``, with the degrees of ``R``.

    The rows of ``vectors`` are the top eigenvectors of ``P~ = R~^T R~`` (eigenvalues ``s^2``):
    BSPM's ideal low-pass filter and spectral models work in this basis.
    """

    values: np.ndarray
    """(rank,) float64, descending."""
    vectors: np.ndarray
    """(rank, n_items) float64; each row's entry of largest magnitude is positive."""
    user_degree: np.ndarray
    """(n_users,) float64."""
    item_degree: np.ndarray
    """(n_items,) float64."""

    @property
    def rank(self) -> int:
        return int(self.values.shape[0])
