"""Pre-processing: the normalised interaction graph, its Gram filter and ideal low-pass."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float
from scipy.sparse.linalg import svds

from .errors import ConfigError
from .memory import require_bytes
from .operators import AbstractOperator, Dense, Gram, LowRank, SparseMatrix


def inv_sqrt(degree: np.ndarray) -> np.ndarray:
    """``d^-1/2`` elementwise, with 0 where the degree is 0."""
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


def check_rank(rank: int, shape: tuple[int, int]) -> None:
    """The SVD rank must satisfy 1 <= rank < min(n_users, n_items)."""
    limit = min(shape)
    if not (isinstance(rank, int | np.integer) and 1 <= rank < limit):
        raise ConfigError(f"SVD rank must be an integer in 1..{limit - 1} for a {shape[0]} x {shape[1]} matrix, got {rank!r}")


def truncated_svd(matrix: sp.spmatrix, rank: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top-``rank`` singular values (descending) and right singular vectors (rank, n).

    Deterministic: fixed start vector seed, and each vector's sign is chosen so that its
    entry of largest magnitude is positive.
    """
    check_rank(rank, matrix.shape)
    _, s, vt = svds(sp.csr_matrix(matrix, dtype=np.float64), k=rank, solver="propack", random_state=seed)
    order = np.argsort(-s, kind="stable")
    s, vt = s[order], vt[order]
    pivot = np.abs(vt).argmax(axis=1)
    signs = np.sign(vt[np.arange(rank), pivot])
    signs[signs == 0] = 1.0
    return s, vt * signs[:, None]


class ItemGraph(eqx.Module):
    """The fitted item side of BSPM: ``P~ = R~^T R~`` and the ideal low-pass filter.

    ``ideal`` is ``V^-1/2 Vbar Vbar^T V^1/2`` kept as its two low-rank factors;
    ``item_scale`` is ``V^-1/2`` (0 for items without interactions).
    """

    gram: AbstractOperator
    ideal: LowRank | None
    item_scale: Float[Array, " n_items"]
    singular_values: Float[Array, " rank"] | None


def build_graph(
    train: sp.spmatrix, rank: int | None, dense: bool = False, dtype: type = np.float32
) -> ItemGraph:
    """Normalise ``train``, take its rank-``rank`` SVD (None: no ideal filter), build operators.

    ``dense=True`` materialises ``P~`` as an (n_items, n_items) array (opt-in, small
    catalogues): it refuses with the memory it would need when that does not fit.
    """
    norm, _, item_degree = normalize(train)
    n_items = norm.shape[1]
    if dense:
        require_bytes(
            n_items * n_items * np.dtype(dtype).itemsize * 2,
            f"a dense item-item filter for {n_items:,} items",
            "use the default matrix-free operator (dense=False)",
        )
        gram: AbstractOperator = Dense(jnp.asarray((norm.T @ norm).toarray().astype(dtype)))
    else:
        gram = Gram(SparseMatrix.from_scipy(norm, dtype))
    ideal, s = None, None
    if rank is not None:
        s, vt = truncated_svd(norm, rank)
        left = inv_sqrt(item_degree)[:, None] * vt.T
        right = vt * np.sqrt(item_degree)[None, :]
        ideal = LowRank(jnp.asarray(left.astype(dtype)), jnp.asarray(right.astype(dtype)))
        s = jnp.asarray(s.astype(dtype))
    return ItemGraph(gram, ideal, jnp.asarray(inv_sqrt(item_degree).astype(dtype)), s)
