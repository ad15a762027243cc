"""A batch of user rows kept sparse: what the scoring functions receive from the data."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..runtime import native
from ..data.sparse import canonical_csr


class SparseRows(eqx.Module):
    """``n_rows`` user rows as padded COO triples; padding entries have ``row == n_rows``.

    Entries are sorted by row, then column (so the rows are also CSR; see :meth:`indptr`).
    The number of entries is padded to a power of two, so few shapes are compiled.
    :meth:`stacked` holds several batches on a leading axis. ``user`` is each row's index
    among the users the model was fitted on, -1 for a new user (and for padding rows):
    models that learn a vector per user read it, models that score histories ignore it.
    """

    row: Int[Array, "*batches nnz"]
    col: Int[Array, "*batches nnz"]
    value: Float[Array, "*batches nnz"]
    user: Int[Array, "*batches n_rows"]
    n_rows: int = eqx.field(static=True)
    n_cols: int = eqx.field(static=True)

    @classmethod
    def from_scipy(cls, matrix: sp.spmatrix, n_rows: int | None = None, users: np.ndarray | None = None) -> SparseRows:
        """The rows of ``matrix`` (float32), zero-padded to ``n_rows`` rows; ``users`` as in the class."""
        m = canonical_csr(matrix, np.float32)
        n_rows = m.shape[0] if n_rows is None else n_rows
        row, col, value = _padded(m, n_rows, _padded_size(m.nnz))
        return cls(jnp.asarray(row), jnp.asarray(col), jnp.asarray(value), jnp.asarray(_users(users, m.shape[0], n_rows)),
                   n_rows, m.shape[1])

    @classmethod
    def stacked(
        cls, matrix: sp.spmatrix, batches: Sequence[np.ndarray], n_rows: int, users: np.ndarray | None = None
    ) -> SparseRows:
        """The rows of each batch of ``matrix``'s rows, stacked on a leading axis (for ``lax.map``).

        Every batch is padded to ``n_rows`` rows and to the same number of entries;
        ``users[r]`` is the user of ``matrix``'s row ``r`` (default: all new, -1).
        """
        parts = [canonical_csr(matrix[np.asarray(b)], np.float32) for b in batches]
        size = _padded_size(max((m.nnz for m in parts), default=0))
        row, col, value = (np.stack(a) for a in zip(*(_padded(m, n_rows, size) for m in parts)))
        user = np.stack([_users(None if users is None else np.asarray(users)[np.asarray(b, dtype=np.int64)], len(b), n_rows)
                         for b in batches]) if batches else np.zeros((0, n_rows), np.int32)
        return cls(jnp.asarray(row), jnp.asarray(col), jnp.asarray(value), jnp.asarray(user), n_rows, matrix.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_cols)

    def dense(self) -> Float[Array, "n_rows n_cols"]:
        """The rows as a dense array."""
        return jnp.zeros(self.shape, jnp.float32).at[self.row, self.col].set(self.value, mode="drop")

    def chunks(self, width: int) -> Float[Array, "c n_cols width"]:
        """The rows as column chunks (see :func:`bspm_jax.runtime.native.to_chunks`), built directly."""
        c = -(-self.n_rows // width)
        out = jnp.zeros((c, self.n_cols, width), jnp.float32)
        valid = self.row < self.n_rows
        chunk = jnp.where(valid, self.row // width, c)  # padding lands outside and is dropped
        return out.at[chunk, self.col, self.row % width].set(self.value, mode="drop")

    def matmul(self, m: Float[Array, "n_cols k"], kernel: str | None = None) -> Float[Array, "n_rows k"]:
        """``rows @ m`` from the nonzeros only: the native CSR kernel's ``kernel`` path, or pure JAX (None)."""
        if kernel is not None:
            return native.csr_matmul(self.indptr(), self.col, self.value, m[None], kernel)[0]
        return jax.ops.segment_sum(self.value[:, None] * m[self.col], self.row, num_segments=self.n_rows)

    def scale_columns(self, d: Float[Array, " n_cols"]) -> SparseRows:
        """``rows diag(d)``, still sparse."""
        return SparseRows(self.row, self.col, self.value * d[self.col], self.user, self.n_rows, self.n_cols)

    def indptr(self) -> Int[Array, " n_rows_plus_1"]:
        """CSR row pointers of the entries (rows are stored in order, padding last)."""
        return jnp.searchsorted(self.row, jnp.arange(self.n_rows + 1, dtype=self.row.dtype)).astype(jnp.int32)

    def mask(self, scores: Float[Array, "n_rows n_cols"], fill: float = -jnp.inf) -> Float[Array, "n_rows n_cols"]:
        """``scores`` with the entries of these rows' nonzeros replaced by ``fill``."""
        return scores.at[self.row, self.col].set(fill, mode="drop")


def _users(users: np.ndarray | None, n: int, n_rows: int) -> np.ndarray:
    """int32 user indices of ``n`` rows padded with -1 to ``n_rows`` (all -1 when not given)."""
    out = np.full(n_rows, -1, dtype=np.int32)
    if users is not None:
        out[:n] = np.asarray(users, dtype=np.int64)
    return out


def _padded_size(nnz: int) -> int:
    """Entries are padded to a power of two (at least 1024), so few shapes are compiled."""
    return 1 << max(10, int(np.ceil(np.log2(max(nnz, 1)))))


def _padded(m: sp.csr_matrix, n_rows: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Host arrays (row, col, value) of ``m``'s entries padded to ``size``; padding has row ``n_rows``."""
    if n_rows < m.shape[0]:
        raise ValueError(f"n_rows={n_rows} is smaller than the {m.shape[0]} rows given")
    row = np.full(size, n_rows, dtype=np.int32)
    col = np.zeros(size, dtype=np.int32)
    value = np.zeros(size, dtype=np.float32)
    row[: m.nnz] = np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))
    col[: m.nnz] = m.indices
    value[: m.nnz] = m.data
    return row, col, value


def as_dense(rows: Float[Array, "b n"] | SparseRows) -> Float[Array, "b n"]:
    """Dense rows from either form."""
    return rows.dense() if isinstance(rows, SparseRows) else rows


def scale_columns(rows: Float[Array, "b n"] | SparseRows, d: Float[Array, " n"]) -> Float[Array, "b n"] | SparseRows:
    """``rows diag(d)`` in the rows' own form."""
    return rows.scale_columns(d) if isinstance(rows, SparseRows) else rows * d
