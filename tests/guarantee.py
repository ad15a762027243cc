"""The README's reproducibility guarantee as checks shared by the tests."""

from __future__ import annotations

import numpy as np

RTOL = 1e-6
"""Scores of the pure-JAX path agree within this relative tolerance across batch sizes and devices."""
CROSS_RTOL = 1e-5
"""The pure-JAX path and the native paths sum in different orders: they agree within this."""


def assert_bit_identical(a_items, a_scores, b_items, b_scores, msg: str = "") -> None:
    np.testing.assert_array_equal(np.asarray(a_items), np.asarray(b_items), err_msg=msg)
    np.testing.assert_array_equal(np.asarray(a_scores), np.asarray(b_scores), err_msg=msg)


def assert_top_k_within(a_items, a_scores, b_items, b_scores, rtol: float = RTOL, msg: str = "") -> None:
    """Top-k lists (scores descending) agree up to ``rtol``: rank by rank the scores are within
    ``rtol`` relative, and where the items differ, each item's two scores (or, for an item
    in one list only, its score and the other list's last score) are within ``rtol``: a near-tie."""
    a_items, b_items = np.asarray(a_items), np.asarray(b_items)
    a_scores, b_scores = np.asarray(a_scores, np.float64), np.asarray(b_scores, np.float64)
    finite = np.isfinite(a_scores)
    np.testing.assert_array_equal(finite, np.isfinite(b_scores), err_msg=msg)
    scale = np.maximum(np.abs(a_scores), np.abs(b_scores))
    gap = np.where(finite, np.abs(a_scores - b_scores), 0.0)
    assert np.all(gap <= rtol * np.where(finite, scale, 0.0)), f"{msg}: scores differ by up to {np.max(gap / np.where(finite, scale, 1)):.2e} relative"
    for u, r in zip(*np.nonzero(a_items != b_items)):
        if not finite[u, r]:
            continue  # no candidate left at this rank: the item is arbitrary
        where = np.nonzero(b_items[u] == a_items[u, r])[0]
        other = b_scores[u, where[0]] if where.size else b_scores[u, -1]
        tie = abs(a_scores[u, r] - other) <= rtol * max(abs(a_scores[u, r]), abs(other))
        assert tie, f"{msg}: user {u} rank {r}: item {a_items[u, r]} scored {a_scores[u, r]} and {other}: no near-tie"
