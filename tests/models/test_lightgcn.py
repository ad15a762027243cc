"""LightGCN: propagation against dense NumPy on the bipartite graph, the BPR + L2 loss and its gradient,
scoring, determinism and resume of training, save/load, refusals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from bspm_jax import LightGCN, load_model, make_model
from bspm_jax.errors import ConfigError
from bspm_jax.training import BPRLoss, TrainSettings, train

KERNELS = ("auto", "jax")


def toy(seed: int = 0, n_users: int = 12, n_items: int = 9, p: float = 0.3) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < p
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    dense[:, 4] = False  # an item nobody has seen: degree 0
    return sp.csr_matrix(dense.astype(np.float32))


def numpy_propagation(R: np.ndarray, users: np.ndarray, items: np.ndarray, layers: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over k = 0..K of A~^k E on the dense (n_users + n_items)^2 bipartite adjacency, A~ = D^-1/2 A D^-1/2."""
    n_u, n_i = R.shape
    A = np.zeros((n_u + n_i, n_u + n_i))
    A[:n_u, n_u:], A[n_u:, :n_u] = R, R.T
    d = A.sum(1)
    inv = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
    A_norm = inv[:, None] * A * inv[None, :]
    E = np.concatenate([users, items]).astype(np.float64)
    total, layer = E.copy(), E
    for _ in range(layers):
        layer = A_norm @ layer
        total += layer
    total /= layers + 1
    return total[:n_u], total[n_u:]


def fitted(R: sp.csr_matrix, kernel: str = "auto", **settings) -> LightGCN:
    return LightGCN(**{"dim": 5, "layers": 3, "init_scale": 0.5, "kernel": kernel, **settings}).init(jax.random.key(3), R)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("layers", [0, 1, 3])
def test_propagation_matches_dense_numpy_on_the_bipartite_graph(kernel, layers):
    R = toy()
    model = fitted(R, kernel, layers=layers)
    assert model.graph.native == (kernel == "auto" and model.graph.kernel is not None)
    want_u, want_i = numpy_propagation(R.toarray(), np.asarray(model.user_embedding), np.asarray(model.item_embedding), layers)
    got_u, got_i = model.propagate()
    np.testing.assert_allclose(np.asarray(got_u), want_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got_i), want_i, rtol=1e-5, atol=1e-6)
    scores = np.asarray(model.score_users(jnp.arange(R.shape[0])))
    np.testing.assert_allclose(scores, want_u @ want_i.T, rtol=1e-4, atol=1e-5)


def test_bpr_loss_is_the_numpy_transcription_with_l2_on_layer_zero():
    R = toy()
    model = fitted(R, reg=0.3)
    users, pos, neg = np.array([0, 3, 3, 7]), np.array([1, 2, 0, 5]), np.array([4, 4, 8, 1])
    eu, ei = numpy_propagation(R.toarray(), np.asarray(model.user_embedding), np.asarray(model.item_embedding), 3)
    margin = np.sum(eu[users] * ei[pos], 1) - np.sum(eu[users] * ei[neg], 1)
    U0, I0 = np.asarray(model.user_embedding, np.float64), np.asarray(model.item_embedding, np.float64)
    l2 = 0.5 * 0.3 * np.mean(np.sum(U0[users] ** 2, 1) + np.sum(I0[pos] ** 2, 1) + np.sum(I0[neg] ** 2, 1))
    want = np.mean(np.log1p(np.exp(-margin))) + l2
    got = BPRLoss()(model, tuple(jnp.asarray(a) for a in (users, pos, neg)), jax.random.key(0), jnp.asarray(0))
    assert float(got) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
def test_gradient_through_the_sparse_propagation_matches_finite_differences(kernel):
    R = toy(n_users=6, n_items=5)
    model = fitted(R, kernel, dim=3, reg=0.1)
    batch = tuple(jnp.asarray(a) for a in (np.array([0, 2, 5]), np.array([1, 3, 0]), np.array([4, 4, 2])))
    loss = BPRLoss()

    @jax.jit  # compiled once, as training compiles it (eager, every call would dispatch the propagation op by op)
    def f(users, items):
        import dataclasses

        return loss(dataclasses.replace(model, user_embedding=users, item_embedding=items), batch, jax.random.key(0),
                    jnp.asarray(0))

    gu, gi = jax.grad(f, argnums=(0, 1))(model.user_embedding, model.item_embedding)
    rng = np.random.default_rng(0)
    for which, grad in ((0, gu), (1, gi)):
        base = [np.asarray(model.user_embedding, np.float64), np.asarray(model.item_embedding, np.float64)]
        direction = rng.standard_normal(base[which].shape)
        h = 1e-2
        plus, minus = [b.copy() for b in base], [b.copy() for b in base]
        plus[which] += h * direction
        minus[which] -= h * direction
        fd = (float(f(*map(jnp.asarray, map(np.float32, plus)))) - float(f(*map(jnp.asarray, map(np.float32, minus))))) / (2 * h)
        assert float(np.sum(np.asarray(grad) * direction)) == pytest.approx(fd, rel=2e-3, abs=1e-5)


def test_the_graph_is_frozen_training_is_bit_identical_for_a_seed_and_resumes_exactly(tmp_path):
    R = toy(1, n_users=20, n_items=14)
    settings = TrainSettings(epochs=4, lr=0.05, batch_size=16, eval_every=1, seed=2, checkpoint_every=2)
    model = LightGCN(dim=4, layers=2)
    a = train(model, R, settings)
    b = train(model, R, settings)
    leaves = lambda m: [np.asarray(x) for x in jax.tree.leaves(m) if isinstance(x, jax.Array)]
    assert all(np.array_equal(x, y) for x, y in zip(leaves(a.model), leaves(b.model)))
    init = model.init(jax.random.fold_in(jax.random.key(2), 0), R)
    assert np.array_equal(np.asarray(a.model.graph.matrix.data), np.asarray(init.graph.matrix.data))
    assert not np.array_equal(np.asarray(a.model.user_embedding), np.asarray(init.user_embedding))
    first = train(model, R, settings, checkpoint_dir=tmp_path, time_limit=1e-9)  # stops after epoch 1, checkpointed
    assert first.interrupted and first.epochs_run == 1 and not first.stopped_early
    rest = train(model, R, settings, checkpoint_dir=tmp_path, resume=True)
    assert rest.resumed_from == 1 and not rest.interrupted
    assert all(np.array_equal(x, y) for x, y in zip(leaves(rest.model), leaves(a.model)))


def test_save_and_load_give_identical_scores(tmp_path):
    R = toy()
    model = train(LightGCN(dim=4, layers=2), R, TrainSettings(epochs=2, batch_size=16, seed=0)).model
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    users = jnp.arange(R.shape[0])
    assert np.array_equal(np.asarray(loaded.score_users(users)), np.asarray(model.score_users(users)))


@pytest.mark.parametrize("settings, message", [
    ({"dim": 0}, "dim"), ({"layers": -1}, "layers"), ({"reg": -1.0}, "reg"), ({"init_scale": 0.0}, "init_scale"),
    ({"kernel": "gpu"}, "kernel"), ({"layers": 1.5}, "layers"),
])
def test_impossible_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        make_model("lightgcn", **settings)
