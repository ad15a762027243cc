"""Truncated SVD by a thick-restarted block Lanczos process (block Krylov-Schur) on the smaller Gram matrix.

For ``A`` (m, n) with m <= n (otherwise ``A^T``), the top eigenpairs (s^2, u) of
``G = A A^T`` give the triplets (s, u, v = A^T u / s). A block of ``block`` vectors is
expanded by ``G`` into an orthonormal basis Q (rows of a (dim, m) array): each new block
is orthogonalised against the blocks it couples to (the block recurrence), then against
the whole basis (full reorthogonalisation, repeated while a pass cancels much of a vector),
all as matrix products (BLAS-3), and normalised by Cholesky QR; the projected matrix
H = Q G Q^T is kept as it is built. When the basis holds ``dim``
vectors, the Ritz pairs of H are the approximations; the residual of each is read off
the Krylov relation, ``G Q^T = Q^T H + Q_next^T B E^T``:

    ||G u_i - theta_i u_i|| = ||B y_i[last block]||,

and the process restarts from the ``rank + extra`` best Ritz vectors and the next block
(Krylov-Schur: the restarted H is diagonal plus the coupling to that block), until every
wanted pair satisfies the stopping rule on the singular triplet,

    ||A v_i - s_i u_i|| = ||G u_i - s_i^2 u_i|| / s_i <= tol * s_1.

The rule is then checked on the returned triplets with explicit products, on both sides.
The products are a callable on row blocks (:mod:`.gram`): float32 kernels (the native CPU
kernel, jnp on an accelerator) or float64 SciPy. The basis lives in NumPy, in the
precision of the products (float32 at tolerances of 1e-5 and above, float64 below); the
projected matrix H, its eigendecomposition and the returned vectors are float64.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
import scipy.linalg
import scipy.sparse as sp

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
    """The stopping rule's value on the returned triplets: max_i ||A v_i - s_i u_i|| / s_1 (and the same on the
    other side), from explicit products (from the Krylov relation for :func:`block_krylov_eigh` alone)."""
    converged: bool
    """Whether every returned triplet meets the tolerance."""


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
        """Blocks of 64 (fewer on small sides), twice as many guard vectors, restarts at twice the kept
        vectors (at least four blocks more), within the order of the matrix. (Gowalla, rank 448: 128
        guard vectors take 4 restarts and 7.5-7.9 s, 64 take 5 and 8.1 s.)"""
        if block is None:
            block = max(1, min(64, (side - rank) // 4))
        extra = 2 * block if extra is None else extra
        keep = rank + extra
        dim = min(max(max(2 * keep, keep + 4 * block) if dim is None else dim, keep + block), side - block)
        if block < 1 or extra < 0 or dim < keep + block:
            raise ConfigError(f"a block Krylov basis for rank {rank} (+{extra} guard vectors, blocks of {block}) needs "
                              f"order >= {keep + 2 * block}, the Gram matrix has {side}: use the dense SVD")
        return cls(block, extra, keep, dim)

    def bytes(self, side: int) -> int:
        """Peak memory for a Gram matrix of order ``side`` (a float64 basis; a float32 one takes less): basis,
        three copies of H, product blocks, restart."""
        return 8 * ((self.dim + self.block) * side + 3 * (self.dim + self.block) ** 2 + 4 * self.block * side
                    + self.keep * side)


def basis_bytes(rank: int, side: int) -> int:
    """Peak float64 memory of the default solver for rank ``rank`` on a Gram matrix of order ``side``."""
    return BasisShape.plan(rank, max(side, rank + 4)).bytes(side)


def _project(basis: np.ndarray, w: np.ndarray) -> np.ndarray:
    """w basis^T, computed as (basis w^T)^T: OpenBLAS is several times faster with the long operand first."""
    return (basis @ w.T).T


@jax.jit
def _gram_and_cholesky_qr2(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(eigenvalues of w w^T, Cholesky QR of ``w`` twice) in XLA, whose small products run several times
    faster than OpenBLAS's; the second result is meaningful only when ``w`` is well conditioned."""
    x = w
    for _ in range(2):
        chol = jnp.linalg.cholesky(x @ x.T)
        x = jax.scipy.linalg.solve_triangular(chol, jnp.eye(chol.shape[0], dtype=x.dtype), lower=True) @ x
    return jnp.linalg.eigvalsh(w @ w.T), x


