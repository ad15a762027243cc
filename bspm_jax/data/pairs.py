"""Loader for CSV/TSV files of (user, item) interaction pairs with arbitrary ids."""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .checks import check_disjoint, clip
from .dataset import Dataset
from .sparse import binary_csr
from .split import holdout_split

_INT = re.compile(r"-?[0-9]{1,18}(?:\n-?[0-9]{1,18})*")
_UINT = re.compile(r"[0-9]{1,18}(?:\n[0-9]{1,18})*")
_ONE_INT = re.compile(r"-?[0-9]{1,18}")
_SNIFF = (",", "\t", ";", " ")
_HEADER_LOOKAHEAD = 1001
_HEADER_WORDS = frozenset({
    "user", "users", "userid", "uid", "item", "items", "itemid", "iid", "movieid",
    "productid", "asin", "businessid", "trackid", "artistid", "songid", "bookid", "isbn",
})


class _Rows:
    """The user and item tokens of one file, with their line numbers."""

    def __init__(self, label: str, users: list[str], items: list[str], lines: list[int]):
        self.label, self.users, self.items, self.lines = label, users, items, lines


def load_pairs(
    path: str | Path,
    *,
    user_col: int | str = 0,
    item_col: int | str = 1,
    sep: str | None = None,
    header: bool | None = None,
    test_path: str | Path | None = None,
    holdout: float = 0.2,
    seed: int = 0,
    name: str | None = None,
) -> Dataset:
    """Load (user, item) pairs, remapping ids to sorted contiguous indices."""
    path = Path(path)
    if test_path is None and not 0.0 < holdout < 1.0:
        raise DataError(f"holdout fraction must be in (0, 1), got {holdout!r}")
    delim = _delimiter(path, sep)
    if isinstance(user_col, str) or isinstance(item_col, str):
        if header is False:
            raise DataError("columns given by name need a header row (header=False was given)")
        header = True
    train_rows, header = _read(path, delim, user_col, item_col, header)
    user_int = _is_int_column(train_rows, train_rows.users, "user")
    item_int = _is_int_column(train_rows, train_rows.items, "item")
    user_ids, users = np.unique(_as_ids(train_rows.users, user_int), return_inverse=True)
    item_ids, items = np.unique(_as_ids(train_rows.items, item_int), return_inverse=True)
    shape = (len(user_ids), len(item_ids))
    train = binary_csr(users, items, shape)
    stats: dict[str, Any] = {"header": header, "duplicates_train": len(users) - train.nnz}
    if test_path is None:
        train, test = holdout_split(train, holdout, seed)
        stats.update(duplicates_test=0, split="holdout", holdout=holdout, seed=seed)
    else:
        test_rows, _ = _read(Path(test_path), delim, user_col, item_col, header)
        te_users = _index(test_rows, test_rows.users, user_ids, user_int, "user")
        te_items = _index(test_rows, test_rows.items, item_ids, item_int, "item")
        test = binary_csr(te_users, te_items, shape)
        stats.update(duplicates_test=len(te_users) - test.nnz, split="file")
        check_disjoint(train, test, path.name, Path(test_path).name, user_ids, item_ids)
    return Dataset(train=train, test=test, name=name or path.stem, user_ids=user_ids,
                   item_ids=item_ids, stats=stats)


