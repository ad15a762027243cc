"""Truncated SVD by a thick-restarted block Lanczos process (block Krylov-Schur) on the smaller Gram matrix.

For ``A`` (m, n) with m <= n (otherwise ``A^T``), the top eigenpairs (s^2, u) of
``G = A A^T`` give the triplets (s, u, v = A^T u / s). A block of ``block`` vectors is
expanded by ``G`` into an orthonormal basis Q (rows of a (dim, m) array) with full
reorthogonalisation (classical Gram-Schmidt, twice, as matrix products: BLAS-3), and
the projected matrix H = Q G Q^T is kept as it is built. When the basis holds ``dim``
vectors, the Ritz pairs of H are the approximations; the residual of each is read off
the Krylov relation, ``G Q^T = Q^T H + Q_next^T B E^T``:

    ||G u_i - theta_i u_i|| = ||B y_i[last block]||,

and the process restarts from the ``rank + extra`` best Ritz vectors and the next block
(Krylov-Schur: the restarted H is diagonal plus the coupling to that block), until every
wanted pair satisfies the stopping rule on the singular triplet,

    ||A v_i - s_i u_i|| = ||G u_i - s_i^2 u_i|| / s_i <= tol * s_1.

The rule is then checked on the returned triplets with explicit products (``residuals``).
Everything but the products runs in float64 NumPy; the products are a callable on row
blocks, so float32 kernels (the native CPU kernel, jnp on an accelerator) or float64
SciPy can serve.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.linalg import solve_triangular

from ..errors import ConfigError
from .gram import AbstractProducts, DeviceProducts, ScipyProducts

@dataclasses.dataclass(frozen=True)
class BlockKrylovInfo:
    """How the block Krylov SVD went."""

    restarts: int
    """Rayleigh-Ritz steps taken (the first included)."""
    products: int
    """Vectors multiplied by the Gram matrix."""
    max_residual: float
    """max_i ||A v_i - s_i u_i|| / s_1 over the returned triplets (from the Krylov relation)."""
    converged: bool


@dataclasses.dataclass(frozen=True)
class BasisShape:
    """The solver's sizes: vectors per block, guard vectors beyond the rank, vectors kept at a
    restart (rank + extra) and the basis size at which it restarts."""

    block: int
    extra: int
    keep: int
    dim: int

    @classmethod
    def plan(cls, rank: int, side: int, block: int | None = None, extra: int | None = None,
             dim: int | None = None) -> BasisShape:
        """Blocks of 64 (fewer on small sides), as many guard vectors, restarts at twice the kept vectors
        (at least four blocks more), within the order of the matrix."""
        if block is None:
            block = max(1, min(64, (side - rank) // 4))
        extra = block if extra is None else extra
        keep = rank + extra
        dim = min(max(max(2 * keep, keep + 4 * block) if dim is None else dim, keep + block), side - block)
        if block < 1 or extra < 0 or dim < keep + block:
            raise ConfigError(f"a block Krylov basis for rank {rank} (+{extra} guard vectors, blocks of {block}) needs "
                              f"order >= {keep + 2 * block}, the Gram matrix has {side}: use the dense SVD")
        return cls(block, extra, keep, dim)

    def bytes(self, side: int) -> int:
        """Peak float64 memory for a Gram matrix of order ``side``: basis, three copies of H, product blocks, restart."""
        return 8 * ((self.dim + self.block) * side + 3 * (self.dim + self.block) ** 2 + 4 * self.block * side
                    + self.keep * side)


def basis_bytes(rank: int, side: int) -> int:
    """Peak float64 memory of the default solver for rank ``rank`` on a Gram matrix of order ``side``."""
    return BasisShape.plan(rank, max(side, rank + 4)).bytes(side)


def _project(basis: np.ndarray, w: np.ndarray) -> np.ndarray:
    """w basis^T, computed as (basis w^T)^T: OpenBLAS is several times faster with the long operand first."""
    return (basis @ w.T).T


def _cholesky_qr2(x: np.ndarray) -> np.ndarray:
    """Orthonormal rows spanning the well-conditioned block ``x``: Cholesky QR, twice (BLAS-3; OpenBLAS's
    Householder QR of a long block is far slower)."""
    for _ in range(2):
        chol = np.linalg.cholesky(x @ x.T)
        x = solve_triangular(chol, np.eye(chol.shape[0]), lower=True) @ x
    return x


def _orthonormal_block(w: np.ndarray, q: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """An orthonormal basis (rows) of the block ``w`` (already orthogonal to ``q``'s rows), orthogonal to ``q``.

    Cholesky QR when ``w`` is well conditioned; otherwise Householder QR, with the
    directions where ``w`` has (numerically) no weight filled by random vectors. An
    ill-conditioned block is orthogonalised against ``q`` once more afterwards: normalising
    its weak directions magnifies what rounding left of them along ``q``.
    """
    low, high = np.linalg.eigvalsh(w @ w.T)[[0, -1]]
    if low > 1e-12 * high and low > (1e-10 * scale) ** 2:
        out = _cholesky_qr2(w)
    else:
        qt, r = np.linalg.qr(w.T)
        out = qt.T.copy()
        weak = np.abs(np.diag(r)) <= 1e-10 * max(scale, 1e-300)
        if weak.any():
            z = rng.standard_normal((int(weak.sum()), w.shape[1]))
            good = out[~weak]
            for _ in range(2):
                z -= _project(q, z) @ q
                z -= _project(good, z) @ good
            out[weak] = np.linalg.qr(z.T)[0].T
    if not low > 1e-4 * high:
        for _ in range(2):
            out -= _project(q, out) @ q
        out = _cholesky_qr2(out)
    return out


def block_krylov_eigh(
    product: Callable[[np.ndarray], np.ndarray],
    side: int,
    rank: int,
    *,
    tol: float,
    block: int | None = None,
    extra: int | None = None,
    dim: int | None = None,
    seed: int = 0,
    max_restarts: int = 100,
) -> tuple[np.ndarray, np.ndarray, BlockKrylovInfo]:
    """Top-``rank`` eigenpairs (theta descending, vectors as rows) of the PSD operator ``product`` of order ``side``.

    Stops when ||G u_i - theta_i u_i|| / sqrt(theta_i) <= tol * sqrt(theta_1) for every
    wanted pair (the singular-triplet residual of the Gram matrix of ``A``).
    """
    shape = BasisShape.plan(rank, side, block, extra, dim)
    block, keep, dim = shape.block, shape.keep, shape.dim
    rng = np.random.default_rng(seed)
    q = np.empty((dim + block, side))
    h = np.zeros((dim + block, dim + block))
    start = rng.standard_normal((block, side))
    q[:block] = _orthonormal_block(start, q[:0], rng, 1.0)
    filled, products, restarts = block, 0, 0
    coupled = 0  # the first basis vector coupled to the block being expanded
    scale = 0.0
    while True:
        while filled <= dim:
            last = slice(filled - block, filled)
            w = product(q[last])
            products += block
            scale = max(scale, float(np.abs(w).max(initial=0.0)))
            # The three-term recurrence (the previous block, or every kept Ritz vector after a
            # restart), then full reorthogonalisation passes against the whole basis: one,
            # unless it cancels much of a vector (then its rounding is repaired by another).
            local = q[coupled:filled]
            c = np.zeros((block, filled))
            c[:, coupled:] = _project(local, w)
            w -= c[:, coupled:] @ local
            basis = q[:filled]
            before = np.linalg.norm(w, axis=1)
            for _ in range(3):  # repeated while a pass cancels much of a vector (Daniel-Gragg-Kaufman-Stewart)
                c2 = _project(basis, w)
                w -= c2 @ basis
                c += c2
                after = np.linalg.norm(w, axis=1)
                if np.all(after >= 0.7 * before):
                    break
                before = after
            h[last, :filled] = c
            h[:filled, last] = c.T
            nxt = _orthonormal_block(w, basis, rng, scale)
            coupling = _project(nxt, w)  # W = B Q_next: the (block, block) coupling of this block to the next
            q[filled:filled + block] = nxt
            h[filled:filled + block, last] = coupling.T
            h[last, filled:filled + block] = coupling
            coupled = last.start
            filled += block
        p = filled - block
        theta, y = np.linalg.eigh(h[:p, :p])
        theta, y = theta[::-1], y[:, ::-1]
        restarts += 1
        coupling = h[p:p + block, :p]  # rows: the next block; only its last-block columns are nonzero
        residual = np.linalg.norm(coupling @ y[:, :rank], axis=0)
        s = np.sqrt(np.clip(theta[:rank], 0.0, None))
        s1 = s[0] if s[0] > 0 else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            triplet = np.where(s > 0, residual / np.where(s > 0, s, 1.0), residual) / s1
        done = bool(np.all(triplet <= tol))
        if done or restarts >= max_restarts:
            vectors = y[:, :rank].T @ q[:p]
            info = BlockKrylovInfo(restarts, products, float(triplet.max(initial=0.0)), done)
            return theta[:rank], vectors, info
        q[:keep] = y[:, :keep].T @ q[:p]
        q[keep:keep + block] = q[p:p + block]
        restarted = np.zeros_like(h)
        restarted[np.arange(keep), np.arange(keep)] = theta[:keep]
        tail = coupling @ y[:, :keep]  # (block, keep)
        restarted[keep:keep + block, :keep] = tail
        restarted[:keep, keep:keep + block] = tail.T
        h = restarted
        filled = keep + block
        coupled = 0


FLOAT32_TOL = 1e-5
"""The smallest tolerance certified with float32 products; tighter ones use float64 SciPy products."""


def block_krylov_svd(
    matrix: sp.spmatrix,
    rank: int,
    *,
    tol: float = FLOAT32_TOL,
    block: int | None = None,
    extra: int | None = None,
    dim: int | None = None,
    seed: int = 0,
    max_restarts: int = 100,
    products: Callable[[sp.csr_matrix], AbstractProducts] | None = None,
) -> tuple[np.ndarray, np.ndarray, BlockKrylovInfo]:
    """Top-``rank`` singular values (descending) and right singular vectors (rank, n) of ``matrix``.

    ``products(A)`` gives the products with the smaller side's ``A`` (m <= n); default:
    float32 on the device (:class:`DeviceProducts`) for ``tol >= FLOAT32_TOL``, float64
    SciPy below. ``info.max_residual`` is the stopping rule's value recomputed with one
    explicit product on the returned vectors. Not converged after ``max_restarts``
    restarts: the best approximation, with ``info.converged`` False.
    """
    a = sp.csr_matrix(matrix, dtype=np.float64)
    wide = a.shape[0] <= a.shape[1]
    small = a if wide else sp.csr_matrix(a.T)
    ops = (products or (DeviceProducts if tol >= FLOAT32_TOL else ScipyProducts))(small)
    # The process stops at half the tolerance, so that the explicit check (which also covers
    # the other side of each triplet and the rounding of the products) holds.
    theta, vectors, info = block_krylov_eigh(ops.gram, small.shape[0], rank, tol=tol / 2, block=block, extra=extra,
                                             dim=dim, seed=seed, max_restarts=max_restarts)
    s = np.sqrt(np.clip(theta, 0.0, None))
    safe = np.where(s > 0, s, 1.0)
    side_vectors = ops.left(vectors) / safe[:, None]  # v = A^T u / s (or u = A v / s for a tall matrix)
    # The stopping rule, with explicit products, on both sides of each triplet:
    # ||A A^T u - s^2 u|| / s (this side) and ||A^T A v - s^2 v|| / s (the other).
    this = np.linalg.norm(ops.gram(vectors) - vectors * theta[:, None], axis=1)
    other = np.linalg.norm(ops.left(ops.right(side_vectors)) - side_vectors * theta[:, None], axis=1)
    explicit = np.maximum(this, other) / safe / max(s[0], 1e-300)
    info = dataclasses.replace(info, max_residual=float(explicit.max(initial=0.0)),
                               converged=bool(np.all(explicit <= tol)))
    return s, (side_vectors if wide else vectors), info


def residuals(matrix: sp.spmatrix, s: np.ndarray, vt: np.ndarray) -> np.ndarray:
    """||A v_i - s_i u_i|| / s_1 for each triplet, with u_i = A v_i / s_i the left vector of (s_i, v_i):
    equivalently ||A^T A v_i - s_i^2 v_i|| / (s_i s_1), computed with float64 SciPy products."""
    a = sp.csr_matrix(matrix, dtype=np.float64)
    av = np.asarray(a @ vt.T)  # (m, rank)
    atav = np.asarray(a.T @ av)  # (n, rank)
    s = np.asarray(s, dtype=np.float64)
    safe = np.where(s > 0, s, 1.0)
    r = np.linalg.norm(atav - vt.T * s**2, axis=0) / safe
    return r / (s[0] if s.size and s[0] > 0 else 1.0)
