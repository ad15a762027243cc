"""Sparse-matrix helpers the whole library stands on: binary and canonical CSR, and a content digest."""

from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp


def binary_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary float32 CSR with sorted, deduplicated indices from (row, col) pairs."""
    m = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (np.asarray(rows), np.asarray(cols))),
        shape=shape,
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m


def canonical_csr(matrix: sp.spmatrix | sp.sparray, dtype: type | None = None) -> sp.csr_matrix:
    """A CSR copy of ``matrix`` (in ``dtype``) sharing none of its arrays, duplicates summed, explicit zeros
    dropped, column indices sorted: the form the native kernels need, made without touching the caller's
    matrix (``csr_matrix(m, dtype=...)`` alone shares ``m.indices``, so sorting it in place would corrupt ``m``)."""
    m = sp.csr_matrix(matrix, dtype=dtype, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    return m


def matrix_digest(matrix: sp.spmatrix) -> str:
    """SHA-256 (hex) of a sparse matrix's content: shape, nonzero pattern and values (canonical CSR, float32)."""
    m = canonical_csr(matrix, np.float32)
    h = hashlib.sha256(np.asarray(m.shape, dtype=np.int64).tobytes())
    for part in (m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()
