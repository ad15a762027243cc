"""Dataset loading: interactions from frames and CSV/TSV/Parquet files, LightGCN and DiffRec folders, splits, the shipped sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .dataset import Dataset, cold_counts
from .sparse import binary_csr, canonical_csr
from .diffrec import load_diffrec
from .interactions import SPLITS, Interactions, from_frame, interaction_matrix, read_interactions
from .fetch import DATASETS, cached_dataset, default_cache_dir, fetch_dataset
from .lightgcn import load_lightgcn
from .pairs import load_pairs
from .sample import load_sample, make_gowalla_sample
from .split import carve_validation, holdout_split

__all__ = [
    "Interactions", "from_frame", "read_interactions", "interaction_matrix", "SPLITS", "Dataset", "binary_csr", "canonical_csr", "cold_counts", "load_lightgcn", "load_diffrec", "load_pairs", "holdout_split",
    "carve_validation", "load_sample", "make_gowalla_sample", "load_dataset", "fetch_dataset", "DATASETS",
]


def load_dataset(source: str | Path | None = None, **pairs_kwargs: Any) -> Dataset:
    """Sample (None), DiffRec or LightGCN folder, interactions file (:func:`load_pairs`: CSV, TSV, Parquet), or the
    name of a fetched dataset (e.g. ``gowalla``).

    For a folder only the ``name`` option is used.
    """
    pairs_only = sorted(set(pairs_kwargs) - {"name"})
    path = None if source is None else Path(source)
    if pairs_only and (path is None or path.is_dir() or str(source) in DATASETS and not path.exists()):
        what = "the shipped sample" if path is None else f"the dataset folder {source}"
        raise DataError(f"options for pairs files (CSV/TSV) do not apply to {what}: {', '.join(pairs_only)}")
    if path is None:
        return load_sample()
    if path.is_dir():
        if (path / "train_list.npy").is_file():
            return load_diffrec(path, name=pairs_kwargs.get("name"))
        if not (path / "train.txt").is_file():
            raise DataError(f"folder has neither train_list.npy (DiffRec format) nor train.txt (LightGCN format): {path}")
        return load_lightgcn(path, name=pairs_kwargs.get("name"))
    if path.is_file():
        return load_pairs(path, **pairs_kwargs)
    if str(source) in DATASETS:
        cached = cached_dataset(str(source))
        if cached is not None:
            return load_lightgcn(cached, name=str(source))
        raise DataError(f"{source} is not downloaded yet: run `bspm fetch {source}` (cache: {default_cache_dir()})")
    raise DataError(f"no such file or directory: {path} (dataset names: {', '.join(DATASETS)})")
