"""Independent NumPy oracles and small fixtures shared by the tests: explicit ODE steppers, toy train matrices, pytree equality."""

import equinox as eqx
import jax
import numpy as np
import scipy.sparse as sp


def euler_states(A, y0, T, K):
    """Explicit Euler for dY/dt = Y A: the K states at T/K, ..., T."""
    tau, y, out = T / K, y0, []
    for _ in range(K):
        y = y + tau * (y @ A)
        out.append(y)
    return np.stack(out)


def rk4_states(A, y0, T, K):
    """Classic RK4 for dY/dt = Y A: the K states at T/K, ..., T."""
    h, y, out = T / K, y0, []
    for _ in range(K):
        k1 = y @ A
        k2 = (y + h / 2 * k1) @ A
        k3 = (y + h / 2 * k2) @ A
        k4 = (y + h * k3) @ A
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(y)
    return np.stack(out)


def toy(seed: int = 0, n_users: int = 30, n_items: int = 20, p: float = 0.25) -> sp.csr_matrix:
    """A random binary train matrix in which every user has at least one item (float32 CSR)."""
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < p
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # every user has an item
    return sp.csr_matrix(dense.astype(np.float32))


def leaves(tree: object) -> list[np.ndarray]:
    """The array leaves of a pytree as NumPy arrays."""
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def same(a: object, b: object) -> bool:
    """Whether two pytrees hold bit-identical arrays of the same dtypes."""
    la, lb = leaves(a), leaves(b)
    return len(la) == len(lb) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(la, lb))


class Interrupt(Exception):
    """Raised by :func:`resume_matches_whole`'s validator to stop a run mid-way (e.g. Ctrl-C during a validation)."""


def resume_matches_whole(model, train_matrix, settings, probe, folder, stop_at: int = 5, resumed_from: int = 4):
    """Train once whole; again with checkpoints in ``folder``, interrupted at the ``stop_at``-th validation; then
    resume from ``folder``. Asserts the resumed run's parameters are bit-identical to the whole run's and its
    loss history equal; returns (whole, resumed). ``probe(model)`` is the validation metric (deterministic)."""
    import pytest
    from bspm_jax.training import train

    def validator(stop=None):
        calls = []

        def validate(m):
            calls.append(1)
            if len(calls) == stop:
                raise Interrupt
            return {"recall@20": float(probe(m))}
        return validate

    whole = train(model, train_matrix, settings, validator())
    with pytest.raises(Interrupt):
        train(model, train_matrix, settings, validator(stop_at), checkpoint_dir=folder)
    resumed = train(model, train_matrix, settings, validator(), checkpoint_dir=folder, resume=True)
    assert resumed.resumed_from == resumed_from and same(resumed.model, whole.model)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    return whole, resumed
