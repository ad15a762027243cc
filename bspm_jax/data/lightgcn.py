"""Loader for the LightGCN text format: one line per user, ``user item item ...``; train, test, optional valid."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import DataError
from .checks import check_disjoint, clip
from .dataset import Dataset, cold_counts, data_folder
from .sparse import binary_csr

ID_LIMIT = 2**31 - 1
SPARSE_SLACK = 1_000_000
_LINE = re.compile(r"[0-9]+(?:[ \t]+[0-9]+)*")
_SEP = re.compile(r"[ \t]+")
_NEGATIVE = re.compile(r"-[0-9]+")


def load_lightgcn(path: str | Path, name: str | None = None) -> Dataset:
    """Load ``path/train.txt``, ``path/test.txt`` and, if present, ``path/valid.txt``."""
    folder = data_folder(path, "train.txt and test.txt")
    texts = []
    for fname in ("train.txt", "test.txt", "valid.txt"):
        file = folder / fname
        if fname == "valid.txt" and not file.exists():
            texts.append(None)
            continue
        if not file.is_file():
            raise DataError(f"missing {fname} in {folder}: {file} does not exist")
        texts.append(file.read_bytes().decode("utf-8-sig", errors="replace"))
    return lightgcn_from_text(
        texts[0], texts[1], name or folder.resolve().name,
        train_where=str(folder / "train.txt"), test_where=str(folder / "test.txt"),
        valid_text=texts[2], valid_where=str(folder / "valid.txt"),
    )


def lightgcn_from_text(
    train_text: str, test_text: str, name: str, train_where: str = "train.txt",
    test_where: str = "test.txt", valid_text: str | None = None, valid_where: str = "valid.txt",
) -> Dataset:
    """Build a Dataset from the contents of a LightGCN train.txt, test.txt and optional valid.txt."""
    texts = {"train": (train_text, train_where), "valid": (valid_text, valid_where), "test": (test_text, test_where)}
    pairs, listed = {}, {}
    for split, (text, where) in texts.items():
        if text is not None:
            users, counts, items = _parse(text, f"{split}.txt", where)
            pairs[split], listed[split] = (np.repeat(users, counts), items), users
    return split_dataset(pairs, name, {split: f"{split}.txt" for split in pairs}, "LightGCN format", listed)


def split_dataset(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]], name: str, labels: dict[str, str], fmt: str,
    listed_users: dict[str, np.ndarray] | None = None,
) -> Dataset:
    """A Dataset from (users, items) id arrays per split ("train", "test", optional "valid").

    The catalogue spans every split (ids are matrix indices); ids of valid/test that never
    occur in train are cold and counted in ``stats``. Pairs repeated within a split are
    counted once (``duplicates_<split>``); a pair in two splits raises DataError.
    ``listed_users`` (per split) also size the catalogue: users a file names without items.
    """
    users = {s: p[0] if listed_users is None else np.concatenate([p[0], listed_users[s]]) for s, p in pairs.items()}
    _check_density([(labels[s], users[s]) for s in pairs], "user", fmt)
    _check_density([(labels[s], p[1]) for s, p in pairs.items()], "item", fmt)
    shape = (max(int(u.max()) for u in users.values()) + 1, max(int(p[1].max()) for p in pairs.values()) + 1)
    matrices = {split: binary_csr(users, items, shape) for split, (users, items) in pairs.items()}
    splits = list(matrices)
    for a, b in [(a, b) for i, a in enumerate(splits) for b in splits[i + 1:]]:
        check_disjoint(matrices[a], matrices[b], labels[a], labels[b])
    stats = {f"duplicates_{split}": len(pairs[split][1]) - matrices[split].nnz for split in ("train", "valid", "test")
             if split in matrices}
    stats.update(cold_counts(matrices["train"], matrices.get("valid"), matrices["test"]))
    return Dataset(train=matrices["train"], test=matrices["test"], name=name, stats=stats, valid=matrices.get("valid"))


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
    return f"id {clip(token, 40)} is too large (ids must be < {ID_LIMIT})"


def _check_density(ids_by_file: list[tuple[str, np.ndarray]], what: str, fmt: str) -> None:
    """Reject ids so sparse (over all files) that a dense id range would waste huge amounts of memory."""
    ids = np.concatenate([ids for _, ids in ids_by_file])
    top = int(ids.max()) + 1
    distinct = len(np.unique(ids))
    if top > 4 * distinct + SPARSE_SLACK:
        label = next(label for label, file_ids in ids_by_file if len(file_ids) and int(file_ids.max()) + 1 == top)
        files = " and ".join(label for label, _ in ids_by_file)
        raise DataError(
            f"{label}: {what} ids go up to {top - 1} but only {distinct} distinct ids are used in "
            f"{files}; ids this sparse do not suit the {fmt}, which uses ids as matrix indices "
            "(use the pairs/CSV loader load_pairs, which remaps ids)"
        )


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
                                f"(line: {clip(line, 80)!r})")
    raise AssertionError("no offending token found")  # pragma: no cover


def _malformed(label: str, lineno: int, line: str) -> DataError:
    """DataError naming the first token of a line that is not a non-negative integer."""
    for token in _SEP.split(line):
        if not token.isascii() or not token.isdigit():
            if _NEGATIVE.fullmatch(token):
                what = f"negative id {token!r}"
            else:
                what = f"{clip(token, 40)!r} is not an integer id"
            return DataError(f"{label} line {lineno}: {what} (line: {clip(line, 80)!r})")
    return DataError(f"{label} line {lineno}: malformed line {clip(line, 80)!r}")
