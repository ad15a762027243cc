"""Batch planning: how many users to score at once in the memory there is."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax

from ..runtime import memory
from ..errors import ResourceError
from ..runtime.memory import human_bytes


MAX_BATCH = 4096
"""Largest batch the planner picks: larger ones gain nothing on the CPU and little on a GPU."""


def model_bytes(model: Any) -> int:
    """Bytes of a fitted model's arrays (the item-side operators every device holds)."""
    return int(sum(leaf.nbytes for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_array))))


def plan_batch_size(
    model: Any, n_rows: int, n_items: int, devices: int = 1, available: int | None = None, share: float = 0.6
) -> int:
    """The largest batch of the ``n_rows`` user rows (<= MAX_BATCH, a multiple of 64 from 64 up, or all rows)
    whose scoring fits in ``share`` of the available memory, with the model's arrays on each of ``devices``.

    Refuses (ResourceError) when not even one user fits, saying what is needed and available.
    """
    available = memory.available_bytes() if available is None else available
    per_user = model.scoring_bytes_per_user(n_items)
    fixed = model_bytes(model) * devices
    budget = share * available - fixed
    if budget < per_user * devices:
        raise ResourceError(
            f"scoring needs {human_bytes(fixed)} for the model's arrays on {devices} device(s) and "
            f"{human_bytes(per_user)} per user in a batch, but only {human_bytes(available)} is available "
            f"({share:.0%} is planned for); use fewer devices, a smaller SVD rank, or dense=false"
        )
    batch = int(min(MAX_BATCH, budget // (per_user * devices)))
    if batch >= n_rows:
        return max(n_rows, 1)  # one batch holds every row
    return batch if batch < 64 else batch - batch % 64


def check_batch_size(model: Any, batch_size: int, n_rows: int, n_items: int, devices: int = 1) -> None:
    """Refuse (ResourceError) a batch size whose scoring would not fit, before allocating."""
    per_user = model.scoring_bytes_per_user(n_items)
    needed = (model_bytes(model) + batch_size * per_user) * devices
    free = memory.available_bytes()
    if needed > free:
        fits = plan_batch_size(model, n_rows, n_items, devices, free)
        raise ResourceError(
            f"scoring batches of {batch_size:,} users needs {human_bytes(needed)} but only {human_bytes(free)} "
            f"is available; use batch_size={fits} (or batch_size=\"auto\")"
        )
