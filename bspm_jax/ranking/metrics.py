"""Top-K ranking metrics of the LightGCN / GF-CF / BSPM full-ranking protocol.

Inputs are the ranked item lists of a batch of users (already with each user's train
items excluded) and the users' test items. Ties in scores are broken by the lower item
index first (the order of ``jax.lax.top_k``). Per user with ``n`` test items and ``h``
hits in the top K:

- Recall@K = h / n;  Precision@K = h / K;  HitRate@K = [h > 0];
- NDCG@K = DCG / IDCG, DCG = sum_r hit_r / log2(r + 2), IDCG over min(n, K) hits;
- Coverage@K = share of catalogue items recommended to at least one user;
- Novelty@K = mean over recommended items of -log2(p_i), p_i = max(deg_i, 1) / n_train
  (an item never seen in train counts as seen once so that novelty stays finite).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError
from ..spectral import item_degrees

PER_USER = ("recall", "precision", "ndcg", "hit")
METRICS = (*PER_USER, "coverage", "novelty")
"""Every metric, as named in ``name@K`` keys."""


def check_metric(metric: object) -> tuple[str, int]:
    """A ``name@K`` metric key as (name, K), or a ConfigError listing the metrics."""
    name, _, cut = str(metric).partition("@")
    if not isinstance(metric, str) or name not in METRICS or not cut.isdigit() or int(cut) < 1:
        raise ConfigError(f"metric must be {', '.join(METRICS[:-1])} or {METRICS[-1]} @K (e.g. recall@20), got {metric!r}")
    return name, int(cut)


def item_self_information(train: sp.csr_matrix) -> np.ndarray:
    """-log2 of each item's share of the train interactions (degree floored at 1)."""
    deg = item_degrees(train)
    total = max(float(deg.sum()), 1.0)
    return -np.log2(np.maximum(deg, 1.0) / total)


def hit_matrix(topk: np.ndarray, valid: np.ndarray, test_rows: sp.csr_matrix) -> np.ndarray:
    """hits[u, r] = item topk[u, r] is a test item of user u (and a valid candidate)."""
    n_items = test_rows.shape[1]
    rows = np.repeat(np.arange(test_rows.shape[0], dtype=np.int64), np.diff(test_rows.indptr))
    truth = rows * n_items + test_rows.indices
    ranked = np.arange(topk.shape[0], dtype=np.int64)[:, None] * n_items + topk
    return np.isin(ranked, truth) & valid


def per_user_metrics(hits: np.ndarray, n_test: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Recall, precision, NDCG and hit rate at ``k`` for each user of the batch."""
    h = hits[:, :k]
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = h @ discount
    ideal = np.cumsum(discount)[np.minimum(n_test, k) - 1]
    n_hits = h.sum(axis=1)
    return {
        "recall": n_hits / n_test,
        "precision": n_hits / k,
        "ndcg": dcg / ideal,
        "hit": (n_hits > 0).astype(np.float64),
    }


@dataclasses.dataclass
class MetricAccumulator:
    """Sums per-user metrics over user batches; call ``result()`` at the end."""

    ks: tuple[int, ...]
    n_items: int
    self_information: np.ndarray
    n_users: int = 0
    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    recommended: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    novelty_sum: dict[int, float] = dataclasses.field(default_factory=dict)
    novelty_count: dict[int, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for k in self.ks:
            self.recommended[k] = np.zeros(self.n_items, dtype=bool)
            self.novelty_sum[k] = 0.0
            self.novelty_count[k] = 0
            for name in PER_USER:
                self.sums[f"{name}@{k}"] = 0.0

    def add(self, topk: np.ndarray, valid: np.ndarray, test_rows: sp.csr_matrix) -> None:
        """Add one batch: ``topk`` (b, max K) ranked items, ``valid`` marks real candidates."""
        n_test = np.diff(test_rows.indptr)
        if np.any(n_test == 0):
            raise ValueError("every evaluated user needs at least one test item")
        hits = hit_matrix(topk, valid, test_rows)
        self.n_users += len(n_test)
        for k in self.ks:
            for name, values in per_user_metrics(hits, n_test, k).items():
                self.sums[f"{name}@{k}"] += float(values.sum())
            items = topk[:, :k][valid[:, :k]]
            self.recommended[k][items] = True
            self.novelty_sum[k] += float(self.self_information[items].sum())
            self.novelty_count[k] += int(items.size)

    def result(self) -> dict[str, float]:
        """Means over users (coverage and novelty over the recommended items)."""
        out: dict[str, float] = {}
        for k in self.ks:
            for name in PER_USER:
                out[f"{name}@{k}"] = self.sums[f"{name}@{k}"] / max(self.n_users, 1)
            out[f"coverage@{k}"] = float(self.recommended[k].mean())
            out[f"novelty@{k}"] = self.novelty_sum[k] / max(self.novelty_count[k], 1)
        return out
