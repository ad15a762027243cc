"""The optional native CPU kernels (XLA FFI custom calls): sparse and dense products, and top-k.

``bspm_jax._native`` is compiled at install time (``setup.py``) for the portable baseline
of the architecture, with the arithmetic loops compiled once more for each faster
instruction-set path (x86-64: AVX2 and AVX-512); a call names its path. The kernel is used
only on the CPU backend and only when it loads and every path passes a self-check
against NumPy; otherwise the products fall back to ``jax.experimental.sparse`` and XLA's
dot, and the top-k to ``jax.lax.top_k`` (pure JAX).

Which path runs: the ``kernel`` setting of the models (and of the functions that build
operators): ``avx512``, ``avx2``, ``baseline``, ``jax`` (the pure-JAX fallback), or ``auto``,
the default, which takes ``$BSPM_KERNEL`` when it is set and otherwise the fastest path
this CPU runs. Every path rounds the same operations in the same order (no fused
multiply-add), so all give the same bits.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ..errors import ConfigError

SPMM_TARGET = "bspm_csr_spmm"
DENSE_TARGET = "bspm_dense_spmm"
TOP_K_TARGET = "bspm_top_k_chunks"
MAX_ADDENDS = 2
"""Addends the product kernels can add to their product as they write it."""
WIDTHS = (64, 32, 16)
"""Column widths with a compiled kernel; batches are cut into chunks of one of these."""
PATHS = ("avx512", "avx2", "baseline")
"""The kernel's instruction-set paths, fastest first (only ``baseline`` off x86-64)."""
JAX = "jax"
"""The name of the pure-JAX fallback in ``$BSPM_KERNEL``."""
KERNEL_ENV = "BSPM_KERNEL"
_ISA_CODE = {"baseline": 0, "avx2": 1, "avx512": 2}


@functools.cache
def _load() -> tuple[tuple[str, ...], str]:
    """The paths that are built, run on this CPU and pass the self-check; or why there are none."""
    if jax.default_backend() != "cpu":
        return (), f"the native kernel runs on the CPU backend only (backend: {jax.default_backend()})"
    try:
        from .._native import handlers, isa_paths
    except ImportError as err:
        return (), f"bspm_jax._native is not built ({err}); reinstall with a C++17 compiler for the native kernel"
    try:
        for name, capsule in handlers().items():
            jax.ffi.register_ffi_target(name, capsule, platform="cpu")
        with jax.ensure_compile_time_eval():  # run the check now even when the first call comes inside a trace
            paths = tuple(p for p in isa_paths() if p in _ISA_CODE and _self_check(p))
    except Exception as err:  # a kernel that cannot run is no kernel: use the pure-JAX path
        return (), f"the native kernel failed its self-check ({type(err).__name__}: {err})"
    return paths, "" if paths else "no instruction-set path of the native kernel passed its self-check"


def isa_paths() -> tuple[str, ...]:
    """The native kernel's instruction-set paths that run on this CPU, fastest first (empty: none)."""
    return _load()[0]


def available() -> bool:
    """Whether the native kernel is built, registered and agrees with NumPy on this CPU."""
    return bool(isa_paths())


def unavailable_reason() -> str:
    """Why the native kernel is not used ("" when it is)."""
    return _load()[1]


CHOICES = ("auto", *PATHS, JAX)
"""Values of the ``kernel`` setting and of ``$BSPM_KERNEL``."""


def check_choice(kernel: object, source: str = "kernel") -> str:
    """``kernel`` as one of :data:`CHOICES` (lower case), or a ConfigError naming ``source``."""
    request = kernel.strip().lower() if isinstance(kernel, str) else kernel
    if request not in CHOICES:
        raise ConfigError(f"{source} must be one of {', '.join(CHOICES)}, got {kernel!r}")
    return request


