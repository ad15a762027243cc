"""SparseRows against the dense rows it stands for."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bspm_jax.runtime import native
from bspm_jax.filtering.rows import SparseRows, as_dense


@st.composite
def matrices(draw):
    rows, cols = draw(st.integers(1, 40)), draw(st.integers(1, 30))
    seed = draw(st.integers(0, 2**16))
    m = sp.random(rows, cols, density=draw(st.floats(0.0, 0.5)), random_state=seed, format="csr", dtype=np.float32)
    pad = draw(st.integers(0, 9))
    return m, rows + pad


@given(matrices())
@settings(max_examples=50, deadline=None)
def test_sparse_rows_forms_equal_numpy(case):
    m, n_rows = case
    rows = SparseRows.from_scipy(m, n_rows)
    dense = np.zeros((n_rows, m.shape[1]), np.float32)
    dense[: m.shape[0]] = m.toarray()
    np.testing.assert_array_equal(np.asarray(rows.dense()), dense)
    np.testing.assert_array_equal(np.asarray(as_dense(rows)), dense)
    width = native.chunk_width(n_rows)
    np.testing.assert_array_equal(np.asarray(native.from_chunks(rows.chunks(width), n_rows)), dense)
    w = np.random.default_rng(0).standard_normal((m.shape[1], 5)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(rows.matmul(jnp.asarray(w))), dense @ w, rtol=1e-5, atol=1e-5)
    indptr = np.zeros(n_rows + 1, np.int64)
    indptr[1 : m.shape[0] + 1] = np.diff(m.indptr)
    np.testing.assert_array_equal(np.asarray(rows.indptr()), np.cumsum(indptr))
    masked = np.asarray(rows.mask(jnp.ones_like(jnp.asarray(dense))))
    np.testing.assert_array_equal(masked == -np.inf, dense != 0)


def test_from_scipy_refuses_fewer_rows():
    with pytest.raises(ValueError, match="smaller"):
        SparseRows.from_scipy(sp.eye(4, format="csr"), 2)


@given(matrices(), st.integers(1, 7))
@settings(max_examples=30, deadline=None)
def test_stacked_batches_equal_their_rows(case, batch):
    m, _ = case
    users = np.random.default_rng(batch).permutation(m.shape[0])
    batches = [users[i : i + batch] for i in range(0, len(users), batch)]
    stacked = SparseRows.stacked(m, batches, batch)
    assert stacked.row.shape[0] == len(batches)
    for j, b in enumerate(batches):
        dense = np.zeros((batch, m.shape[1]), np.float32)
        dense[: len(b)] = m[b].toarray()
        one = SparseRows(stacked.row[j], stacked.col[j], stacked.value[j], stacked.user[j], batch, m.shape[1])
        np.testing.assert_array_equal(np.asarray(one.dense()), dense)
        np.testing.assert_array_equal(np.asarray(one.indptr())[-1], m[b].nnz)
