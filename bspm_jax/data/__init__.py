"""Dataset loading: LightGCN folders, CSV/TSV pairs, holdout splits and the shipped sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .dataset import Dataset, binary_csr
from .lightgcn import load_lightgcn
from .pairs import load_pairs
from .sample import load_sample, make_gowalla_sample
from .split import holdout_split

__all__ = [
    "Dataset", "binary_csr", "load_lightgcn", "load_pairs", "holdout_split", "load_sample",
    "make_gowalla_sample", "load_dataset",
]


def load_dataset(source: str | Path | None = None, **pairs_kwargs: Any) -> Dataset:
    """Sample (None), LightGCN folder or pairs file (for a folder only ``name`` is used)."""
    if source is None:
        return load_sample()
    path = Path(source)
    if path.is_dir():
        if not (path / "train.txt").is_file():
            raise DataError(f"folder has no train.txt: {path}")
        return load_lightgcn(path, name=pairs_kwargs.get("name"))
    if path.is_file():
        return load_pairs(path, **pairs_kwargs)
    raise DataError(f"no such file or directory: {path}")
