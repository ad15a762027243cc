"""Scoring stacked batches on one device (``lax.map``) or split across the devices of a mesh."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Float, Int

from ..errors import ConfigError
from ..models.base import AbstractRecommender
from ..filtering.rows import SparseRows
from .progress import BatchTicker
from .topk import layout_top_k


def _map_top_k(
    model: AbstractRecommender, rows: SparseRows, k: int, seen: SparseRows, ticket: Int[Array, ""] | None
) -> tuple[Float[Array, "batches b k"], Int[Array, "batches b k"], dict[str, Any]]:
    """``lax.map`` over stacked batches: scores, top-k with ``seen`` excluded, solver statistics."""

    def one(xs: tuple[SparseRows, SparseRows]) -> tuple[Array, Array, dict[str, Any]]:
        x, excluded = xs
        scores, stats = model.layout_scores_with_stats(x)
        values, items = layout_top_k(scores, excluded, k)
        if ticket is not None:
            jax.debug.callback(BatchTicker.tick, ticket, values[:1, :1])  # runs once the batch's top-k exists
        return values, items, stats

    return jax.lax.map(one, (rows, seen))


@eqx.filter_jit
def batched_top_k(
    model: AbstractRecommender,
    rows: SparseRows,
    k: int,
    seen: SparseRows | None = None,
    ticket: Int[Array, ""] | None = None,
) -> tuple[Float[Array, "batches b k"], Int[Array, "batches b k"], dict[str, Any]]:
    """Top-k of every batch of stacked rows (:meth:`SparseRows.stacked`), ``seen`` items excluded.

    ``seen`` defaults to the rows themselves (the user's history is not recommended back).
    One device program scores all batches in turn (``lax.map``): the buffers of a batch
    are reused by the next instead of being allocated, and page-faulted, on every call.
    With a ``ticket`` from :class:`BatchTicker`, the host is told as each batch finishes.
    Also returns each batch's solver statistics.
    """
    return _map_top_k(model, rows, k, rows if seen is None else seen, ticket)


SHARD_AXIS = "batches"


@eqx.filter_jit
def sharded_top_k(
    model: AbstractRecommender,
    rows: SparseRows,
    k: int,
    seen: SparseRows | None,
    ticket: Int[Array, ""] | None,
    mesh: Mesh,
) -> tuple[Float[Array, "batches b k"], Int[Array, "batches b k"], dict[str, Any]]:
    """:func:`batched_top_k` with the stacked batches split across the devices of ``mesh``.

    Each device runs ``lax.map`` over its share of the batches (the leading axis, whose
    length must be a multiple of the number of devices); the model's arrays (the
    item-side operators) are replicated on every device.
    """
    params, static = eqx.partition(model, eqx.is_array)

    def local(params: Any, rows: SparseRows, seen: SparseRows, ticket: Any) -> Any:
        return _map_top_k(eqx.combine(params, static), rows, k, seen, ticket)

    shard = PartitionSpec(SHARD_AXIS)
    run = jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(), shard, shard, PartitionSpec()),
                        out_specs=shard, check_vma=False)
    return run(params, rows, rows if seen is None else seen, ticket)


def device_mesh(devices: int | Sequence[jax.Device] | None) -> Mesh | None:
    """A one-axis mesh over ``devices`` (a count of local devices, or the devices); None for one device."""
    if devices is None:
        return None
    if isinstance(devices, numbers.Integral) and not isinstance(devices, bool):
        local = jax.local_devices()
        if not 1 <= devices <= len(local):
            raise ConfigError(f"devices must be in 1..{len(local)} (the local {local[0].platform} devices), got {devices}")
        devices = local[:devices]
    devices = list(devices)
    if not devices:
        raise ConfigError("devices must name at least one device")
    return None if len(devices) == 1 else Mesh(np.array(devices), (SHARD_AXIS,))
