"""Matrices with unsorted column indices (what SciPy's products and sums return) give the same results as their
sorted form, and the library never changes the caller's matrix.

Regression: ``csr_matrix(m, dtype=float32)`` shares ``m.indices``; sorting the copy's indices in place
left a float64 ``m`` with sorted indices and unsorted values, so a cached normalised matrix was corrupted by
the first SVD's products and every later product, SVD and score on it was wrong.
"""

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bspm_jax import ChebyCF
from bspm_jax.spectral import SpectrumCache
from bspm_jax.data import canonical_csr
from bspm_jax.filtering.operators import SparseMatrix
from bspm_jax.spectral import normalize
from bspm_jax.spectral.gram import DeviceProducts, ScipyProducts


def _unsorted(m: sp.csr_matrix, seed: int) -> sp.csr_matrix:
    """The same matrix with each row's entries stored in a random order (float64)."""
    m = sp.csr_matrix(m, dtype=np.float64, copy=True)
    m.sort_indices()
    rng = np.random.default_rng(seed)
    order = np.concatenate([m.indptr[i] + rng.permutation(m.indptr[i + 1] - m.indptr[i]) for i in range(m.shape[0])])
    return sp.csr_matrix((m.data[order], m.indices[order], m.indptr.copy()), shape=m.shape)


def _snapshot(m: sp.csr_matrix) -> tuple[np.ndarray, ...]:
    return m.data.copy(), m.indices.copy(), m.indptr.copy()


def _same_arrays(m: sp.csr_matrix, snapshot: tuple[np.ndarray, ...]) -> None:
    for now, before in zip((m.data, m.indices, m.indptr), snapshot):
        np.testing.assert_array_equal(now, before)


@st.composite
def unsorted_matrices(draw):
    rows, cols = draw(st.integers(2, 30)), draw(st.integers(2, 30))
    seed = draw(st.integers(0, 2**16))
    m = sp.random(rows, cols, density=draw(st.floats(0.1, 0.6)), random_state=seed, format="csr")
    return _unsorted(m, seed)


@given(unsorted_matrices(), st.sampled_from([None, np.float32, np.float64]))
@settings(max_examples=40, deadline=None)
def test_canonical_csr_is_a_sorted_copy_of_the_same_matrix(m, dtype):
    before = _snapshot(m)
    out = canonical_csr(m, dtype)
    _same_arrays(m, before)
    for a, b in ((out.data, m.data), (out.indices, m.indices), (out.indptr, m.indptr)):
        assert not np.shares_memory(a, b)
    np.testing.assert_allclose(out.toarray(), m.toarray(), rtol=1e-6)
    assert all(np.all(np.diff(out.indices[out.indptr[i]:out.indptr[i + 1]]) > 0) for i in range(out.shape[0]))
    assert out.dtype == (m.dtype if dtype is None else dtype)


@given(unsorted_matrices())
@settings(max_examples=25, deadline=None)
def test_products_of_an_unsorted_float64_matrix_match_scipy_and_leave_it_unchanged(m):
    before = _snapshot(m)
    device, reference = DeviceProducts(m), ScipyProducts(m)
    sparse = SparseMatrix.from_scipy(m)
    _same_arrays(m, before)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, m.shape[1])), rng.standard_normal((3, m.shape[0]))
    dense = m.toarray()
    np.testing.assert_allclose(device.right(x), x @ dense.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(device.left(y), y @ dense, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(device.gram(y), y @ dense @ dense.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(reference.gram(y), y @ dense @ dense.T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(sparse.matrix.todense()), dense, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(sparse.transpose.todense()), dense.T, rtol=1e-6)
    _same_arrays(m, before)


def test_a_model_fitted_on_an_unsorted_train_matrix_scores_as_on_the_sorted_one():
    rng = np.random.default_rng(3)
    train = sp.csr_matrix((rng.random((60, 45)) < 0.15).astype(np.float64))
    train[np.arange(60), rng.integers(0, 45, 60)] = 1.0  # no empty user
    train = sp.csr_matrix(train)
    unsorted = _unsorted(train, 1)
    norm, _, _ = normalize(unsorted)
    cache = SpectrumCache()
    before = _snapshot(cache.normalized(unsorted)[0])
    model = ChebyCF(K=4, eta=8, alpha=0.3, beta=0.3)
    first = model.fit(unsorted, cache)
    again = ChebyCF(K=4, eta=8, alpha=0.3, beta=0.2).fit(unsorted, cache)  # reuses the cached normalisation
    _same_arrays(cache.normalized(unsorted)[0], before)
    rows = jnp.asarray(train.toarray(), jnp.float32)
    sorted_train = sp.csr_matrix(train.toarray())
    for fitted, beta in ((first, 0.3), (again, 0.2)):
        expected = ChebyCF(K=4, eta=8, alpha=0.3, beta=beta).fit(sorted_train).score(rows)
        np.testing.assert_allclose(np.asarray(fitted.score(rows)), np.asarray(expected), rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(norm.toarray(), normalize(train)[0].toarray(), rtol=1e-12)