def select(kernel: str = "auto") -> str | None:
    """The path to compute with (None: pure JAX) for the setting ``kernel``.

    ``auto`` takes ``$BSPM_KERNEL`` when set, else the fastest path this CPU runs (pure JAX
    when the kernel is unavailable); a named path this machine cannot run is an error.
    """
    request = check_choice(kernel)
    if request == "auto":
        request = check_choice(os.environ.get(KERNEL_ENV, "auto") or "auto", f"${KERNEL_ENV}")
    if request == JAX:
        return None
    paths = isa_paths()
    if request == "auto":
        return paths[0] if paths else None
    if request not in paths:
        why = unavailable_reason() or f"this CPU runs {', '.join(paths)}"
        raise ConfigError(f"kernel path {request!r} cannot run here: {why}")
    return request


def relocate(path: str | None) -> str | None:
    """The path a loaded model computes with: its saved ``path`` where this CPU runs it, else the best one here.

    Every path gives bit-identical products, so a model saved on one CPU scores the same on another.
    """
    if path is None:
        return None
    paths = isa_paths()
    return path if path in paths else (paths[0] if paths else None)


def _self_check(path: str) -> bool:
    indptr = np.array([0, 2, 2, 3], np.int32)
    indices = np.array([0, 2, 1], np.int32)
    data = np.array([1.5, -2.0, 0.5], np.float32)
    x = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    dense = np.zeros((3, 3), np.float32)
    dense[[0, 0, 2], indices] = data
    want = np.einsum("rn,cnw->crw", dense, x)
    got = csr_matmul(jnp.asarray(indptr), jnp.asarray(indices), jnp.asarray(data), jnp.asarray(x), path)
    got_dense = dense_matmul(jnp.asarray(dense), jnp.asarray(x), path)
    return bool(np.allclose(got, want, rtol=1e-6) and np.allclose(got_dense, want, rtol=1e-6))


def _attrs(scale: float, addends: Sequence[tuple[float, Array]], path: str) -> dict[str, np.generic]:
    if len(addends) > MAX_ADDENDS:
        raise ValueError(f"at most {MAX_ADDENDS} addends, got {len(addends)}")
    betas = [float(b) for b, _ in addends] + [0.0] * (MAX_ADDENDS - len(addends))
    return {"alpha": np.float32(scale), "beta0": np.float32(betas[0]), "beta1": np.float32(betas[1]),
            "isa": np.int32(_ISA_CODE[path])}


def csr_matmul(
    indptr: Int[Array, " m1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, " nnz"],
    x: Float[Array, "c n w"],
    path: str,
    scale: float = 1.0,
    addends: Sequence[tuple[float, Float[Array, "c m w"]]] = (),
) -> Float[Array, "c m w"]:
    """``y[c] = scale M x[c] + sum_j b_j z_j[c]`` for a CSR matrix ``M`` of shape (m, n).

    ``x[c]`` are chunks of shape (n, w); ``addends`` are at most two pairs ``(b_j, z_j)``
    added as the kernel writes ``y`` (no extra pass over the batch); ``path`` one of
    :func:`isa_paths`. Each entry of ``y`` sums its row's terms in storage order.
    """
    out = jax.ShapeDtypeStruct((x.shape[0], indptr.shape[0] - 1, x.shape[2]), jnp.float32)
    attrs = _attrs(scale, addends, path)
    return jax.ffi.ffi_call(SPMM_TARGET, out)(indptr, indices, data, x, *(z for _, z in addends), **attrs)


def dense_matmul(
    matrix: Float[Array, "m n"],
    x: Float[Array, "c n w"],
    path: str,
    scale: float = 1.0,
    addends: Sequence[tuple[float, Float[Array, "c m w"]]] = (),
) -> Float[Array, "c m w"]:
    """:func:`csr_matmul` for a dense row-major ``matrix``: each entry sums over ``n`` in order.

    Unlike a BLAS GEMM, whose blocking (and so its rounding) changes with the shapes, the
    result of every column is the same whatever the chunk width and number of chunks.
    """
    out = jax.ShapeDtypeStruct((x.shape[0], matrix.shape[0], x.shape[2]), jnp.float32)
    attrs = _attrs(scale, addends, path)
    return jax.ffi.ffi_call(DENSE_TARGET, out)(matrix, x, *(z for _, z in addends), **attrs)


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

    The width changes only the speed: no product's rounding depends on it.
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
