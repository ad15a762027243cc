"""Interaction tables in: CSV, TSV and Parquet files read by pyarrow, and pandas, polars or pyarrow frames.

A file's separator comes from ``sep``, else its suffix (``.csv``, ``.tsv``), else is sniffed
from its first lines; its header row is taken when a column is given by name, else
detected (the first row's id fields look like column names, or the data's ids are numbers
and the first row's are not). Id columns are read as text, so that ``007`` stays ``007``
unless every id of the column is a number (then ids are integers, as before).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ..errors import DataError
from .checks import clip

PARQUET_SUFFIXES = (".parquet", ".pq")
_SNIFF = (",", "\t", ";", " ")
_HEADER_LOOKAHEAD = 1001
_HEAD_BYTES = 1 << 18
_ONE_INT = re.compile(r"-?[0-9]{1,18}")
_HEADER_WORDS = frozenset({
    "user", "users", "userid", "uid", "item", "items", "itemid", "iid", "movieid",
    "productid", "asin", "businessid", "trackid", "artistid", "songid", "bookid", "isbn",
})
_BINARY = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
"""Characters that no id in a text file holds: control codes."""


class FileColumns:
    """The columns of one file that interactions are made of, by role, and where they came from.

    ``columns`` maps ``"user"``, ``"item"`` (and ``"time"``, ``"weight"`` when asked) to pyarrow
    arrays; ``names`` maps the same roles to the file's column names; ``header``: whether
    the file's first row was a header; ``text``: whether ids were read from text (and may
    be made integers).
    """

    def __init__(self, label: str, columns: dict[str, pa.Array], names: dict[str, str], header: bool, text: bool,
                 locate: Any = None, rows: np.ndarray | None = None):
        self.label, self.columns, self.names, self.header, self.text = label, columns, names, header, text
        self.locate, self.rows = locate, rows

    def line(self, row: int) -> str:
        """Where data row ``row`` (0-based) is, for a message: ``file line N`` or ``file row N``."""
        row = int(row if self.rows is None else self.rows[row])
        if self.locate is None:
            return f"{self.label} row {row + 1}"
        return f"{self.label} line {self.locate(row)}"

    def filtered(self, keep: np.ndarray) -> FileColumns:
        """The rows where ``keep`` is true, their messages still naming their place in the file."""
        rows = np.flatnonzero(keep) if self.rows is None else self.rows[keep]
        columns = {role: col.filter(pa.array(keep)) for role, col in self.columns.items()}
        return FileColumns(self.label, columns, self.names, self.header, self.text, self.locate, rows)

    def as_text(self, text: bool) -> FileColumns:
        """The same columns, their ids read as text (``text``: digits may become integers) or as typed."""
        return FileColumns(self.label, self.columns, self.names, self.header, text, self.locate, self.rows)


def read_columns(
    path: str | Path,
    roles: dict[str, int | str],
    sep: str | None = None,
    header: bool | None = None,
) -> FileColumns:
    """The columns of ``roles`` (role -> 0-based position or header name) from a CSV, TSV or Parquet file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if not path.is_file():
        raise DataError(f"not a file: {path}")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _read_parquet(path, roles)
    return _read_text(path, roles, sep, header)


def _read_parquet(path: Path, roles: dict[str, int | str]) -> FileColumns:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path.name} is not a readable Parquet file: {clip(str(err), 200)}") from None
    names = {role: _column_name(col, schema.names, path.name) for role, col in roles.items()}
    try:
        table = pq.read_table(path, columns=sorted(set(names.values())))
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path.name} is not a readable Parquet file: {clip(str(err), 200)}") from None
    columns = {role: table.column(name).combine_chunks() for role, name in names.items()}
    return FileColumns(path.name, columns, names, header=True, text=False)


