"""The shipped Gowalla sample: how it is made and how it is loaded."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .dataset import Dataset
from .lightgcn import lightgcn_from_text, load_lightgcn

SAMPLE_NAME = "gowalla-sample"
USER_MODULO = 3
TOP_ITEMS = 3500


def load_sample() -> Dataset:
    """The shipped Gowalla sample (bspm_jax/data/gowalla_sample), read from the package."""
    folder = resources.files("bspm_jax.data").joinpath("gowalla_sample")
    texts = [
        folder.joinpath(f).read_bytes().decode("utf-8-sig", errors="replace")
        for f in ("train.txt", "test.txt")
    ]
    return lightgcn_from_text(texts[0], texts[1], SAMPLE_NAME)


def make_gowalla_sample(
    src_dir: str | Path, out_dir: str | Path, user_modulo: int = USER_MODULO,
    top_items: int = TOP_ITEMS,
) -> dict[str, int]:
    """Write the deterministic Gowalla subsample (LightGCN format) to ``out_dir``.

    Users with id % user_modulo == 0, restricted to the ``top_items`` items with most
    train interactions (ties: lower id first); then, until nothing changes, keep users
    with >= 2 train and >= 1 test interaction and items with >= 1 train interaction.
    Users and items are renumbered 0.. in their original order.
    """
    full = load_lightgcn(src_dir)
    popularity = np.asarray(full.train.sum(axis=0)).ravel()
    by_popularity = np.lexsort((np.arange(full.n_items), -popularity))
    users = np.arange(0, full.n_users, user_modulo)
    items = np.sort(by_popularity[:top_items])
    train, test = full.train[users][:, items], full.test[users][:, items]
    while True:
        keep_u = (_row_counts(train) >= 2) & (_row_counts(test) >= 1)
        keep_i = _row_counts(train[keep_u].T.tocsr()) >= 1
        if keep_u.all() and keep_i.all():
            break
        train, test = train[keep_u][:, keep_i], test[keep_u][:, keep_i]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fname, matrix in (("train.txt", train), ("test.txt", test)):
        (out / fname).write_text(_lightgcn_text(matrix.tocsr()), encoding="utf-8", newline="\n")
    return {"users": train.shape[0], "items": train.shape[1], "train": int(train.nnz),
            "test": int(test.nnz)}


def _row_counts(m: sp.csr_matrix) -> np.ndarray:
    """Stored entries per row."""
    return np.diff(sp.csr_matrix(m).indptr)


def _lightgcn_text(m: sp.csr_matrix) -> str:
    """One line per row: ``row col col ...`` with columns ascending."""
    m = m.copy()
    m.sort_indices()
    lines = (
        " ".join(map(str, [u, *m.indices[m.indptr[u]:m.indptr[u + 1]].tolist()]))
        for u in range(m.shape[0])
    )
    return "\n".join(lines) + "\n"
