"""The native CSR kernel against SciPy, and the operators on both sparse paths."""

import platform

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bspm_jax.runtime import native
from bspm_jax.errors import ConfigError
from bspm_jax.filtering.graph import build_graph
from bspm_jax.filtering.operators import Gram, SparseMatrix
from helpers import REPO


PATHS = native.isa_paths()
KERNELS = [*PATHS, "jax"]


def _cpu_flags() -> set[str]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return set()
    return set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))


def test_kernel_is_built_and_selected_on_cpu():
    # The README install compiles bspm_jax._native; on the CPU backend it must be in use,
    # with every path that the CPU's own flags (/proc/cpuinfo) say it can run.
    assert native.available() and PATHS[-1] == "baseline"
    flags = _cpu_flags()
    if platform.machine() == "x86_64" and flags:
        assert ("avx2" in PATHS) == ("avx2" in flags)
        assert ("avx512" in PATHS) == ({"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= flags)
    assert native.select() == PATHS[0]
    graph = build_graph(sp.random(30, 20, density=0.2, random_state=0, format="csr"), 3)
    assert graph.gram.factor.kernel == PATHS[0] and graph.ideal.kernel == PATHS[0]


def test_kernel_selection(monkeypatch):
    monkeypatch.delenv(native.KERNEL_ENV, raising=False)
    assert native.select("jax") is None and native.select("baseline") == "baseline"
    monkeypatch.setenv(native.KERNEL_ENV, "jax")
    assert native.select() is None  # auto follows the environment
    assert native.select("baseline") == "baseline"  # a named path wins over it
    assert not build_graph(sp.eye(4, format="csr"), None).gram.factor.native
    monkeypatch.setenv(native.KERNEL_ENV, "sse9")
    with pytest.raises(ConfigError, match=r"\$BSPM_KERNEL must be one of"):
        native.select()
    with pytest.raises(ConfigError, match="kernel must be one of"):
        native.select("fast")
    monkeypatch.setattr(native, "_load", lambda: ((), "bspm_jax._native is not built (test)"))
    monkeypatch.delenv(native.KERNEL_ENV)
    assert native.select() is None  # auto falls back to pure JAX
    with pytest.raises(ConfigError, match="cannot run here: bspm_jax._native is not built"):
        native.select("baseline")


def _sequential_product(a: np.ndarray, x: np.ndarray, scale: float, addends) -> np.ndarray:
    """The kernel's arithmetic in NumPy float32: for each (row, column), ``acc += a[r, q] * x[q]``
    over the stored q in order, each product and sum rounded, then the epilogue in order."""
    f = np.float32
    acc = np.zeros((x.shape[0], a.shape[0], x.shape[2]), f)
    rows = sp.csr_matrix(a) if sp.issparse(a) else None
    depth = a.shape[1]
    if rows is None:
        for q in range(depth):
            acc = acc + (a[None, :, q, None] * x[:, None, q, :])
    else:
        longest = int(np.diff(rows.indptr).max(initial=0))
        for t in range(longest):  # the t-th stored entry of every row that has one
            for r in range(rows.shape[0]):
                p = rows.indptr[r] + t
                if p < rows.indptr[r + 1]:
                    acc[:, r, :] = acc[:, r, :] + rows.data[p] * x[:, rows.indices[p], :]
    out = f(scale) * acc
    for b, z in addends:
        out = out + f(b) * z
    return out


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
    want = np.stack([a @ xc for xc in x.astype(np.float64)])
    for path in PATHS:
        got = native.csr_matmul(
            jnp.asarray(a.indptr.astype(np.int32)), jnp.asarray(a.indices.astype(np.int32)), jnp.asarray(a.data),
            jnp.asarray(x), path,
        )
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


# Coefficients 0 or of magnitude 2^-10..2: XLA's CPU threads flush subnormal floats to zero
# (NumPy does not), so the bit-exact emulation is asked only of products that stay normal.
COEFFICIENTS = st.one_of(st.just(0.0), st.floats(2**-10, 2, width=32), st.floats(-2, -(2**-10), width=32))


@given(csr_and_chunks(), COEFFICIENTS, st.lists(COEFFICIENTS, max_size=2))
@settings(max_examples=40, deadline=None)
def test_csr_matmul_epilogue_equals_numpy(case, scale, betas):
    a, x = case
    a.sort_indices()
    rng = np.random.default_rng(len(betas))
    zs = [rng.standard_normal((x.shape[0], a.shape[0], x.shape[2])).astype(np.float32) for _ in betas]
    addends = list(zip(betas, zs))
    want = scale * np.stack([a @ xc for xc in x.astype(np.float64)]) + sum(b * z for b, z in addends)
    exact = _sequential_product(a, x, scale, addends)
    for path in PATHS:
        got = np.asarray(native.csr_matmul(
            jnp.asarray(a.indptr.astype(np.int32)), jnp.asarray(a.indices.astype(np.int32)), jnp.asarray(a.data),
            jnp.asarray(x), path, scale, [(b, jnp.asarray(z)) for b, z in addends],
        ))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(got, exact, err_msg=path)  # every path: these very roundings


@st.composite
def dense_and_chunks(draw):
    m, n = draw(st.integers(1, 70)), draw(st.integers(1, 50))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, n)).astype(np.float32)
    width = draw(st.sampled_from([1, 5, 16, 32, 64, 72]))
    x = rng.standard_normal((draw(st.integers(1, 3)), n, width)).astype(np.float32)
    betas = draw(st.lists(COEFFICIENTS, max_size=2))
    zs = [rng.standard_normal((x.shape[0], m, width)).astype(np.float32) for _ in betas]
    return a, x, draw(COEFFICIENTS), list(zip(betas, zs))


