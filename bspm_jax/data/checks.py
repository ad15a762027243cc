"""Checks and message helpers the loaders share."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import DataError


def clip(text: str, width: int) -> str:
    """Text cut to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: width - 3] + "..."


def check_disjoint(
    a: sp.spmatrix, b: sp.spmatrix, label_a: str, label_b: str,
    user_ids: np.ndarray | None = None, item_ids: np.ndarray | None = None,
) -> None:
    """Raise a DataError naming the first (user, item) pair in both ``a`` and ``b`` (in the data's own ids when given)."""
    both = sp.csr_matrix(a).multiply(sp.csr_matrix(b)).tocoo()
    both.eliminate_zeros()
    if both.nnz:
        first = np.lexsort((both.col, both.row))[0]
        row, col = both.row[first], both.col[first]
        user = row if user_ids is None else repr(user_ids[row].item())
        item = col if item_ids is None else repr(item_ids[col].item())
        raise DataError(f"pair (user {user}, item {item}) is in both {label_a} and "
                        f"{label_b} ({both.nnz} pair{'s' if both.nnz > 1 else ''} overlap)")
