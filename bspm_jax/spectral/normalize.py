"""Degrees and the symmetric normalisation ``R~ = U^-1/2 R V^-1/2`` of an interaction matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def degrees(matrix: sp.spmatrix, axis: int) -> np.ndarray:
    """Interactions per user (``axis=1``) or per item (``axis=0``): the nonzeros of each row or column, float64."""
    m = sp.csr_matrix(matrix)
    return np.asarray((m != 0).sum(axis=axis), dtype=np.float64).ravel()


def item_degrees(matrix: sp.spmatrix) -> np.ndarray:
    """Train interactions of every item, float64 (n_items,)."""
    return degrees(matrix, axis=0)


def degree_power(degree: np.ndarray, power: float) -> np.ndarray:
    """``d^power`` elementwise (float64), with 0 where the degree is 0."""
    out = np.zeros(degree.shape, dtype=np.float64)
    nz = degree > 0
    out[nz] = degree[nz] ** power
    return out


def inv_sqrt(degree: np.ndarray) -> np.ndarray:
    """``d^-1/2`` elementwise, with 0 where the degree is 0 (as ``1 / sqrt(d)``)."""
    out = np.zeros(degree.shape, dtype=np.float64)
    nz = degree > 0
    out[nz] = 1.0 / np.sqrt(degree[nz])
    return out


def normalize(train: sp.spmatrix) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """``R~ = U^-1/2 R V^-1/2`` (float64) with the user and item degrees of ``R``."""
    r = sp.csr_matrix(train, dtype=np.float64)
    user_degree = np.asarray(r.sum(axis=1)).ravel()
    item_degree = np.asarray(r.sum(axis=0)).ravel()
    norm = sp.diags(inv_sqrt(user_degree)) @ r @ sp.diags(inv_sqrt(item_degree))
    return sp.csr_matrix(norm), user_degree, item_degree
