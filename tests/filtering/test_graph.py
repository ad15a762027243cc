"""Pre-processing guards: the dense opt-in refuses sizes that do not fit."""

import numpy as np
import pytest
import scipy.sparse as sp

import bspm_jax.runtime.memory
from bspm_jax import BSPM, ResourceError
from bspm_jax.filtering.graph import build_graph
from bspm_jax.filtering.operators import Dense, Gram, dense_array


def test_dense_filter_refuses_when_memory_is_short(monkeypatch):
    monkeypatch.setattr(bspm_jax.runtime.memory, "available_bytes", lambda device=None: 10_000)
    r = sp.csr_matrix(np.eye(60, 80, dtype=np.float32))
    with pytest.raises(ResourceError) as err:
        BSPM(rank=4, dense=True).fit(r)
    message = str(err.value)
    # 80 x 80 float32, twice (sparse product and dense copy) = 51,200 bytes
    assert "80 items needs 50.0 KiB but only 9.8 KiB is available" in message and "dense=False" in message


def test_default_operator_is_matrix_free_and_dense_opt_in_agrees():
    rng = np.random.default_rng(3)
    r = sp.csr_matrix((rng.random((30, 20)) < 0.3).astype(np.float32))
    sparse_graph = build_graph(r, None)
    dense_graph = build_graph(r, None, dense=True)
    assert isinstance(sparse_graph.gram, Gram) and isinstance(dense_graph.gram, Dense)
    np.testing.assert_allclose(dense_array(sparse_graph.gram, 20), dense_array(dense_graph.gram, 20), atol=1e-6)
