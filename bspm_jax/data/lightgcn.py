"""Loader for the LightGCN text format: one line per user, ``user item item ...``."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import DataError
from .dataset import Dataset, binary_csr

ID_LIMIT = 2**31 - 1
SPARSE_SLACK = 1_000_000
_LINE = re.compile(r"[0-9]+(?:[ \t]+[0-9]+)*")
_SEP = re.compile(r"[ \t]+")
_NEGATIVE = re.compile(r"-[0-9]+")


def load_lightgcn(path: str | Path, name: str | None = None) -> Dataset:
    """Load ``path/train.txt`` and ``path/test.txt``; train defines the id ranges."""
    folder = Path(path)
    if not folder.exists():
        raise DataError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise DataError(f"not a folder: {folder} (expected a folder with train.txt and test.txt)")
    texts = []
    for fname in ("train.txt", "test.txt"):
        file = folder / fname
        if not file.is_file():
            raise DataError(f"missing {fname} in {folder}: {file} does not exist")
        texts.append(file.read_bytes().decode("utf-8-sig", errors="replace"))
    return lightgcn_from_text(
        texts[0], texts[1], name or folder.resolve().name,
        train_where=str(folder / "train.txt"), test_where=str(folder / "test.txt"),
    )


def lightgcn_from_text(
    train_text: str, test_text: str, name: str, train_where: str = "train.txt",
    test_where: str = "test.txt",
) -> Dataset:
    """Build a Dataset from the contents of a LightGCN train.txt and test.txt."""
    tr_users, tr_counts, tr_items = _parse(train_text, "train.txt", train_where)
    te_users, te_counts, te_items = _parse(test_text, "test.txt", test_where)
    _check_density(tr_users, "train.txt", "user")
    _check_density(tr_items, "train.txt", "item")
    n_users, n_items = int(tr_users.max()) + 1, int(tr_items.max()) + 1
    if te_users.max() >= n_users or te_items.max() >= n_items:
        _raise_out_of_range(test_text, n_users, n_items)
    shape = (n_users, n_items)
    train = binary_csr(np.repeat(tr_users, tr_counts), tr_items, shape)
    test = binary_csr(np.repeat(te_users, te_counts), te_items, shape)
    _check_disjoint(train, test)
    stats = {
        "duplicates_train": len(tr_items) - train.nnz,
        "duplicates_test": len(te_items) - test.nnz,
    }
    return Dataset(train=train, test=test, name=name, stats=stats)


def _parse(text: str, label: str, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (user per line, item count per line, flat items) of one file."""
    users: list[str] = []
    counts: list[int] = []
    items: list[str] = []
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        if _LINE.fullmatch(line) is None:
            raise _malformed(label, lineno, line)
        tokens = line.split()
        users.append(tokens[0])
        counts.append(len(tokens) - 1)
        items.extend(tokens[1:])
    if not items:
        raise DataError(f"{label} has no interactions: {where}")
    return _ids(users, text, label), np.asarray(counts, dtype=np.int64), _ids(items, text, label)


def _ids(tokens: list[str], text: str, label: str) -> np.ndarray:
    """Tokens as int64, raising DataError for any id >= 2**31 - 1."""
    if max(map(len, tokens)) > 10 and any(len(t.lstrip("0")) > 10 for t in tokens):
        _raise_first(text, label, lambda pos, t: len(t.lstrip("0")) > 10, _too_large)
    values = np.array(list(map(int, tokens)), dtype=np.int64)
    if values.max() >= ID_LIMIT:
        _raise_first(text, label, lambda pos, t: int(t) >= ID_LIMIT, _too_large)
    return values


def _too_large(token: str) -> str:
    return f"id {_clip(token, 40)} is too large (ids must be < {ID_LIMIT})"


def _check_density(ids: np.ndarray, label: str, what: str) -> None:
    """Reject ids so sparse that a dense id range would waste huge amounts of memory."""
    top = int(ids.max()) + 1
    distinct = len(np.unique(ids))
    if top > 4 * distinct + SPARSE_SLACK:
        raise DataError(
            f"{label}: {what} ids go up to {top - 1} but only {distinct} distinct ids are used; "
            "ids this sparse do not suit the LightGCN format, which uses ids as matrix indices "
            "(use the pairs/CSV loader load_pairs, which remaps ids)"
        )


def _raise_out_of_range(text: str, n_users: int, n_items: int) -> None:
    """Raise for the first test id outside the train ranges."""

    def bad(pos: int, token: str) -> bool:
        return int(token) >= (n_users if pos == 0 else n_items)

    def message(token: str) -> str:
        return (f"id {token} is outside the train ranges "
                f"(users 0..{n_users - 1}, items 0..{n_items - 1})")

    _raise_first(text, "test.txt", bad, message, kind=lambda pos: "user" if pos == 0 else "item")


def _raise_first(
    text: str, label: str, bad: Callable[[int, str], bool], message: Callable[[str], str],
    kind: Callable[[int], str] | None = None,
) -> None:
    """Raise DataError for the first token (by line, then position) where ``bad`` holds."""
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        for pos, token in enumerate(line.split()):
            if bad(pos, token):
                prefix = f"{kind(pos)} " if kind else ""
                raise DataError(f"{label} line {lineno}: {prefix}{message(token)} "
                                f"(line: {_clip(line, 80)!r})")
    raise AssertionError("no offending token found")  # pragma: no cover


def _malformed(label: str, lineno: int, line: str) -> DataError:
    """DataError naming the first token of a line that is not a non-negative integer."""
    for token in _SEP.split(line):
        if not token.isascii() or not token.isdigit():
            if _NEGATIVE.fullmatch(token):
                what = f"negative id {token!r}"
            else:
                what = f"{_clip(token, 40)!r} is not an integer id"
            return DataError(f"{label} line {lineno}: {what} (line: {_clip(line, 80)!r})")
    return DataError(f"{label} line {lineno}: malformed line {_clip(line, 80)!r}")


def _check_disjoint(train: sp.csr_matrix, test: sp.csr_matrix) -> None:
    """Raise if any (user, item) pair is in both train and test."""
    both = train.multiply(test).tocoo()
    both.eliminate_zeros()
    if both.nnz:
        first = np.lexsort((both.col, both.row))[0]
        raise DataError(
            f"pair (user {both.row[first]}, item {both.col[first]}) is in both train.txt and "
            f"test.txt ({both.nnz} pair{'s' if both.nnz > 1 else ''} overlap)"
        )


def _clip(text: str, width: int) -> str:
    """Text cut to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: width - 3] + "..."
