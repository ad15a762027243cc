"""Top-k items per user row, with the user's seen items excluded; ties go to the lower index."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Iterable

import equinox as eqx
import jax
from jaxtyping import Array, Float, Int

from ..errors import ConfigError
from ..models.base import LayoutScores
from ..filtering.operators import RowLayout
from ..filtering.rows import SparseRows


@functools.partial(jax.jit, static_argnums=2)
def masked_top_k(
    scores: Float[Array, "b n"], seen: SparseRows, k: int
) -> tuple[Float[Array, "b k"], Int[Array, "b k"]]:
    """Top-k items per row with the ``seen`` items scored -inf; ties: lower index."""
    return RowLayout().top_k(scores, seen, k)


@eqx.filter_jit
def layout_top_k(scores: LayoutScores, seen: SparseRows, k: int) -> tuple[Float[Array, "b k"], Int[Array, "b k"]]:
    """Top-k items per row of ``scores`` with the ``seen`` items excluded; ties: lower index."""
    return scores.layout.top_k(scores.values, seen, k)


def check_k(k: object, n_items: int) -> int:
    """A cut-off K as an int in 1..n_items, or a ConfigError."""
    if not (isinstance(k, numbers.Integral) and not isinstance(k, bool) and 1 <= k <= n_items):
        raise ConfigError(f"k must be an integer in 1..{n_items}, got {k!r}")
    return int(k)


def check_cutoffs(ks: Iterable[object], n_items: int) -> tuple[int, ...]:
    """Cut-offs K, sorted and deduplicated, each in 1..n_items (a ConfigError naming them otherwise)."""
    ks = list(ks)
    if not ks or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and 1 <= k <= n_items for k in ks):
        raise ConfigError(f"every K must be an integer in 1..{n_items}, got {ks}")
    return tuple(sorted(set(int(k) for k in ks)))
