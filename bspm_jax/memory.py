"""How much memory a backend has free, and refusing allocations that cannot fit."""

from __future__ import annotations

import os
from typing import Any

import equinox as eqx
import jax

from .errors import ResourceError


def host_available_bytes() -> int:
    """Host memory available to new allocations (MemAvailable), or total RAM as fallback."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def available_bytes(device: jax.Device | None = None) -> int:
    """Free memory of ``device`` (default: the first JAX device); host memory on CPU."""
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return host_available_bytes()


def human_bytes(n_bytes: float) -> str:
    """Bytes as a short string in B, KiB, MiB, GiB or TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n_bytes) < 1024:
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TiB"


def require_bytes(needed: int, what: str, advice: str, device: jax.Device | None = None) -> None:
    """Raise ResourceError before allocating ``needed`` bytes that the device lacks."""
    free = available_bytes(device)
    if needed > free:
        raise ResourceError(
            f"{what} needs {human_bytes(needed)} but only {human_bytes(free)} is available; {advice}"
        )


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
    available = available_bytes() if available is None else available
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
    free = available_bytes()
    if needed > free:
        fits = plan_batch_size(model, n_rows, n_items, devices, free)
        raise ResourceError(
            f"scoring batches of {batch_size:,} users needs {human_bytes(needed)} but only {human_bytes(free)} "
            f"is available; use batch_size={fits} (or batch_size=\"auto\")"
        )
