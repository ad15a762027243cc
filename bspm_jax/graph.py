"""Pre-processing: the normalised interaction graph, its Gram filter and ideal low-pass."""

from __future__ import annotations

from typing import Callable, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, svds

from .errors import ConfigError, ResourceError
from . import memory
from .memory import human_bytes, require_bytes
from . import native as native_kernel
from .operators import AbstractLayout, AbstractOperator, ChunkLayout, Dense, Gram, LowRank, RowLayout, SparseMatrix, kernel_for


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


class ItemGraph(eqx.Module):
    """The fitted item side of BSPM: ``P~ = R~^T R~`` and the ideal low-pass filter.

    ``ideal`` is ``V^-1/2 Vbar Vbar^T V^1/2`` kept as its two low-rank factors;
    ``item_scale`` is ``V^-1/2`` (0 for items without interactions).
    """

    gram: AbstractOperator
    ideal: LowRank | None
    item_scale: Float[Array, " n_items"]
    singular_values: Float[Array, " rank"] | None

    def layout(self, batch: int) -> AbstractLayout:
        """Storage of a batch while the filters run: column chunks when the native kernel is used."""
        if isinstance(self.gram, Gram) and self.gram.factor.native:
            return ChunkLayout(native_kernel.chunk_width(batch))
        return RowLayout()


def build_graph(
    train: sp.spmatrix,
    rank: int | None,
    dense: bool = False,
    dtype: type = np.float32,
    kernel: str = "auto",
) -> ItemGraph:
    """Normalise ``train``, take its rank-``rank`` SVD (None: no ideal filter), build operators.

    ``dense=True`` materialises ``P~`` as an (n_items, n_items) array (opt-in, small
    catalogues): it refuses with the memory it would need when that does not fit.
    ``kernel`` picks the products: a path of the compiled CPU kernel (``"avx512"``,
    ``"avx2"``, ``"baseline"``), pure JAX (``"jax"``), or ``"auto"``: ``$BSPM_KERNEL``, else
    the fastest available path; see :mod:`bspm_jax.native`.
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
        gram = Gram(SparseMatrix.from_scipy(norm, dtype, kernel=kernel))
    ideal, s = None, None
    if rank is not None:
        s, vt = truncated_svd(norm, rank)
        left = inv_sqrt(item_degree)[:, None] * vt.T
        right = vt * np.sqrt(item_degree)[None, :]
        ideal = LowRank(jnp.asarray(left.astype(dtype)), jnp.asarray(right.astype(dtype)), kernel_for(dtype, kernel))
        s = jnp.asarray(s.astype(dtype))
    return ItemGraph(gram, ideal, jnp.asarray(inv_sqrt(item_degree).astype(dtype)), s)