def _householder(w: np.ndarray, q: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Orthonormal rows spanning ``w`` by QR with column pivoting (the weak directions come last, with all
    of their small weight in ``w``); directions where ``w`` has (numerically) no weight are filled with
    random vectors orthogonal to ``q`` and to the rest."""
    qt, r, _ = scipy.linalg.qr(w.T, mode="economic", pivoting=True)
    out = qt.T.copy()
    weak = np.abs(np.diag(r)) <= 1e-10 * max(scale, 1e-300)
    if weak.any():
        z = rng.standard_normal((int(weak.sum()), w.shape[1])).astype(w.dtype)
        good = out[~weak]
        for _ in range(2):
            z -= _project(q, z) @ q
            z -= _project(good, z) @ good
        out[weak] = np.linalg.qr(z.T)[0].T
    return out


def _orthonormal_block(w: np.ndarray, q: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """An orthonormal basis (rows) of the block ``w`` (already orthogonal to ``q``'s rows), orthogonal to ``q``.

    Cholesky QR, twice, when ``w`` is well conditioned; otherwise :func:`_householder`. An
    ill-conditioned block is orthogonalised against ``q`` once more afterwards: normalising
    its weak directions magnifies what rounding left of them along ``q``.
    """
    with jax.enable_x64(w.dtype == np.float64):
        eigenvalues, orthonormal = _gram_and_cholesky_qr2(jnp.asarray(w))
        low, high = (float(v) for v in np.asarray(eigenvalues)[[0, -1]])
        well = low > 1e-12 * high and low > (1e-10 * scale) ** 2
        out = np.array(orthonormal) if well else None
        if out is None or not np.all(np.isfinite(out)):
            out = _householder(w, q, rng, scale)
        if not low > 1e-4 * high:
            out -= _project(q, out) @ q
            again = np.array(_gram_and_cholesky_qr2(jnp.asarray(out))[1])
            out = again if np.all(np.isfinite(again)) else _householder(out, q, rng, scale)
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
    dtype: type = np.float64,
) -> tuple[np.ndarray, np.ndarray, BlockKrylovInfo]:
    """Top-``rank`` eigenpairs (theta descending, vectors as rows) of the PSD operator ``product`` of order ``side``,
    with the basis kept in ``dtype`` (H and its eigendecomposition in float64).

    Stops when ||G u_i - theta_i u_i|| / sqrt(theta_i) <= tol * sqrt(theta_1) for every
    wanted pair (the singular-triplet residual of the Gram matrix of ``A``).
    """
    shape = BasisShape.plan(rank, side, block, extra, dim)
    block, keep, dim = shape.block, shape.keep, shape.dim
    rng = np.random.default_rng(seed)
    q = np.empty((dim + block, side), dtype)
    h = np.zeros((dim + block, dim + block))
    start = rng.standard_normal((block, side)).astype(dtype)
    q[:block] = _orthonormal_block(start, q[:0], rng, 1.0)
    filled, products, restarts = block, 0, 0
    coupled = 0  # the first basis vector coupled to the block being expanded
    scale = 0.0
    while True:
        while filled <= dim:
            last = slice(filled - block, filled)
            w = product(q[last]).astype(dtype, copy=False)
            products += block
            scale = max(scale, float(np.abs(w).max(initial=0.0)))
            # The three-term recurrence (the previous block, or every kept Ritz vector after a
            # restart), then full reorthogonalisation passes against the whole basis: one,
            # unless it cancels much of a vector (then its rounding is repaired by another).
            local = q[coupled:filled]
            c = np.zeros((block, filled), dtype)
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
            vectors = y[:, :rank].T @ q[:p].astype(np.float64)
            info = BlockKrylovInfo(restarts, products, float(triplet.max(initial=0.0)), done)
            return theta[:rank], vectors, info
        q[:keep] = y[:, :keep].T.astype(dtype) @ q[:p]
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

    Precision follows the tolerance: for ``tol >= FLOAT32_TOL`` the products run in float32
    on the device (:class:`DeviceProducts`) and the basis is kept in float32 (its products
    run twice as fast); below, float64 SciPy products and a float64 basis. The projected
    problem (H, its eigendecomposition) and the returned vectors are float64 either way.
    ``products(A)`` replaces the default products with the smaller side's ``A`` (m <= n).
    ``info.max_residual`` is the stopping rule's value recomputed with explicit products
    on the returned vectors (again in float64 when a float32 check fails). Not converged after ``max_restarts``
    restarts: the best approximation, with ``info.converged`` False.
    """
    a = sp.csr_matrix(matrix, dtype=np.float64)
    wide = a.shape[0] <= a.shape[1]
    small = a if wide else sp.csr_matrix(a.T)
    single = tol >= FLOAT32_TOL
    ops = (products or (DeviceProducts if single else ScipyProducts))(small)
    # The process stops at half the tolerance, so that the explicit check (which also covers
    # the other side of each triplet and the rounding of the products) holds.
    theta, vectors, info = block_krylov_eigh(ops.gram, small.shape[0], rank, tol=tol / 2, block=block, extra=extra,
                                             dim=dim, seed=seed, max_restarts=max_restarts,
                                             dtype=np.float32 if single else np.float64)
    s = np.sqrt(np.clip(theta, 0.0, None))
    safe = np.where(s > 0, s, 1.0)
    side_vectors = ops.left(vectors) / safe[:, None]  # v = A^T u / s (or u = A v / s for a tall matrix)
    explicit = _explicit_residuals(ops, vectors, side_vectors, theta)
    if single and not np.all(explicit <= tol):
        # The float32 products' own rounding can exceed the tolerance (long vectors, heavy rows:
        # 5.4e-4 at 10^6 users where float64 gives 4.5e-5): check again in float64.
        explicit = _explicit_residuals(ScipyProducts(small), vectors, side_vectors, theta)
    info = dataclasses.replace(info, max_residual=float(explicit.max(initial=0.0)),
                               converged=bool(np.all(explicit <= tol)))
    return s, (side_vectors if wide else vectors), info


def _explicit_residuals(ops: AbstractProducts, vectors: np.ndarray, side_vectors: np.ndarray,
                        theta: np.ndarray) -> np.ndarray:
    """The stopping rule's value of each triplet from explicit products, the larger of its two sides:
    ||A A^T u - s^2 u|| / s (this side) and ||A^T A v - s^2 v|| / s (the other), over s_1."""
    this = np.linalg.norm(ops.gram(vectors) - vectors * theta[:, None], axis=1)
    return np.maximum(_scaled(this, theta), _other_side(ops, side_vectors, theta))


def _other_side(ops: AbstractProducts, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """||A^T A x_i - theta_i x_i|| / (s_i s_1) for rows x_i of length n (s = sqrt(theta))."""
    return _scaled(np.linalg.norm(ops.left(ops.right(x)) - x * theta[:, None], axis=1), theta)


def _scaled(norms: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Residual norms divided by s_i and s_1 (s = sqrt(theta); a zero s divides by 1)."""
    s = np.sqrt(np.clip(np.asarray(theta, dtype=np.float64), 0.0, None))
    return norms / np.where(s > 0, s, 1.0) / (float(s[0]) if s.size and s[0] > 0 else 1.0)


def residuals(matrix: sp.spmatrix, s: np.ndarray, vt: np.ndarray) -> np.ndarray:
    """||A v_i - s_i u_i|| / s_1 for each triplet, with u_i = A v_i / s_i the left vector of (s_i, v_i):
    equivalently ||A^T A v_i - s_i^2 v_i|| / (s_i s_1), computed with float64 SciPy products."""
    s = np.asarray(s, dtype=np.float64)
    return _other_side(ScipyProducts(matrix), np.asarray(vt, dtype=np.float64), s**2)