@given(dense_and_chunks())
@settings(max_examples=40, deadline=None)
def test_dense_matmul_is_the_sequential_float32_sum(case):
    a, x, scale, addends = case
    want = scale * np.einsum("mn,cnw->cmw", a.astype(np.float64), x) + sum(b * z for b, z in addends)
    exact = _sequential_product(a, x, scale, addends)
    for path in PATHS:
        got = np.asarray(native.dense_matmul(jnp.asarray(a), jnp.asarray(x), path, scale,
                                             [(b, jnp.asarray(z)) for b, z in addends]))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(got, exact, err_msg=path)


def test_products_do_not_depend_on_the_chunk_width():
    # The same 64 columns cut into chunks of 16, 32 or 64 (or one of 64+8 padded): equal bits.
    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 448)).astype(np.float32)
    m = sp.random(300, 448, density=0.05, random_state=3, format="csr", dtype=np.float32)
    cols = rng.standard_normal((64, 448)).astype(np.float32)
    for path in PATHS:
        outs = []
        for width in (16, 32, 64, 72):
            x = native.to_chunks(jnp.asarray(cols), width)
            dense = native.from_chunks(native.dense_matmul(jnp.asarray(a), x, path), 64)
            csr = native.from_chunks(native.csr_matmul(jnp.asarray(m.indptr.astype(np.int32)),
                                                       jnp.asarray(m.indices.astype(np.int32)), jnp.asarray(m.data), x, path), 64)
            outs.append((np.asarray(dense), np.asarray(csr)))
        for dense, csr in outs[1:]:
            np.testing.assert_array_equal(dense, outs[0][0], err_msg=path)
            np.testing.assert_array_equal(csr, outs[0][1], err_msg=path)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n_addends", [0, 1, 2, 3])
def test_affine_on_chunks_equals_numpy(kernel, n_addends):
    from bspm_jax.filtering.operators import Identity, LowRank, OnChunks

    rng = np.random.default_rng(n_addends)
    m = sp.random(30, 25, density=0.2, random_state=1, format="csr", dtype=np.float32)
    left, right = rng.standard_normal((25, 3)).astype(np.float32), rng.standard_normal((3, 25)).astype(np.float32)
    gram = Gram(SparseMatrix.from_scipy(m, kernel=kernel))
    op = 0.7 * (gram + 0.3 * LowRank(left, right, native.select(kernel)) - Identity())  # GF-CF's blur field
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


# Batches around the compiled chunk widths (one row, padded, exactly 16/32/64 wide, several chunks):
# each new batch size compiles every product again, so examples draw values for a few sizes.
PRODUCT_BATCHES = [1, 7, 16, 32, 64, 90]


@given(st.sampled_from(PRODUCT_BATCHES), st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_sparse_products_native_equal_bcsr_and_numpy(batch, seed):
    m = sp.random(45, 60, density=0.1, random_state=seed, format="csr", dtype=np.float32)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 60)).astype(np.float32)
    u = rng.standard_normal((batch, 45)).astype(np.float32)
    dense = m.toarray().astype(np.float64)
    for kernel in KERNELS:
        s = SparseMatrix.from_scipy(m, kernel=kernel)
        assert s.kernel == native.select(kernel)
        np.testing.assert_allclose(np.asarray(s.rmatmul_t(jnp.asarray(x))), x @ dense.T, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(s.rmatmul(jnp.asarray(u))), u @ dense, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(Gram(s)(jnp.asarray(x))), x @ dense.T @ dense, rtol=1e-4, atol=1e-4)


