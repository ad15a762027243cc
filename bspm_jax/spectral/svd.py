"""Truncated SVD of a sparse matrix: dense LAPACK when small, else block Krylov, PROPACK or ARPACK by free memory."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, svds

from ..runtime import memory
from ..errors import ConfigError, ResourceError
from ..runtime.memory import human_bytes
from .block_krylov import basis_bytes, block_krylov_svd, residuals


def check_rank(rank: int, shape: tuple[int, int], setting: str = "rank") -> None:
    """The SVD rank must satisfy 1 <= rank < min(n_users, n_items); the error names the model's ``setting``."""
    limit = min(shape)
    if not (isinstance(rank, int | np.integer) and not isinstance(rank, bool) and 1 <= rank < limit):
        largest = f"set {setting} to at most {limit - 1}" if limit > 1 else "this data is too small for an SVD"
        raise ConfigError(f"{setting} = {rank!r} does not fit this data: an SVD rank must be an integer in "
                          f"1..{limit - 1} for a {shape[0]:,} x {shape[1]:,} matrix (below its smaller side); {largest} "
                          f"(e.g. --set {setting}={max(limit - 1, 1)})")


DENSE_SVD_LIMIT = 2_000
"""Matrices whose smaller side is at most this use a dense LAPACK SVD (exact, fast)."""


SOLVERS = ("auto", "block", "propack", "arpack")
"""The ``svd_solver`` choices: ``auto`` is the dense SVD for small matrices, else the block
Krylov solver with PROPACK and then ARPACK as fallbacks; the others name one solver."""

DEFAULT_TOL = 1e-4
"""Default stopping rule: every triplet has ||A v - s u|| <= tol * s_1."""


