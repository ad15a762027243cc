"""Truncated SVD of a sparse matrix: dense LAPACK when small, PROPACK or ARPACK by free memory."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, svds

from .. import memory
from ..errors import ConfigError, ResourceError
from ..memory import human_bytes


def check_rank(rank: int, shape: tuple[int, int]) -> None:
    """The SVD rank must satisfy 1 <= rank < min(n_users, n_items)."""
    limit = min(shape)
    if not (isinstance(rank, int | np.integer) and 1 <= rank < limit):
        raise ConfigError(f"SVD rank must be an integer in 1..{limit - 1} for a {shape[0]} x {shape[1]} matrix, got {rank!r}")


DENSE_SVD_LIMIT = 2_000
"""Matrices whose smaller side is at most this use a dense LAPACK SVD (exact, fast)."""


def truncated_svd(matrix: sp.spmatrix, rank: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top-``rank`` singular values (descending) and right singular vectors (rank, n).

    Small matrices use a dense SVD; large ones PROPACK (right vectors only), checked by
    the residuals ``||M^T M v - s^2 v||`` and redone with ARPACK when PROPACK did not
    converge. Deterministic: fixed start vector seed, and each vector's sign is chosen so
    that its entry of largest magnitude is positive.
    """
    check_rank(rank, matrix.shape)
    m = sp.csr_matrix(matrix, dtype=np.float64)
    if min(m.shape) <= DENSE_SVD_LIMIT:
        _, s, vt = np.linalg.svd(m.toarray(), full_matrices=False)
        s, vt = s[:rank], vt[:rank]
    else:
        s, vt = _sparse_svd(m, rank, seed)
    pivot = np.abs(vt).argmax(axis=1)
    signs = np.sign(vt[np.arange(rank), pivot])
    signs[signs == 0] = 1.0
    return s, vt * signs[:, None]


class SvdAttempt(NamedTuple):
    """One way to take the iterative SVD: a name, the bytes of its float64 Krylov basis, the call."""

    name: str
    bytes: int
    run: Callable[[sp.csr_matrix, int, int], tuple[np.ndarray, np.ndarray]]


def _propack(steps: int) -> Callable[[sp.csr_matrix, int, int], tuple[np.ndarray, np.ndarray]]:
    """PROPACK's Lanczos bidiagonalisation with a basis of ``steps`` vectors on both sides."""

    def run(m: sp.csr_matrix, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        _, s, vt = svds(m, k=rank, solver="propack", random_state=seed, return_singular_vectors="vh", maxiter=steps)
        return s, vt

    return run


def _gram_lanczos(m: sp.csr_matrix, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ARPACK's Lanczos on the Gram matrix of the smaller side (a basis on that side only).

    Tall M: eigenpairs of M^T M are (s^2, v). Wide M: eigenpairs of M M^T are (s^2, u),
    and v = M^T u / s.
    """
    tall = m.shape[0] >= m.shape[1]
    x = m if tall else sp.csr_matrix(m.T)
    xt = sp.csr_matrix(x.T)
    side = x.shape[1]
    gram = LinearOperator((side, side), matvec=lambda v: xt @ (x @ v), matmat=lambda v: xt @ (x @ v), dtype=np.float64)
    start = np.random.default_rng(seed).standard_normal(side)
    eigenvalues, vectors = eigsh(gram, k=rank, which="LA", v0=start)
    s = np.sqrt(np.clip(eigenvalues, 0.0, None))
    if tall:
        return s, vectors.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return s, (m.T @ vectors / s).T


def svd_attempts(shape: tuple[int, int], rank: int) -> list[SvdAttempt]:
    """The iterative SVD's attempts in order, with the memory of each one's Krylov basis.

    PROPACK (fastest; 6 * rank steps, then its default 10 * rank) keeps float64 bases on
    both sides: ``steps * (m + n) * 8`` bytes. ARPACK on the smaller side's Gram keeps
    ``2 * rank + 1`` vectors of that side (and the rank right vectors), so it fits where
    PROPACK cannot when one side is long (10^6 users).
    """
    m, n = shape
    # PROPACK allocates its basis for `maxiter` steps; Gowalla's rank-448 SVD converges in
    # 1,669 steps, so 6 * rank first saves the larger allocation.
    gram = (min(2 * rank + 1, min(m, n)) * min(m, n) + rank * n) * 8
    return [
        SvdAttempt(f"PROPACK ({6 * rank} steps)", 6 * rank * (m + n) * 8, _propack(6 * rank)),
        SvdAttempt(f"PROPACK ({10 * rank} steps)", 10 * rank * (m + n) * 8, _propack(10 * rank)),
        SvdAttempt("ARPACK on the Gram matrix", gram, _gram_lanczos),
    ]


def _sparse_svd(m: sp.csr_matrix, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Iterative SVD: the attempts that fit in the available memory, in order, until one has small residuals."""
    scale = max(float(abs(m).max()), 1.0)
    attempts = svd_attempts(m.shape, rank)
    free = memory.available_bytes()
    fitting = [a for a in attempts if a.bytes <= free]
    if not fitting:
        least = min(attempts, key=lambda a: a.bytes)
        raise ResourceError(
            f"the rank-{rank} SVD of the {m.shape[0]:,} x {m.shape[1]:,} matrix needs {human_bytes(least.bytes)} "
            f"({least.name}) but only {human_bytes(free)} is available; use a smaller rank, or beta=0 with a "
            f"heat blur (no SVD)"
        )
    for attempt in fitting:
        try:
            s, vt = attempt.run(m, rank, seed)
        except (np.linalg.LinAlgError, ArpackNoConvergence):
            continue
        order = np.argsort(-s, kind="stable")
        s, vt = s[order], vt[order]
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(vt))):
            continue
        residual = np.linalg.norm(m.T @ (m @ vt.T) - vt.T * s**2, axis=0).max()
        if residual <= 1e-6 * (scale * max(1.0, s[0])) ** 2:
            return s, vt
    raise ConfigError(
        f"the rank-{rank} SVD of the {m.shape[0]} x {m.shape[1]} matrix did not converge; try a smaller rank"
    )