def test_native_needs_float32():
    with pytest.raises(ConfigError, match="float32"):
        SparseMatrix.from_scipy(sp.eye(3, format="csr"), dtype=np.float64, kernel="baseline")
    assert SparseMatrix.from_scipy(sp.eye(3, format="csr"), dtype=np.float64).kernel is None  # auto: pure JAX


# (batch, items, k): batches on each chunk width and padded ones, one and several chunks, k = 1, k = all
# items, one item. Every new shape compiles both top-k paths again, so examples draw values for these.
RANKING_SHAPES = [(1, 1, 1), (1, 30, 7), (7, 9, 9), (16, 30, 1), (32, 2, 2), (33, 17, 5), (48, 30, 30), (64, 9, 4),
                  (80, 30, 12)]


@st.composite
def ranking_problems(draw):
    batch, n, k = draw(st.sampled_from(RANKING_SHAPES))
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
    from bspm_jax.ranking import masked_top_k
    from bspm_jax.filtering.operators import ChunkLayout
    from bspm_jax.filtering.rows import SparseRows

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
    # The whole pipeline (chunk layout, native products and top-k) on every path against the
    # BCSR/lax path; the native paths give the same bits.
    from bspm_jax import BSPM, evaluate
    from bspm_jax.data.dataset import Dataset
    from bspm_jax.ranking import rank_rows

    rng = np.random.default_rng(7)
    train = sp.csr_matrix((rng.random((90, 60)) < 0.12).astype(np.float32))
    test = sp.csr_matrix(((rng.random((90, 60)) < 0.08) & (train.toarray() == 0)).astype(np.float32))
    data = Dataset(train=train, test=test, name="random")
    models = {kernel: BSPM(rank=8, beta=0.3, kernel=kernel).fit(train) for kernel in KERNELS}
    assert models[PATHS[0]].graph.gram.factor.native and not models["jax"].graph.gram.factor.native
    ranked = {kernel: rank_rows(m, train, 10, 32) for kernel, m in models.items()}
    for path in PATHS[1:]:
        np.testing.assert_array_equal(ranked[path].scores, ranked[PATHS[0]].scores, err_msg=path)
        np.testing.assert_array_equal(ranked[path].items, ranked[PATHS[0]].items, err_msg=path)
    for batch in (16, 50):
        a = evaluate(models[PATHS[0]], data, ks=(5, 10), batch_size=batch)
        b = evaluate(models["jax"], data, ks=(5, 10), batch_size=batch)
        for key, value in a.metrics.items():
            assert value == pytest.approx(b.metrics[key], abs=1e-9), key


def test_install_goes_on_without_a_compiler(tmp_path):
    # setup.py with a compiler that always fails: exit 0, one line saying so, no kernel built.
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = REPO
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(root / name, tmp_path / name)
    for folder in ("bspm_jax", "csrc"):
        shutil.copytree(root / folder, tmp_path / folder, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = {**__import__("os").environ, "CC": "false", "CXX": "false"}
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("bspm_jax:")]
    assert len(lines) == 1 and "native CPU kernel was not built" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "bspm_jax").glob("_native*.so"))


def test_cli_reports_the_path_the_model_ran(tmp_path, monkeypatch):
    # `kernel` setting and $BSPM_KERNEL reach the model, and the JSON names the path it ran.
    import json

    from bspm_jax.cli import main

    monkeypatch.setenv(native.KERNEL_ENV, "baseline")
    results = {}
    for name, extra in (("env", []), ("setting", ["--set", "kernel=jax"])):
        out = tmp_path / f"{name}.json"
        assert main(["run", "--model", "lgcn-ide", "--quiet", "--json", str(out), *extra]) == 0
        results[name] = json.loads(out.read_text())
    assert results["env"]["environment"]["kernel"] == "baseline"
    assert results["setting"]["environment"]["kernel"] == "jax"
    assert results["setting"]["config"]["model"]["kernel"] == "jax"
    for key, value in results["env"]["metrics"].items():  # other sums: a near-tie may swap, no more
        assert value == pytest.approx(results["setting"]["metrics"][key], abs=1e-3), key