def check_svd_settings(solver: object, tol: object) -> None:
    """A known ``svd_solver`` and a tolerance in (0, 1)."""
    if solver not in SOLVERS:
        raise ConfigError(f"svd_solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    if isinstance(tol, bool) or not isinstance(tol, int | float | np.floating) or not 0.0 < tol < 1.0:
        raise ConfigError(f"svd_tol must be a number in (0, 1) (the triplets' residual relative to s_1), got {tol!r}")


def truncated_svd(
    matrix: sp.spmatrix, rank: int, seed: int = 0, solver: str = "auto", tol: float = DEFAULT_TOL
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``rank`` singular values (descending) and right singular vectors (rank, n).

    ``solver`` (:data:`SOLVERS`): small matrices use a dense SVD under ``auto``; large ones
    the iterative solvers that fit in the available memory, in order, until one returns
    triplets that meet the stopping rule ``||A v - s u|| <= tol * s_1`` (u = A v / s).
    Deterministic: fixed start vectors, and each vector's sign is chosen so that its entry
    of largest magnitude is positive.
    """
    check_rank(rank, matrix.shape)
    check_svd_settings(solver, tol)
    m = sp.csr_matrix(matrix, dtype=np.float64)
    if solver == "auto" and min(m.shape) <= DENSE_SVD_LIMIT:
        _, s, vt = np.linalg.svd(m.toarray(), full_matrices=False)
        s, vt = s[:rank], vt[:rank]
    else:
        s, vt = _sparse_svd(m, rank, seed, solver, tol)
    pivot = np.abs(vt).argmax(axis=1)
    signs = np.sign(vt[np.arange(rank), pivot])
    signs[signs == 0] = 1.0
    return s, vt * signs[:, None]


Triplets = tuple[np.ndarray, np.ndarray, float]
"""Singular values, right vectors (rank, n) and the largest residual ||A v - s u|| / s_1."""


class SvdAttempt(NamedTuple):
    """One way to take the iterative SVD: a name, the bytes of its float64 Krylov basis, the call."""

    name: str
    bytes: int
    run: Callable[[sp.csr_matrix, int, int], Triplets]


Solve = Callable[[sp.csr_matrix, int, int], tuple[np.ndarray, np.ndarray]]
"""A solver: (matrix, rank, seed) -> singular values and right vectors."""


def _checked(solve: Solve) -> Callable[[sp.csr_matrix, int, int], Triplets]:
    """A float64 solver's triplets with their residuals (float64 SciPy products)."""

    def run(m: sp.csr_matrix, rank: int, seed: int) -> Triplets:
        s, vt = solve(m, rank, seed)
        order = np.argsort(-s, kind="stable")
        s, vt = s[order], vt[order]
        return s, vt, float(residuals(m, s, vt).max(initial=0.0))

    return run


def _propack(steps: int) -> Solve:
    """PROPACK's Lanczos bidiagonalisation with a basis of ``steps`` vectors on both sides."""

    def run(m: sp.csr_matrix, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        _, s, vt = svds(m, k=rank, solver="propack", random_state=seed, return_singular_vectors="vh", maxiter=steps)
        return s, vt

    return run


def _block(tol: float) -> Callable[[sp.csr_matrix, int, int], Triplets]:
    """The block Krylov solver (:mod:`.block_krylov`), its residual from one explicit product."""

    def run(m: sp.csr_matrix, rank: int, seed: int) -> Triplets:
        s, vt, info = block_krylov_svd(m, rank, tol=tol, seed=seed)
        return s, vt, info.max_residual

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


def svd_attempts(shape: tuple[int, int], rank: int, solver: str = "auto", tol: float = DEFAULT_TOL) -> list[SvdAttempt]:
    """The iterative SVD's attempts for ``solver``, in order, with the memory of each one's basis.

    The block Krylov solver keeps a basis of about ``2 * (rank + 128) + 64`` vectors of the
    smaller side, counted as float64 (:func:`.block_krylov.basis_bytes`; float32 at
    tolerances of 1e-5 and above takes half). PROPACK (6 * rank steps, then
    its default 10 * rank) keeps float64 bases on both sides: ``steps * (m + n) * 8``
    bytes. ARPACK on the smaller side's Gram keeps ``2 * rank + 1`` vectors of that side
    (and the rank right vectors), so it fits where PROPACK cannot when one side is long
    (10^6 users). ``auto``: all of them, in that order.
    """
    m, n = shape
    side = min(m, n)
    # PROPACK allocates its basis for `maxiter` steps; Gowalla's rank-448 SVD converges in
    # 1,669 steps, so 6 * rank first saves the larger allocation.
    gram = (min(2 * rank + 1, side) * side + rank * n) * 8
    try:
        block = [SvdAttempt("block Krylov", basis_bytes(rank, side) + rank * n * 8, _block(tol))]
    except ConfigError:  # a rank too close to the matrix's order for a block basis
        if solver == "block":
            raise
        block = []
    propack = [
        SvdAttempt(f"PROPACK ({6 * rank} steps)", 6 * rank * (m + n) * 8, _checked(_propack(6 * rank))),
        SvdAttempt(f"PROPACK ({10 * rank} steps)", 10 * rank * (m + n) * 8, _checked(_propack(10 * rank))),
    ]
    arpack = [SvdAttempt("ARPACK on the Gram matrix", gram, _checked(_gram_lanczos))]
    return {"auto": block + propack + arpack, "block": block, "propack": propack, "arpack": arpack}[solver]


def _sparse_svd(m: sp.csr_matrix, rank: int, seed: int, solver: str, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Iterative SVD: the attempts that fit in the available memory, in order, until one meets the stopping rule."""
    attempts = svd_attempts(m.shape, rank, solver, tol)
    free = memory.available_bytes()
    fitting = [a for a in attempts if a.bytes <= free]
    if not fitting:
        least = min(attempts, key=lambda a: a.bytes)
        raise ResourceError(
            f"the rank-{rank} SVD of the {m.shape[0]:,} x {m.shape[1]:,} matrix needs {human_bytes(least.bytes)} "
            f"({least.name}) but only {human_bytes(free)} is available; use a smaller rank, or beta=0 with a "
            f"heat blur (no SVD)"
        )
    best = np.inf
    for attempt in fitting:
        try:
            s, vt, residual = attempt.run(m, rank, seed)
        except (np.linalg.LinAlgError, ArpackNoConvergence):
            continue
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(vt))):
            continue
        if residual <= tol:
            return s, vt
        best = min(best, residual)
    outcome = ("did not converge" if best == np.inf
               else f"did not meet its stopping rule (residual {best:.1e} > svd_tol {tol:.1e})")
    raise ConfigError(
        f"the rank-{rank} SVD of the {m.shape[0]} x {m.shape[1]} matrix {outcome} with svd_solver={solver!r}; "
        f"try svd_solver='auto', a larger svd_tol or a smaller rank"
    )
