"""Reference implementations of BSPM-EM/LM to compare bspm_jax's speed and metrics against.

- ``ScipyBSPM``: plain NumPy/SciPy of the same math: P~ applied as factored sparse products
  ``(X R~^T) R~``, ARPACK SVD, the ideal filter kept as its factors.
- ``OfficialBSPM``: a transcription of the official code's approach: a dense
  n_items x n_items item-item filter ``P~`` (and a dense ideal filter), the same ODE formulas.

Both score user rows (dense float32 NumPy) and are evaluated by ``evaluate_numpy`` with the
library's metric code and the same tie rule (lower item index first).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from bspm_jax.data import Dataset
from bspm_jax.spectral import inv_sqrt, normalize
from bspm_jax.ranking.metrics import MetricAccumulator, item_self_information

Apply = Callable[[np.ndarray], np.ndarray]


def step_states(apply: Apply, y0: np.ndarray, T: float, K: int, solver: str) -> np.ndarray:
    """End state of K Euler or classic RK4 steps of dY/dt = apply(Y) over [0, T]."""
    h, y = T / K, y0
    for _ in range(K):
        if solver == "euler":
            y = y + h * apply(y)
        else:
            k1 = apply(y)
            k2 = apply(y + h / 2 * k1)
            k3 = apply(y + h / 2 * k2)
            k4 = apply(y + h * k3)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


@dataclasses.dataclass
class _Base:
    """Heat blur (Euler, T_b=1, 1 step), ideal filter (Euler, 1 step), sharpening, EM or LM."""

    rank: int = 448
    beta: float = 0.2
    T_s: float = 2.5
    K_s: int = 1
    solver: str = "rk4"
    merge: str = "early"

    def gram(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def ideal(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score(self, rows: np.ndarray) -> np.ndarray:
        blur = rows + (self.gram(rows) - rows)  # one Euler step of B(P~ - I), T_b = 1
        idl = self.beta * (rows + (self.ideal(rows) - rows))
        s0 = blur + idl if self.merge == "early" else blur
        out = step_states(lambda y: -self.gram(y), s0, self.T_s, self.K_s, self.solver)
        return out if self.merge == "early" else out + idl


@dataclasses.dataclass
class ScipyBSPM(_Base):
    """Factored sparse products in SciPy; ARPACK SVD."""

    def fit(self, train: sp.csr_matrix) -> ScipyBSPM:
        norm, _, deg = normalize(train)
        self.r = norm.astype(np.float32).tocsr()
        self.rt = self.r.T.tocsr()
        _, _, vt = svds(norm, k=self.rank, solver="arpack", random_state=0)
        self.left = (inv_sqrt(deg)[:, None] * vt.T).astype(np.float32)
        self.right = (vt * np.sqrt(deg)[None, :]).astype(np.float32)
        return self

    def gram(self, x: np.ndarray) -> np.ndarray:
        return np.asarray((self.rt @ (self.r @ x.T)).T)

    def ideal(self, x: np.ndarray) -> np.ndarray:
        return (x @ self.left) @ self.right


@dataclasses.dataclass
class OfficialBSPM(_Base):
    """The official approach: dense item-item matrices (n_items^2 floats each)."""

    def fit(self, train: sp.csr_matrix) -> OfficialBSPM:
        norm, _, deg = normalize(train)
        norm32 = norm.astype(np.float32)
        self.p = (norm32.T @ norm32).toarray()  # float32 throughout: 2 n_items^2 floats in all
        _, _, vt = svds(norm, k=self.rank, solver="arpack", random_state=0)
        left = (inv_sqrt(deg)[:, None] * vt.T).astype(np.float32)
        self.m = left @ (vt * np.sqrt(deg)[None, :]).astype(np.float32)
        return self

    def gram(self, x: np.ndarray) -> np.ndarray:
        return x @ self.p

    def ideal(self, x: np.ndarray) -> np.ndarray:
        return x @ self.m


def top_k_numpy(scores: np.ndarray, seen: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k per row with seen items excluded; ties by lower index (stable sort)."""
    masked = np.where(seen > 0, -np.inf, scores)
    part = np.argpartition(-masked, k, axis=1)[:, : k + 1]
    cand = np.sort(part, axis=1)  # ascending index, so the stable sort keeps lower index first
    order = np.argsort(-np.take_along_axis(masked, cand, axis=1), axis=1, kind="stable")[:, :k]
    items = np.take_along_axis(cand, order, axis=1)
    return items, np.take_along_axis(masked, items, axis=1)


def evaluate_numpy(
    model: _Base, data: Dataset, k: int = 20, batch_size: int = 1024, max_users: int | None = None
) -> dict:
    """Full-ranking Recall/NDCG@k of a NumPy baseline, with inference and top-k timed apart.

    ``max_users`` scores only the first users with test items (for baselines too slow to
    run on all of them; the caller extrapolates the times).
    """
    acc = MetricAccumulator((k,), data.n_items, item_self_information(data.train))
    users = data.test_users
    n_all = len(users)
    users = users[:max_users]
    t_inf = t_top = 0.0
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        rows = data.train[batch].toarray().astype(np.float32)
        t0 = time.perf_counter()
        scores = model.score(rows)
        t1 = time.perf_counter()
        items, values = top_k_numpy(scores, rows, k)
        acc.add(items, np.isfinite(values), data.test[batch])
        t_inf += t1 - t0
        t_top += time.perf_counter() - t1
    return {"metrics": acc.result(), "inference_s": t_inf, "topk_metrics_s": t_top,
            "users_scored": len(users), "users_all": n_all}
