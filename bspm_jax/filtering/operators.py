"""Linear operators acting on batches of user rows from the right: ``X -> X A``.

Every filter of BSPM is a linear map on the rows of the score matrix. Operators are
equinox modules holding their arrays; they compose with ``+``, ``-`` and scalar ``*``
so that a new filter is one expression, e.g. ``k * (gram - Identity())``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.experimental import sparse as jsparse
from jaxtyping import Array, ArrayLike, Float

from ..runtime import native as native_kernel
from ..data.sparse import canonical_csr
from ..errors import ConfigError
from .rows import SparseRows, as_dense

Rows = Float[Array, "batch n_items"]
Chunks = Float[Array, "chunks n_items width"]
"""Rows stored as column chunks: ``chunks[c, :, j]`` is row ``c * width + j`` (native layout)."""
Addends = tuple[tuple[float, Array], ...]
"""Pairs ``(b_j, z_j)`` standing for ``sum_j b_j z_j``."""


class AbstractOperator(eqx.Module):
    """A linear map ``X -> X A`` on a batch of rows ``X`` of shape (batch, n)."""

    @abc.abstractmethod
    def __call__(self, x: Rows) -> Rows:
        """Apply the operator to every row of ``x``."""

    def on_chunks(self, x: Chunks) -> Chunks:
        """The same map on rows stored as column chunks (the native kernel's layout).

        By default through rows (two transposes); the operators here override it.
        """
        c, _, w = x.shape
        return native_kernel.to_chunks(self(native_kernel.from_chunks(x, c * w)), w)

    def affine(self, x: Rows, scale: float, addends: Addends = ()) -> Rows:
        """``scale (x A) + sum_j b_j z_j``: one step of a solver (e.g. ``c y + tau y A``)."""
        return _add_all(((scale, self(x)), *addends))

    def on_chunks_affine(self, x: Chunks, scale: float, addends: Addends = ()) -> Chunks:
        """:meth:`affine` on column chunks; a native Gram term adds the rest as it writes."""
        terms = self.terms()
        main = next((i for i, (_, op) in enumerate(terms) if isinstance(op, Gram) and op.factor.native), None)
        pending = list(addends)
        for i, (c, op) in enumerate(terms):
            if i != main:
                _merge(pending, scale * c, x if isinstance(op, Identity) else op.on_chunks(x))
        if main is None:
            return _add_all(pending)
        c, gram = terms[main]
        keep = native_kernel.MAX_ADDENDS
        if len(pending) > keep:  # the kernel adds two; the rest are summed first
            pending = [*pending[: keep - 1], (1.0, _add_all(pending[keep - 1 :]))]
        return gram.factor.gram_on_chunks(x, scale * c, tuple(pending))

    def terms(self) -> tuple[tuple[float, AbstractOperator], ...]:
        """The operator as ``sum_i c_i A_i`` over operators that are not sums or scalings."""
        return ((1.0, self),)

    def intermediate_length(self) -> int:
        """Length of the longest intermediate row one input row passes through (0: none)."""
        return max((op.intermediate_length() for _, op in self.terms() if op is not self), default=0)

    def __add__(self, other: AbstractOperator) -> AbstractOperator:
        return Sum((self, other))

    def __sub__(self, other: AbstractOperator) -> AbstractOperator:
        return Sum((self, Scaled(-1.0, other)))

    def __neg__(self) -> AbstractOperator:
        return Scaled(-1.0, self)

    def __rmul__(self, scale: float) -> AbstractOperator:
        return Scaled(float(scale), self)

    __mul__ = __rmul__


class Identity(AbstractOperator):
    """``X -> X``."""

    def __call__(self, x: Rows) -> Rows:
        return x

    def on_chunks(self, x: Chunks) -> Chunks:
        return x


class Scaled(AbstractOperator):
    """``X -> c X A`` for a fixed scalar ``c``."""

    scale: float = eqx.field(static=True)
    operator: AbstractOperator

    def __call__(self, x: Rows) -> Rows:
        return self.scale * self.operator(x)

    def on_chunks(self, x: Chunks) -> Chunks:
        return self.scale * self.operator.on_chunks(x)

    def terms(self) -> tuple[tuple[float, AbstractOperator], ...]:
        return tuple((self.scale * c, op) for c, op in self.operator.terms())


class Sum(AbstractOperator):
    """``X -> X A_1 + ... + X A_m``."""

    parts: tuple[AbstractOperator, ...]

    def __call__(self, x: Rows) -> Rows:
        out = self.parts[0](x)
        for part in self.parts[1:]:
            out = out + part(x)
        return out

    def on_chunks(self, x: Chunks) -> Chunks:
        out = self.parts[0].on_chunks(x)
        for part in self.parts[1:]:
            out = out + part.on_chunks(x)
        return out

    def terms(self) -> tuple[tuple[float, AbstractOperator], ...]:
        return tuple(pair for part in self.parts for pair in part.terms())


def kernel_for(dtype: type, kernel: str = "auto") -> str | None:
    """The native path for arrays of ``dtype`` (see :func:`bspm_jax.runtime.native.select`); None: pure JAX.

    The kernel computes in float32: other dtypes use pure JAX, unless a path is named.
    """
    path = native_kernel.select(kernel)
    if path is not None and np.dtype(dtype) != np.float32:
        if native_kernel.check_choice(kernel) != "auto":
            raise ConfigError(f"the native kernel computes in float32, not {np.dtype(dtype)}: use kernel='jax'")
        return None
    return path


class SparseMatrix(eqx.Module):
    """A sparse (m, n) matrix ``M`` kept with its transpose for row-batch products.

    With a ``kernel`` path the products run in the compiled CSR kernel of
    :mod:`bspm_jax.runtime.native` (CPU); with None in ``jax.experimental.sparse`` BCSR.
    """

    matrix: jsparse.BCSR
    transpose: jsparse.BCSR
    kernel: str | None = eqx.field(static=True, default=None, metadata={"on_load": native_kernel.relocate})

    @classmethod
    def from_scipy(cls, m: sp.spmatrix, dtype: type = np.float32, kernel: str = "auto") -> SparseMatrix:
        """Build from a scipy sparse matrix (cast to ``dtype``); ``kernel`` as in :func:`kernel_for`."""
        m = canonical_csr(m, dtype)
        t = canonical_csr(m.T)
        return cls(jsparse.BCSR.from_scipy_sparse(m), jsparse.BCSR.from_scipy_sparse(t), kernel_for(dtype, kernel))

    @property
    def native(self) -> bool:
        """Whether the products run in the native kernel."""
        return self.kernel is not None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.matrix.shape)

    @property
    def T(self) -> SparseMatrix:
        """``M^T`` (the two stored orientations swapped; nothing is copied)."""
        return SparseMatrix(self.transpose, self.matrix, self.kernel)

    def matmul(self, x: Float[Array, "n d"]) -> Float[Array, "m d"]:
        """``M X`` for a block of columns ``X``; differentiable in ``X`` (its VJP is ``M^T G``)."""
        return _sparse_product(x, self)

    def _columns(self, x: Float[Array, "n d"]) -> Float[Array, "m d"]:
        if not self.native:
            return self.matrix @ x
        n, d = x.shape
        width = native_kernel.chunk_width(d)
        pad = -d % width
        if pad:
            x = jnp.concatenate([x, jnp.zeros((n, pad), x.dtype)], axis=1)
        chunks = x.reshape(n, -1, width).transpose(1, 0, 2)
        y = _csr_chain(chunks, (self.matrix,), self.kernel)
        return y.transpose(1, 0, 2).reshape(y.shape[1], -1)[:, :d]

    def rmatmul(self, x: Float[Array, "b m"]) -> Float[Array, "b n"]:
        """``X M`` for a batch of rows of length m."""
        if self.native:
            return self._chunked(x, (self.transpose,))
        return (self.transpose @ x.T).T

    def rmatmul_t(self, x: Float[Array, "b n"]) -> Float[Array, "b m"]:
        """``X M^T`` for a batch of rows of length n."""
        if self.native:
            return self._chunked(x, (self.matrix,))
        return (self.matrix @ x.T).T

    def gram(self, x: Float[Array, "b n"]) -> Float[Array, "b n"]:
        """``X M^T M``; the native path keeps the intermediate in its chunked layout."""
        if self.native:
            return self._chunked(x, (self.matrix, self.transpose))
        return self.rmatmul(self.rmatmul_t(x))

    def gram_on_chunks(self, x: Float[Array, "c n w"], scale: float = 1.0, addends: Addends = ()) -> Float[Array, "c n w"]:
        """``scale M^T (M x[c]) + sum_j b_j z_j[c]`` for every chunk (rows as column chunks).

        The native kernel adds up to two addends as it writes the product.
        """
        if self.native:
            y = _csr_chain(x, (self.matrix,), self.kernel)
            t = self.transpose
            return native_kernel.csr_matmul(t.indptr, t.indices, t.data, y, self.kernel, scale, addends)
        return _add_all(((scale, jax.vmap(lambda xc: self.transpose @ (self.matrix @ xc))(x)), *addends))

    def _chunked(self, x: Float[Array, "b k"], factors: tuple[jsparse.BCSR, ...]) -> Float[Array, "b j"]:
        """``X F_1^T F_2^T ...`` computed as ``F_2 (F_1 X^T)`` on column chunks of ``X^T``."""
        y = native_kernel.to_chunks(x, native_kernel.chunk_width(x.shape[0]))
        return native_kernel.from_chunks(_csr_chain(y, factors, self.kernel), x.shape[0])


@eqx.filter_custom_vjp
def _sparse_product(x: Float[Array, "n d"], matrix: SparseMatrix) -> Float[Array, "m d"]:
    return matrix._columns(x)


@_sparse_product.def_fwd
def _sparse_product_fwd(perturbed: bool, x: Array, matrix: SparseMatrix) -> tuple[Array, None]:
    return matrix._columns(x), None


@_sparse_product.def_bwd
def _sparse_product_bwd(residuals: None, grad: Array, perturbed: bool, x: Array, matrix: SparseMatrix) -> Array:
    return matrix.T._columns(grad)


def _csr_chain(x: Float[Array, "c m w"], factors: tuple[jsparse.BCSR, ...], path: str) -> Float[Array, "c n w"]:
    """``F_k (... (F_1 x[c]))`` for every chunk, with the native kernel's ``path``."""
    for f in factors:
        x = native_kernel.csr_matmul(f.indptr, f.indices, f.data, x, path)
    return x


def _add_all(pairs: Addends | list[tuple[float, Array]]) -> Array:
    """``sum_j b_j z_j``."""
    (b, z), *rest = pairs
    out = z if b == 1.0 else b * z
    for b, z in rest:
        out = out + (z if b == 1.0 else b * z)
    return out


def _merge(pairs: list[tuple[float, Array]], b: float, z: Array) -> None:
    """Add ``b z`` to ``pairs``, folding it into a pair with the same array."""
    for j, (bj, zj) in enumerate(pairs):
        if zj is z:
            pairs[j] = (bj + b, z)
            return
    pairs.append((b, z))


class Gram(AbstractOperator):
    """``X -> X M^T M`` applied matrix-free as ``(X M^T) M`` (never forms ``M^T M``).

    With ``M = R~`` (the normalised interactions) this is the item-item filter ``P~``.
    """

    factor: SparseMatrix

    def __call__(self, x: Rows) -> Rows:
        return self.factor.gram(x)

    def intermediate_length(self) -> int:
        """``X M^T`` has one entry per row of ``M`` (the training users, for ``M = R~``)."""
        return self.factor.shape[0]

    def on_chunks(self, x: Chunks) -> Chunks:
        return self.factor.gram_on_chunks(x)


class LowRank(AbstractOperator):
    """``X -> (X L) R`` with ``L`` of shape (n, k) and ``R`` of shape (k, n).

    ``R`` is stored transposed, (n, k) and contiguous. On column chunks with a native
    ``kernel`` path, both products run in the kernel's dense product, whose sums do not
    depend on the chunk width (XLA's GEMM blocking, and so its rounding, does).
    """

    left: Float[Array, "n k"]
    right_t: Float[Array, "n k"]
    kernel: str | None = eqx.field(static=True, metadata={"on_load": native_kernel.relocate})

    def __init__(self, left: Float[ArrayLike, "n k"], right: Float[ArrayLike, "k n"], kernel: str | None = None):
        self.left = jnp.asarray(left)
        self.right_t = jnp.transpose(jnp.asarray(right))
        self.kernel = kernel

    @property
    def right(self) -> Float[Array, "k n"]:
        return self.right_t.T

    def __call__(self, x: Rows) -> Rows:
        return row_tiles(lambda t: (t @ self.left) @ self.right_t.T, x)

    def right_on_rows(self, xl: Float[Array, "b k"]) -> Rows:
        """``xl R`` for rows of ``X L``."""
        return row_tiles(lambda t: t @ self.right_t.T, xl)

    def right_on_chunks(self, xl: Float[Array, "c k w"]) -> Chunks:
        """``R^T xl[c]`` for every chunk of ``X L`` (stored as column chunks)."""
        if self.kernel is not None:
            return native_kernel.dense_matmul(self.right_t, xl, self.kernel)
        return jax.lax.map(lambda xc: self.right_t @ xc, xl)  # one plain GEMM per chunk

    def on_chunks(self, x: Chunks) -> Chunks:
        if self.kernel is not None:
            return self.right_on_chunks(native_kernel.dense_matmul(self.left.T, x, self.kernel))
        return jax.lax.map(lambda xc: self.right_t @ (self.left.T @ xc), x)


ROW_TILE = 16
"""Rows per XLA dot in :func:`row_tiles`."""


def row_tiles(fn: Callable[[Array], Array], x: Float[Array, "b n"]) -> Array:
    """``fn`` on ``x``'s rows, ROW_TILE rows per call (the last tile zero-padded).

    Every dot then has the same shape whatever the batch size: XLA picks its algorithm (and
    so its rounding) by shape, e.g. a matrix-vector product for one row, which rounds
    differently from the matrix-matrix product of a larger batch.
    """
    b = x.shape[0]
    pad = -b % ROW_TILE
    tiles = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    out = jax.lax.map(fn, tiles.reshape(-1, ROW_TILE, *x.shape[1:]))
    return out.reshape(-1, *out.shape[2:])[:b]


class Sparse(AbstractOperator):
    """``X -> X M`` with an explicit sparse (n, n) matrix ``M`` (e.g. an item-item matrix built in advance)."""

    matrix: SparseMatrix

    def __call__(self, x: Rows) -> Rows:
        return self.matrix.rmatmul(x)

    def on_chunks(self, x: Chunks) -> Chunks:
        t = self.matrix.transpose
        if self.matrix.native:
            return _csr_chain(x, (t,), self.matrix.kernel)
        return jax.vmap(lambda xc: t @ xc)(x)


class SelfAdjoint(AbstractOperator):
    """A symmetric operator marked so that reverse-mode derivatives reuse it as its own transpose.

    The native kernel has no derivative rule; the vector-Jacobian product of ``x -> x A``
    with ``A = A^T`` is ``g -> g A``, one more application of the same operator.
    """

    operator: AbstractOperator

    def __call__(self, x: Rows) -> Rows:
        return _self_adjoint(x, self.operator)


@eqx.filter_custom_vjp
def _self_adjoint(x: Rows, operator: AbstractOperator) -> Rows:
    return operator(x)


@_self_adjoint.def_fwd
def _self_adjoint_fwd(perturbed: bool, x: Array, operator: AbstractOperator) -> tuple[Array, None]:
    return operator(x), None


@_self_adjoint.def_bwd
def _self_adjoint_bwd(residuals: None, grad: Array, perturbed: bool, x: Array, operator: AbstractOperator) -> Array:
    return operator(grad)


class Diagonal(AbstractOperator):
    """``X -> X diag(d)``: each column scaled, e.g. a degree normalisation, or a filter in its eigenbasis."""

    diagonal: Float[Array, " n"]

    def __call__(self, x: Rows) -> Rows:
        return x * self.diagonal

    def on_chunks(self, x: Chunks) -> Chunks:
        return x * self.diagonal[None, :, None]


class Dense(AbstractOperator):
    """``X -> X A`` with an explicit dense (n, n) matrix ``A`` (opt-in, small catalogues)."""

    matrix: Float[Array, "n n"]

    def __call__(self, x: Rows) -> Rows:
        return row_tiles(lambda t: t @ self.matrix, x)

    def on_chunks(self, x: Chunks) -> Chunks:
        return jnp.einsum("nm,cnw->cmw", self.matrix, x)


class OnChunks(AbstractOperator):
    """View of an operator that takes and returns column chunks (for the ODE solvers)."""

    operator: AbstractOperator

    def __call__(self, x: Chunks) -> Chunks:
        return self.operator.on_chunks(x)

    def on_chunks(self, x: Chunks) -> Chunks:
        raise TypeError("OnChunks already acts on chunks")

    def affine(self, x: Chunks, scale: float, addends: Addends = ()) -> Chunks:
        return self.operator.on_chunks_affine(x, scale, addends)


def layout_for(native: bool, batch: int) -> AbstractLayout:
    """Storage of a batch of ``batch`` rows: column chunks for the native kernel, else rows."""
    return ChunkLayout(native_kernel.chunk_width(batch)) if native else RowLayout()


class AbstractLayout(eqx.Module):
    """How a batch of user rows is stored while operators act on it."""

    @abc.abstractmethod
    def enter(self, x: Rows | SparseRows) -> Array:
        """Rows in this layout."""

    @abc.abstractmethod
    def low_rank(self, op: LowRank, x: Rows | SparseRows) -> Array:
        """``(x L) R`` in this layout; ``x L`` from the nonzeros when ``x`` is sparse."""

    @abc.abstractmethod
    def leave(self, y: Array, batch: int) -> Rows:
        """Back to ``batch`` rows."""

    @abc.abstractmethod
    def view(self, op: AbstractOperator) -> AbstractOperator:
        """The operator acting on states in this layout."""

    @abc.abstractmethod
    def top_k(self, y: Array, seen: SparseRows, k: int) -> tuple[Float[Array, "b k"], Array]:
        """Top-k values and items of each of the ``seen.n_rows`` rows, ``seen`` items excluded."""


class RowLayout(AbstractLayout):
    """Plain (batch, n) rows."""

    def enter(self, x: Rows | SparseRows) -> Rows:
        return as_dense(x)

    def low_rank(self, op: LowRank, x: Rows | SparseRows) -> Rows:
        return op.right_on_rows(_times(x, op))

    def leave(self, y: Rows, batch: int) -> Rows:
        return y

    def view(self, op: AbstractOperator) -> AbstractOperator:
        return op

    def top_k(self, y: Rows, seen: SparseRows, k: int) -> tuple[Float[Array, "b k"], Array]:
        values, items = jax.lax.top_k(seen.mask(y), k)
        return values, items


class ChunkLayout(AbstractLayout):
    """Column chunks of ``width`` rows, (chunks, n, width): the native kernel's layout."""

    width: int = eqx.field(static=True)

    def enter(self, x: Rows | SparseRows) -> Chunks:
        if isinstance(x, SparseRows):
            return x.chunks(self.width)
        return native_kernel.to_chunks(x, self.width)

    def low_rank(self, op: LowRank, x: Rows | SparseRows) -> Chunks:
        return op.right_on_chunks(native_kernel.to_chunks(_times(x, op), self.width))

    def leave(self, y: Chunks, batch: int) -> Rows:
        return native_kernel.from_chunks(y, batch)

    def view(self, op: AbstractOperator) -> AbstractOperator:
        return OnChunks(op)

    def top_k(self, y: Chunks, seen: SparseRows, k: int) -> tuple[Float[Array, "b k"], Array]:
        values, items = native_kernel.top_k_chunks(y, seen.indptr(), seen.col, k)
        return values.reshape(-1, k)[: seen.n_rows], items.reshape(-1, k)[: seen.n_rows]


def _times(x: Rows | SparseRows, op: LowRank) -> Float[Array, "b k"]:
    """``x L``; from the nonzeros of sparse rows (each row's sum in the order of its items)."""
    return x.matmul(op.left, op.kernel) if isinstance(x, SparseRows) else row_tiles(lambda t: t @ op.left, x)


def dense_array(op: AbstractOperator, n: int) -> np.ndarray:
    """The (n, n) matrix of an operator, by applying it to the identity (for tests)."""
    return np.asarray(op(jnp.eye(n, dtype=jnp.float32)))
