"""Ranking any recommender's scores: top-k with seen items excluded, batches planned from memory,
spread over devices and processes, with progress, and recommendations for known and new users."""

from .batching import MAX_BATCH, check_batch_size, model_bytes, plan_batch_size
from .devices import SHARD_AXIS, batched_top_k, device_mesh, sharded_top_k
from .progress import BatchTicker, Progress, no_progress
from .rank import Ranking, rank_rows
from .recommend import Recommendations, recommend, recommend_for, recommend_indices, recommend_rows, write_recommendations
from .topk import check_cutoffs, check_k, layout_top_k, masked_top_k

__all__ = [
    "MAX_BATCH",
    "SHARD_AXIS",
    "BatchTicker",
    "Progress",
    "Ranking",
    "Recommendations",
    "batched_top_k",
    "check_batch_size",
    "check_cutoffs",
    "check_k",
    "device_mesh",
    "layout_top_k",
    "masked_top_k",
    "model_bytes",
    "no_progress",
    "plan_batch_size",
    "rank_rows",
    "recommend",
    "recommend_for",
    "recommend_indices",
    "recommend_rows",
    "write_recommendations",
    "sharded_top_k",
]
