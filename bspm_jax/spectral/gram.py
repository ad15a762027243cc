"""Multi-vector products with a sparse ``A`` (m, n) and its Gram matrix ``A A^T``, for the iterative SVD.

Blocks are rows: X (b, m) -> X A A^T (:meth:`AbstractProducts.gram`), X (b, m) -> X A
(:meth:`AbstractProducts.left`) and X (b, n) -> X A^T (:meth:`AbstractProducts.right`),
float64 NumPy in and out (the Krylov solver keeps its basis in the products' precision).

- :class:`DeviceProducts`: float32 on the JAX device: on the CPU the compiled CSR kernel
  of :mod:`bspm_jax.runtime.native` on 64-column chunks (multi-threaded, vectorised), elsewhere
  (or with ``kernel="jax"``) ``jax.experimental.sparse`` BCSR. Each product rounds like
  any float32 product: a relative error ~1e-7 of ``||A||^2``.
- :class:`ScipyProducts`: float64 SciPy (single-threaded), for tolerances below what
  float32 products can certify.
"""

from __future__ import annotations

import abc
import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.experimental import sparse as jsparse

from ..runtime import native
from ..data.sparse import canonical_csr


class AbstractProducts(abc.ABC):
    """Products of row blocks with ``A`` (m, n) and with ``A A^T``."""

    @abc.abstractmethod
    def gram(self, x: np.ndarray) -> np.ndarray:
        """X A A^T for X (b, m), float64."""

    @abc.abstractmethod
    def left(self, x: np.ndarray) -> np.ndarray:
        """X A for X (b, m), float64 (b, n)."""

    @abc.abstractmethod
    def right(self, x: np.ndarray) -> np.ndarray:
        """X A^T for X (b, n), float64 (b, m)."""


@jax.jit
def _bcsr_chain(x: jax.Array, matrices: tuple[jsparse.BCSR, ...]) -> jax.Array:
    y = x.T
    for m in matrices:
        y = m @ y
    return y.T


@functools.partial(jax.jit, static_argnames="path")
def _kernel_chain(x: jax.Array, matrices: tuple[tuple[jax.Array, jax.Array, jax.Array], ...], path: str) -> jax.Array:
    y = native.to_chunks(x, native.chunk_width(x.shape[0]))
    for indptr, indices, data in matrices:
        y = native.csr_matmul(indptr, indices, data, y, path)
    return native.from_chunks(y, x.shape[0])


class DeviceProducts(AbstractProducts):
    """float32 products on the JAX device; the native kernel's ``kernel`` path on the CPU."""

    def __init__(self, a: sp.spmatrix, kernel: str = "auto") -> None:
        self.path = native.select(kernel)
        forward, backward = canonical_csr(a, np.float32), canonical_csr(a.T, np.float32)  # A (m, n) and A^T (n, m)
        if self.path is None:
            self.forward, self.backward = (jsparse.BCSR.from_scipy_sparse(m) for m in (forward, backward))
        else:
            self.forward, self.backward = (
                (jnp.asarray(m.indptr.astype(np.int32)), jnp.asarray(m.indices.astype(np.int32)), jnp.asarray(m.data))
                for m in (forward, backward))

    def _chain(self, x: np.ndarray, matrices: tuple) -> np.ndarray:
        x32 = jnp.asarray(x, jnp.float32)
        y = _bcsr_chain(x32, matrices) if self.path is None else _kernel_chain(x32, matrices, self.path)
        return np.asarray(y, dtype=np.float64)

    def gram(self, x: np.ndarray) -> np.ndarray:
        return self._chain(x, (self.backward, self.forward))

    def left(self, x: np.ndarray) -> np.ndarray:
        return self._chain(x, (self.backward,))

    def right(self, x: np.ndarray) -> np.ndarray:
        return self._chain(x, (self.forward,))


class ScipyProducts(AbstractProducts):
    """float64 SciPy products (exact to float64 rounding)."""

    def __init__(self, a: sp.spmatrix) -> None:
        self.forward = sp.csr_matrix(a, dtype=np.float64)
        self.backward = sp.csr_matrix(self.forward.T)

    def gram(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.forward @ (self.backward @ x.T)).T

    def left(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.backward @ x.T).T

    def right(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.forward @ x.T).T
