"""The native CSR kernel against SciPy, and the operators on both sparse paths."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bspm_jax import native
from bspm_jax.errors import ConfigError
from bspm_jax.graph import build_graph
from bspm_jax.operators import Gram, SparseMatrix


def test_kernel_is_built_and_selected_on_cpu():
    # The README install compiles bspm_jax._native; on the CPU backend it must be in use.
    assert native.available()
    assert build_graph(sp.random(30, 20, density=0.2, random_state=0, format="csr"), None).gram.factor.native


@st.composite
def csr_and_chunks(draw):
    m, n = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    density = draw(st.floats(0.0, 0.6))
    seed = draw(st.integers(0, 2**16))
    a = sp.random(m, n, density=density, random_state=seed, format="csr", dtype=np.float32)
    a.data = (a.data - 0.5).astype(np.float32)  # negative values too
    chunks = draw(st.integers(1, 3))
    width = draw(st.sampled_from([1, 3, 8, 16, 17, 32, 64, 70]))
    x = np.random.default_rng(seed).standard_normal((chunks, n, width)).astype(np.float32)
    return a, x


@given(csr_and_chunks())
@settings(max_examples=60, deadline=None)
def test_csr_matmul_equals_scipy(case):
    a, x = case
    a.sort_indices()
    got = native.csr_matmul(
        jnp.asarray(a.indptr.astype(np.int32)), jnp.asarray(a.indices.astype(np.int32)), jnp.asarray(a.data), jnp.asarray(x)
    )
    want = np.stack([a @ xc for xc in x.astype(np.float64)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@given(csr_and_chunks(), st.floats(-2, 2), st.lists(st.floats(-2, 2), max_size=2))
@settings(max_examples=40, deadline=None)
def test_csr_matmul_epilogue_equals_numpy(case, scale, betas):
    a, x = case
    a.sort_indices()
    rng = np.random.default_rng(len(betas))
    zs = [rng.standard_normal((x.shape[0], a.shape[0], x.shape[2])).astype(np.float32) for _ in betas]
    got = native.csr_matmul(
        jnp.asarray(a.indptr.astype(np.int32)), jnp.asarray(a.indices.astype(np.int32)), jnp.asarray(a.data),
        jnp.asarray(x), scale, [(b, jnp.asarray(z)) for b, z in zip(betas, zs)],
    )
    want = scale * np.stack([a @ xc for xc in x.astype(np.float64)]) + sum(b * z for b, z in zip(betas, zs))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("native_flag", [True, False])
@pytest.mark.parametrize("n_addends", [0, 1, 2, 3])
def test_affine_on_chunks_equals_numpy(native_flag, n_addends):
    from bspm_jax.operators import Identity, LowRank, OnChunks

    rng = np.random.default_rng(n_addends)
    m = sp.random(30, 25, density=0.2, random_state=1, format="csr", dtype=np.float32)
    left, right = rng.standard_normal((25, 3)).astype(np.float32), rng.standard_normal((3, 25)).astype(np.float32)
    gram = Gram(SparseMatrix.from_scipy(m, native=native_flag))
    op = 0.7 * (gram + 0.3 * LowRank(left, right) - Identity())  # GF-CF's blur field
    dense_op = 0.7 * (m.toarray().T @ m.toarray() + 0.3 * left @ right - np.eye(25))
    x = rng.standard_normal((2, 25, 8)).astype(np.float32)
    zs = [rng.standard_normal(x.shape).astype(np.float32) for _ in range(n_addends)]
    addends = tuple((0.5 + j, jnp.asarray(z)) for j, z in enumerate(zs))
    # x itself as an addend folds into the identity term
    xj = jnp.asarray(x)
    got = OnChunks(op).affine(xj, -0.4, ((2.0, xj), *addends))
    want = -0.4 * np.einsum("cnw,nm->cmw", x, dense_op) + 2.0 * x + sum((0.5 + j) * z for j, z in enumerate(zs))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
    rows = jnp.asarray(x[0].T)
    got_rows = op.affine(rows, -0.4, ((2.0, rows),))
    np.testing.assert_allclose(np.asarray(got_rows), -0.4 * x[0].T @ dense_op + 2.0 * x[0].T, rtol=1e-4, atol=1e-4)
    assert [c for c, _ in op.terms()] == pytest.approx([0.7, 0.21, -0.7])


@pytest.mark.parametrize("batch", [1, 7, 8, 24, 64, 100, 130])
def test_chunks_round_trip(batch):
    x = np.random.default_rng(batch).standard_normal((batch, 11)).astype(np.float32)
    width = native.chunk_width(batch)
    chunks = native.to_chunks(jnp.asarray(x), width)
    assert chunks.shape == (-(-batch // width), 11, width)
    np.testing.assert_array_equal(np.asarray(chunks[0, :, 0]), x[0])
    np.testing.assert_array_equal(np.asarray(native.from_chunks(chunks, batch)), x)


@given(st.integers(1, 90), st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_sparse_products_native_equal_bcsr_and_numpy(batch, seed):
    m = sp.random(45, 60, density=0.1, random_state=seed, format="csr", dtype=np.float32)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 60)).astype(np.float32)
    u = rng.standard_normal((batch, 45)).astype(np.float32)
    dense = m.toarray().astype(np.float64)
    for flag in (True, False):
        s = SparseMatrix.from_scipy(m, native=flag)
        assert s.native is flag
        np.testing.assert_allclose(np.asarray(s.rmatmul_t(jnp.asarray(x))), x @ dense.T, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(s.rmatmul(jnp.asarray(u))), u @ dense, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(Gram(s)(jnp.asarray(x))), x @ dense.T @ dense, rtol=1e-4, atol=1e-4)


def test_native_needs_float32():
    with pytest.raises(ConfigError, match="float32"):
        SparseMatrix.from_scipy(sp.eye(3, format="csr"), dtype=np.float64, native=True)


@st.composite
def ranking_problems(draw):
    batch = draw(st.integers(1, 80))
    n = draw(st.integers(1, 30))
    k = draw(st.integers(1, n))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    ties = draw(st.booleans())
    scores = rng.integers(-2, 3, (batch, n)) if ties else rng.standard_normal((batch, n))
    scores = scores.astype(np.float32)
    if draw(st.booleans()):
        scores[rng.random((batch, n)) < 0.1] = -np.inf
    seen = sp.csr_matrix((rng.random((batch, n)) < draw(st.floats(0.0, 0.9))).astype(np.float32))
    return scores, seen, k


@given(ranking_problems())
@settings(max_examples=80, deadline=None)
def test_top_k_on_chunks_equals_lax_top_k_on_masked_rows(problem):
    from bspm_jax.models.base import masked_top_k
    from bspm_jax.operators import ChunkLayout
    from bspm_jax.rows import SparseRows

    scores, seen, k = problem
    batch = scores.shape[0]
    rows = SparseRows.from_scipy(seen)
    layout = ChunkLayout(native.chunk_width(batch))
    values, items = layout.top_k(layout.enter(jnp.asarray(scores)), rows, k)
    want_values, want_items = masked_top_k(jnp.asarray(scores), rows, k)
    # brute force: sort by (-score, index) with seen items at -inf
    masked = np.where(seen.toarray() > 0, -np.inf, scores)
    brute = np.array([sorted(range(scores.shape[1]), key=lambda i: (-masked[u, i], i))[:k] for u in range(batch)])
    np.testing.assert_array_equal(np.asarray(items), brute)
    np.testing.assert_array_equal(np.asarray(want_items), brute)
    np.testing.assert_array_equal(np.asarray(values), np.take_along_axis(masked, brute, axis=1))


def test_evaluation_native_equals_pure_jax_path():
    # The whole pipeline (chunk layout, native products and top-k) against the BCSR/lax path.
    import dataclasses

    from bspm_jax import BSPM, evaluate
    from bspm_jax.data.dataset import Dataset

    rng = np.random.default_rng(7)
    train = sp.csr_matrix((rng.random((90, 60)) < 0.12).astype(np.float32))
    test = sp.csr_matrix(((rng.random((90, 60)) < 0.08) & (train.toarray() == 0)).astype(np.float32))
    data = Dataset(train=train, test=test, name="random")
    model = BSPM(rank=8, beta=0.3).fit(train)
    assert model.graph.gram.factor.native
    fallback = dataclasses.replace(model, graph=build_graph(train, 8, native=False))
    assert not fallback.graph.gram.factor.native
    for batch in (16, 50):
        a = evaluate(model, data, ks=(5, 10), batch_size=batch)
        b = evaluate(fallback, data, ks=(5, 10), batch_size=batch)
        for key, value in a.metrics.items():
            assert value == pytest.approx(b.metrics[key], abs=1e-9), key
