"""Linear operators acting on batches of user rows from the right: ``X -> X A``.

Every filter of BSPM is a linear map on the rows of the score matrix. Operators are
equinox modules holding their arrays; they compose with ``+``, ``-`` and scalar ``*``
so that a new filter is one expression, e.g. ``k * (gram - Identity())``.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.experimental import sparse as jsparse
from jaxtyping import Array, Float

Rows = Float[Array, "batch n_items"]


class AbstractOperator(eqx.Module):
    """A linear map ``X -> X A`` on a batch of rows ``X`` of shape (batch, n)."""

    @abc.abstractmethod
    def __call__(self, x: Rows) -> Rows:
        """Apply the operator to every row of ``x``."""

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


class Scaled(AbstractOperator):
    """``X -> c X A`` for a fixed scalar ``c``."""

    scale: float = eqx.field(static=True)
    operator: AbstractOperator

    def __call__(self, x: Rows) -> Rows:
        return self.scale * self.operator(x)


class Sum(AbstractOperator):
    """``X -> X A_1 + ... + X A_m``."""

    terms: tuple[AbstractOperator, ...]

    def __call__(self, x: Rows) -> Rows:
        out = self.terms[0](x)
        for term in self.terms[1:]:
            out = out + term(x)
        return out


class SparseMatrix(eqx.Module):
    """A sparse (m, n) matrix ``M`` kept with its transpose for row-batch products."""

    matrix: jsparse.BCSR
    transpose: jsparse.BCSR

    @classmethod
    def from_scipy(cls, m: sp.spmatrix, dtype: type = np.float32) -> SparseMatrix:
        """Build from a scipy sparse matrix (cast to ``dtype``)."""
        m = sp.csr_matrix(m, dtype=dtype)
        m.sort_indices()
        t = m.T.tocsr()
        t.sort_indices()
        return cls(jsparse.BCSR.from_scipy_sparse(m), jsparse.BCSR.from_scipy_sparse(t))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.matrix.shape)

    def rmatmul(self, x: Float[Array, "b m"]) -> Float[Array, "b n"]:
        """``X M`` for a batch of rows of length m."""
        return (self.transpose @ x.T).T

    def rmatmul_t(self, x: Float[Array, "b n"]) -> Float[Array, "b m"]:
        """``X M^T`` for a batch of rows of length n."""
        return (self.matrix @ x.T).T


class Gram(AbstractOperator):
    """``X -> X M^T M`` applied matrix-free as ``(X M^T) M`` (never forms ``M^T M``).

    With ``M = R~`` (the normalised interactions) this is the item-item filter ``P~``.
    """

    factor: SparseMatrix

    def __call__(self, x: Rows) -> Rows:
        return self.factor.rmatmul(self.factor.rmatmul_t(x))


class LowRank(AbstractOperator):
    """``X -> (X L) R`` with ``L`` of shape (n, k) and ``R`` of shape (k, n)."""

    left: Float[Array, "n k"]
    right: Float[Array, "k n"]

    def __call__(self, x: Rows) -> Rows:
        return (x @ self.left) @ self.right


class Dense(AbstractOperator):
    """``X -> X A`` with an explicit dense (n, n) matrix ``A`` (opt-in, small catalogues)."""

    matrix: Float[Array, "n n"]

    def __call__(self, x: Rows) -> Rows:
        return x @ self.matrix


def dense_array(op: AbstractOperator, n: int) -> np.ndarray:
    """The (n, n) matrix of an operator, by applying it to the identity (for tests)."""
    return np.asarray(op(jnp.eye(n, dtype=jnp.float32)))
