"""The optional native CPU kernels (XLA FFI custom calls): CSR x dense products and top-k.

``bspm_jax._native`` is compiled at install time (``setup.py``). It is used only on the
CPU backend and only when it loads and passes a self-check against NumPy; otherwise the
sparse products fall back to ``jax.experimental.sparse`` and the top-k to
``jax.lax.top_k`` (pure JAX), automatically.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

SPMM_TARGET = "bspm_csr_spmm"
TOP_K_TARGET = "bspm_top_k_chunks"
MAX_ADDENDS = 2
"""Addends the CSR kernel can add to its product as it writes it."""
WIDTHS = (64, 32, 16)
"""Column widths with a compiled kernel; batches are cut into chunks of one of these."""


@functools.cache
def available() -> bool:
    """Whether the native kernel is built, registered and agrees with NumPy on a small case."""
    if jax.default_backend() != "cpu":
        return False
    try:
        from . import _native
    except ImportError:
        return False
    try:
        for name, capsule in _native.handlers().items():
            jax.ffi.register_ffi_target(name, capsule, platform="cpu")
        return _self_check()
    except Exception:  # a kernel that cannot run is no kernel: use the pure-JAX path
        return False


def _self_check() -> bool:
    indptr = np.array([0, 2, 2, 3], np.int32)
    indices = np.array([0, 2, 1], np.int32)
    data = np.array([1.5, -2.0, 0.5], np.float32)
    x = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    dense = np.zeros((3, 3), np.float32)
    dense[[0, 0, 2], indices] = data
    got = np.asarray(csr_matmul(jnp.asarray(indptr), jnp.asarray(indices), jnp.asarray(data), jnp.asarray(x)))
    return bool(np.allclose(got, np.einsum("rn,cnw->crw", dense, x), rtol=1e-6))


def csr_matmul(
    indptr: Int[Array, " m1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, " nnz"],
    x: Float[Array, "c n w"],
    scale: float = 1.0,
    addends: Sequence[tuple[float, Float[Array, "c m w"]]] = (),
) -> Float[Array, "c m w"]:
    """``y[c] = scale M x[c] + sum_j b_j z_j[c]`` for a CSR matrix ``M`` of shape (m, n).

    ``x[c]`` are chunks of shape (n, w); ``addends`` are at most two pairs ``(b_j, z_j)``
    added as the kernel writes ``y`` (no extra pass over the batch).
    """
    if len(addends) > MAX_ADDENDS:
        raise ValueError(f"at most {MAX_ADDENDS} addends, got {len(addends)}")
    betas = [float(b) for b, _ in addends] + [0.0] * (MAX_ADDENDS - len(addends))
    out = jax.ShapeDtypeStruct((x.shape[0], indptr.shape[0] - 1, x.shape[2]), jnp.float32)
    attrs = {"alpha": np.float32(scale), "beta0": np.float32(betas[0]), "beta1": np.float32(betas[1])}
    return jax.ffi.ffi_call(SPMM_TARGET, out)(indptr, indices, data, x, *(z for _, z in addends), **attrs)


def top_k_chunks(
    x: Float[Array, "c n w"], seen_indptr: Int[Array, " users1"], seen_cols: Int[Array, " nnz"], k: int
) -> tuple[Float[Array, "c w k"], Int[Array, "c w k"]]:
    """Top ``k`` of every user column of every chunk, values descending, ties to the lower index.

    User ``u = c * w + j`` has seen items ``seen_cols[seen_indptr[u]:seen_indptr[u + 1]]``
    (sorted), which count as -inf, as ``jax.lax.top_k`` on masked rows would; so does NaN.
    """
    c, _, w = x.shape
    out = (jax.ShapeDtypeStruct((c, w, k), jnp.float32), jax.ShapeDtypeStruct((c, w, k), jnp.int32))
    return jax.ffi.ffi_call(TOP_K_TARGET, out)(x, seen_indptr, seen_cols)


def chunk_width(batch: int) -> int:
    """The widest compiled width that divides ``batch`` (16 when none does: the batch is padded).

    Width 8 is not used: on the CPU its scores differ from the wider widths' in the last bit
    (measured), which would make top-k lists depend on the batch size; 16, 32 and 64 agree.
    """
    return next((w for w in WIDTHS if batch % w == 0), WIDTHS[-1])


def to_chunks(x: Float[Array, "b n"], width: int) -> Float[Array, "c n w"]:
    """Rows of ``x`` as column chunks: ``out[c, :, j] = x[c * width + j]`` (zero padded)."""
    b, n = x.shape
    pad = -b % width
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad, n), x.dtype)])
    return x.reshape(-1, width, n).transpose(0, 2, 1)


def from_chunks(y: Float[Array, "c n w"], batch: int) -> Float[Array, "b n"]:
    """Inverse of :func:`to_chunks`: the first ``batch`` rows."""
    c, n, w = y.shape
    return y.transpose(0, 2, 1).reshape(c * w, n)[:batch]