_BINARY = re.compile("[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Characters that no id in a text file holds: undecodable bytes (U+FFFD) and control codes."""


def _delimiter(path: Path, sep: str | None) -> str:
    """The field separator: given, from the suffix, or sniffed from the first lines."""
    if sep is not None:
        sep = "\t" if sep == "\\t" else sep
        if len(sep) != 1:
            raise DataError(f"sep must be a single character, got {sep!r}")
        return sep
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return "\t"
    if suffix == ".csv":
        return ","
    parts = _text(path, limit=65536).split("\n")
    lines = [ln for ln in (parts[:-1] if len(parts) > 1 else parts)[:50] if ln.strip()][:20]
    best, best_score = ",", -1
    for cand in _SNIFF:
        counts = [len(ln.split()) - 1 if cand == " " else ln.count(cand) for ln in lines]
        score = min(counts, default=0)
        if score >= 1 and len(set(counts)) == 1:
            return cand
        if score > best_score:
            best, best_score = cand, score
    return best


def _text(path: Path, limit: int = -1) -> str:
    """File contents (the first ``limit`` bytes), undecodable bytes as U+FFFD."""
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if not path.is_file():
        raise DataError(f"not a file: {path}")
    with path.open("rb") as f:
        return f.read(limit).decode("utf-8-sig", errors="replace")


def _read(
    path: Path, delim: str, user_col: int | str, item_col: int | str, header: bool | None
) -> tuple[_Rows, bool]:
    """User and item tokens of every non-blank data row, and whether there was a header."""
    reader = csv.reader(io.StringIO(_text(path), newline=""), delimiter=delim,
                        skipinitialspace=delim == " ")
    rows = _nonblank(reader)
    try:
        head = list(itertools.islice(rows, _HEADER_LOOKAHEAD))
        if not head:
            raise DataError(f"{path.name} is empty: {path}")
        if header is None:
            header = _looks_like_header(head, user_col, item_col)
        names = [field.strip() for field in head[0][1]] if header else []
        ucol, icol = (_column(c, names, path.name) for c in (user_col, item_col))
        users: list[str] = []
        items: list[str] = []
        lines: list[int] = []
        for lineno, row in itertools.chain(head[1:] if header else head, rows):
            try:
                user, item = row[ucol].strip(), row[icol].strip()
            except IndexError:
                raise DataError(
                    f"{path.name} line {lineno}: expected at least {max(ucol, icol) + 1} "
                    f"columns, found {len(row)} (line: {clip(delim.join(row), 80)!r})"
                ) from None
            if not user or not item:
                raise DataError(f"{path.name} line {lineno}: empty "
                                f"{'user' if not user else 'item'} id "
                                f"(line: {clip(delim.join(row), 80)!r})")
            for what, token in (("user", user), ("item", item)):
                if _BINARY.search(token):
                    raise DataError(f"{path.name} line {lineno}: {what} id {clip(token, 40)!r} holds bytes that are "
                                    "not UTF-8 text or control characters (is this a binary file?)")
            users.append(user)
            items.append(item)
            lines.append(lineno)
    except csv.Error as exc:
        raise DataError(f"{path.name} line {reader.line_num}: {exc}") from None
    if not users:
        raise DataError(f"{path.name} has no interactions: {path}")
    return _Rows(path.name, users, items, lines), header


def _nonblank(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every row with a non-blank field."""
    for row in reader:
        if len(row) > 1 or (row and row[0].strip()):
            yield reader.line_num, row


def _looks_like_header(
    rows: list[tuple[int, list[str]]], user_col: int | str, item_col: int | str
) -> bool:
    """Whether the first row is a header: its id fields do not look like the data's ids."""
    if not rows or isinstance(user_col, str) or isinstance(item_col, str):
        return False
    first, rest = rows[0][1], [r for _, r in rows[1:]]
    for col in (user_col, item_col):
        if col >= len(first):
            continue
        value = first[col].strip()
        if re.sub(r"[\s_\-]", "", value.lower()) in _HEADER_WORDS:
            return True
        data = [r[col].strip() for r in rest if col < len(r)]
        if data and all(_ONE_INT.fullmatch(v) for v in data) and not _ONE_INT.fullmatch(value):
            return True
    return False


def _column(col: int | str, names: list[str], label: str) -> int:
    """0-based position of a column given by position or header name."""
    if isinstance(col, str):
        if col not in names:
            raise DataError(f"{label}: no column named {col!r}; available: "
                            + ", ".join(repr(n) for n in names))
        return names.index(col)
    if isinstance(col, bool) or not isinstance(col, (int, np.integer)) or col < 0:
        raise DataError(f"column position must be a non-negative integer, got {col!r}")
    return int(col)


def _is_int_column(rows: _Rows, tokens: list[str], what: str) -> bool:
    """Whether every token is an integer of <= 18 digits; negative ones raise DataError."""
    if _all_match(_UINT, tokens):
        return True
    if not _all_match(_INT, tokens):
        return False
    _reject_negative(rows, tokens, what)
    return False  # pragma: no cover


def _all_match(pattern: re.Pattern[str], tokens: list[str]) -> bool:
    """Whether every token fully matches ``pattern`` (one regex call over all tokens)."""
    joined = "\n".join(tokens)
    return pattern.fullmatch(joined) is not None and joined.count("\n") == len(tokens) - 1


def _reject_negative(rows: _Rows, tokens: list[str], what: str) -> None:
    """Raise DataError at the first negative integer id."""
    for k, token in enumerate(tokens):
        if token.startswith("-"):
            raise DataError(f"{rows.label} line {rows.lines[k]}: negative {what} id {token!r}")


def _as_ids(tokens: list[str], as_int: bool) -> np.ndarray:
    """Token list as an int64 array (ints) or a str array."""
    if not as_int:
        return np.array(tokens, dtype=str)
    return np.array(list(map(int, tokens)), dtype=np.int64)


def _index(rows: _Rows, tokens: list[str], ids: np.ndarray, as_int: bool, what: str) -> np.ndarray:
    """Train indices of test tokens; a token not in train raises DataError."""
    bad: list[int] = []
    if as_int and not _all_match(_UINT, tokens):
        bad = [k for k, t in enumerate(tokens) if not _ONE_INT.fullmatch(t)]
        if not bad:
            _reject_negative(rows, tokens, what)
    if not bad:
        values = _as_ids(tokens, as_int)
        pos = np.minimum(np.searchsorted(ids, values), len(ids) - 1)
        bad = np.flatnonzero(ids[pos] != values).tolist()
    if bad:
        k = bad[0]
        raise DataError(f"{rows.label} line {rows.lines[k]}: {what} {tokens[k]!r} is not in "
                        f"the train file ({len(bad)} test row{'s' if len(bad) > 1 else ''} "
                        f"with unknown {what}s)")
    return pos