def _read_text(path: Path, roles: dict[str, int | str], sep: str | None, header: bool | None) -> FileColumns:
    delim = delimiter(path, sep)
    by_name = any(isinstance(c, str) for c in roles.values())
    if by_name:
        if header is False:
            raise DataError("columns given by name need a header row (header=False was given)")
        header = True
    head = _head_rows(path, delim)
    if not head:
        raise DataError(f"{path.name} is empty: {path}")
    if header is None:
        header = _looks_like_header(head, roles.get("user", 0), roles.get("item", 1))
    file_names = _unique([field.strip() for field in head[0][1]]) if header else \
        [f"f{k}" for k in range(max(len(r) for _, r in head))]
    names = {role: _column_name(col, file_names, path.name) for role, col in roles.items()}
    ids = {names["user"], names["item"]}
    read = pa_csv.ReadOptions(column_names=file_names, skip_rows=head[0][0] if header else 0, block_size=1 << 22)
    parse = pa_csv.ParseOptions(delimiter=delim)
    convert = pa_csv.ConvertOptions(column_types={n: pa.binary() for n in ids}, include_columns=sorted(set(names.values())),
                                    strings_can_be_null=False, quoted_strings_can_be_null=False)
    try:
        table = pa_csv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowException, OSError) as err:
        width = len(file_names)
        line, row = _locate(path, delim, header, lambda r: len(r) != width)
        if line:
            raise DataError(f"{path.name} line {line}: expected {width} columns, found {len(row)} "
                            f"(line: {clip(delim.join(row), 80)!r})") from None
        raise DataError(f"{path.name}: {clip(str(err), 200)}") from None
    if table.num_rows == 0:
        raise DataError(f"{path.name} has no interactions: {path}")

    def locate(row: int) -> int:
        return _data_line(path, delim, header, row)

    columns = {role: table.column(name).combine_chunks() for role, name in names.items()}
    for role in ("user", "item"):
        try:
            col = pc.utf8_trim_whitespace(pc.cast(columns[role], pa.string()))
        except pa.ArrowInvalid:
            row = next(k for k, v in enumerate(columns[role].to_pylist()) if not _utf8(v))
            raise DataError(f"{path.name} line {locate(row)}: {role} id holds bytes that are not UTF-8 text "
                            "(is this a binary file?)") from None
        bad = pc.match_substring_regex(col, _BINARY)
        if pc.any(bad).as_py():
            row = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{path.name} line {locate(row)}: {role} id {clip(col[row].as_py(), 40)!r} holds "
                            "control characters (is this a binary file?)")
        columns[role] = col
    return FileColumns(path.name, columns, names, header=bool(header), text=True, locate=locate)


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def delimiter(path: Path, sep: str | None) -> str:
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
    with path.open("rb") as f:
        return f.read(limit).decode("utf-8-sig", errors="replace")


def _rows(path: Path, delim: str, limit: int = -1):
    """(line number, fields) of every row with a non-blank field, by Python's csv module."""
    reader = csv.reader(io.StringIO(_text(path, limit), newline=""), delimiter=delim, skipinitialspace=delim == " ")
    try:
        for row in reader:
            if len(row) > 1 or (row and row[0].strip()):
                yield reader.line_num, row
    except csv.Error as exc:
        raise DataError(f"{path.name} line {reader.line_num}: {exc}") from None


def _head_rows(path: Path, delim: str) -> list[tuple[int, list[str]]]:
    rows = list(itertools.islice(_rows(path, delim, _HEAD_BYTES), _HEADER_LOOKAHEAD))
    return rows[:-1] if len(rows) > 1 and path.stat().st_size > _HEAD_BYTES else rows  # the last may be cut


def _locate(path: Path, delim: str, header: bool, predicate: Any) -> tuple[int, list[str]]:
    """The line number and fields of the first data row for which ``predicate(fields)`` holds (0 if none)."""
    rows = _rows(path, delim)
    if header:
        next(rows, None)
    return next(((line, row) for line, row in rows if predicate(row)), (0, []))


def _data_line(path: Path, delim: str, header: bool, row: int) -> int:
    """The line number of data row ``row`` (0-based; for messages only)."""
    rows = _rows(path, delim)
    if header:
        next(rows, None)
    return next(itertools.islice((line for line, _ in rows), row, None), 0)


def _looks_like_header(rows: list[tuple[int, list[str]]], user_col: int | str, item_col: int | str) -> bool:
    """Whether the first row is a header: its id fields do not look like the data's ids."""
    if not rows or isinstance(user_col, str) or isinstance(item_col, str):
        return False
    first, rest = rows[0][1], [r for _, r in rows[1:]]
    for col in (user_col, item_col):
        if isinstance(col, bool) or not isinstance(col, int) or col >= len(first) or col < 0:
            continue
        value = first[col].strip()
        if re.sub(r"[\s_\-]", "", value.lower()) in _HEADER_WORDS:
            return True
        data = [r[col].strip() for r in rest if col < len(r)]
        if data and all(_ONE_INT.fullmatch(v) for v in data) and not _ONE_INT.fullmatch(value):
            return True
    return False


def _unique(names: list[str]) -> list[str]:
    """Header names made unique (a repeated name gets ``.1``, ``.2``, ... as pandas does)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}.{count}")
    return out


def _column_name(col: int | str, names: list[str], label: str) -> str:
    """The name of a column given by position or header name."""
    if isinstance(col, str):
        if col not in names:
            raise DataError(f"{label}: no column named {col!r}; available: " + ", ".join(repr(n) for n in names))
        return col
    if isinstance(col, bool) or not isinstance(col, int | np.integer) or col < 0:
        raise DataError(f"column position must be a non-negative integer, got {col!r}")
    if col >= len(names):
        raise DataError(f"{label}: expected at least {col + 1} columns, found {len(names)}")
    return names[int(col)]
