"""Interactions in the user's own ids: from a pandas, polars or pyarrow frame, or a CSV, TSV or Parquet file.

:class:`Interactions` holds each distinct (user, item) pair once, as indices into the sorted
id maps ``user_ids`` and ``item_ids``, with the pair's earliest time and summed weight when
the table has those columns. Every model sees a binary matrix: a pair is in it or not;
``min_weight`` keeps only the rows whose weight reaches it (e.g. ratings of 4 and up), before
duplicates are collapsed. :meth:`Interactions.split` makes the :class:`Dataset` a model is
fitted and evaluated on: ``none`` (fit on everything), ``random`` (a share of each user's
items), ``time`` (a global cut, at a time or at a share of the interactions) and ``last``
(each user's latest N); each can carve a validation split the same way, and every pair is
in exactly one of train, validation and test.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from ..errors import DataError
from .checks import clip
from .dataset import Dataset, cold_counts
from .sparse import binary_csr, canonical_csr
from .split import holdout_split, last_n_mask, time_cut, time_share_cut
from .tables import FileColumns, read_columns

SPLITS = ("none", "random", "time", "last")
"""The ways :meth:`Interactions.split` holds out test (and validation) interactions."""

_UINT = "^[0-9]{1,18}$"
_INT = "^-?[0-9]{1,18}$"


@dataclasses.dataclass(frozen=True, eq=False)
class Interactions:
    """Distinct (user, item) pairs with id maps, and optionally each pair's earliest time and summed weight.

    ``users[k]``, ``items[k]``: indices of pair k into ``user_ids`` and ``item_ids`` (sorted
    unique ids: integers, or text), pairs sorted by user then item. ``times``: int64
    nanoseconds since 1970 (UTC) when ``time_kind`` is ``"datetime"``, the column's numbers
    when it is ``"number"``, None without a time column. ``weights``: the sum over a pair's
    rows, None without a weight column. ``stats`` counts rows read, duplicates collapsed and
    rows dropped by ``min_weight``.
    """

    users: np.ndarray
    items: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    times: np.ndarray | None = None
    time_kind: str | None = None
    weights: np.ndarray | None = None
    name: str = "interactions"
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        """Distinct (user, item) pairs."""
        return len(self.users)

    @functools.cached_property
    def _matrix(self) -> sp.csr_matrix:
        return binary_csr(self.users, self.items, (self.n_users, self.n_items))

    def matrix(self) -> sp.csr_matrix:
        """Every pair as a binary float32 CSR matrix of shape (n_users, n_items)."""
        return self._matrix.copy()

    def to_pandas(self) -> Any:
        """The pairs as a pandas DataFrame: ``user``, ``item`` in the data's ids, and ``time`` and ``weight`` when held."""
        import pandas as pd

        frame = {"user": self.user_ids[self.users], "item": self.item_ids[self.items]}
        if self.times is not None:
            frame["time"] = self.times.view("datetime64[ns]") if self.time_kind == "datetime" else self.times
        if self.weights is not None:
            frame["weight"] = self.weights
        return pd.DataFrame(frame)

    def dataset(self) -> Dataset:
        """Every pair as the train split, with an empty test split: what a model for production is fitted on."""
        return self.split("none")

    def split(
        self,
        method: str = "random",
        *,
        holdout: float = 0.2,
        seed: int = 0,
        cut: Any = None,
        last_n: int = 1,
        validation: float | int | None = None,
        validation_seed: int = 0,
    ) -> Dataset:
        """Train, test and optionally validation splits, as a :class:`Dataset` in these ids.

        Args:
            method: ``none`` (all pairs in train, test empty), ``random`` (``holdout`` share of each user's pairs,
                seeded by ``seed``; users with one pair keep it), ``time`` (pairs at or after ``cut``, a time, or
                when ``cut`` is None the latest ``holdout`` share of all pairs, ties at the cut included), or
                ``last`` (each user's ``last_n`` latest pairs, ties broken by item id; a user keeps at least one).
            holdout: share of pairs held out for test (``random``, ``time`` without ``cut``), in (0, 1).
            seed: seed of the ``random`` split.
            cut: ``time`` split: the first time in test: a number for a numeric time column; a date text,
                ``datetime`` or ``numpy.datetime64`` for a date column (naive times are UTC).
            last_n: ``last`` split: pairs per user held out for test, an integer >= 1.
            validation: held out from the remaining train pairs the same way: a share in (0, 1) for ``random`` and
                ``time``, a count >= 1 for ``last``; None: no validation split.
            validation_seed: seed of the ``random`` validation split.
        """
        if method not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, got {method!r}")
        shape = (self.n_users, self.n_items)
        stats = {**self.stats, "split": method}
        held_out, sized_by = _HELD_OUT[method]
        amount = {"holdout": holdout, "last_n": last_n, None: None}[sized_by]
        test = held_out(self, np.ones(self.n_interactions, dtype=bool), amount, seed, cut, stats, "")
        valid = None
        if validation is not None:
            valid = held_out(self, ~test, validation, validation_seed, None, stats, "validation_")
        train_mask = ~test if valid is None else ~(test | valid)
        train = binary_csr(self.users[train_mask], self.items[train_mask], shape)
        test_m = binary_csr(self.users[test], self.items[test], shape)
        valid_m = None if valid is None else binary_csr(self.users[valid], self.items[valid], shape)
        stats.update(cold_counts(train, valid_m, test_m))
        return Dataset(train=train, test=test_m, valid=valid_m, name=self.name, user_ids=self.user_ids,
                       item_ids=self.item_ids, stats=stats)

    def time_value(self, cut: Any) -> float | int:
        """``cut`` on the time column's scale (nanoseconds for dates); a DataError when it does not fit the column."""
        if self.times is None:
            raise DataError("a time split needs a time column (time_col)")
        if self.time_kind == "number":
            if isinstance(cut, bool) or not isinstance(cut, numbers.Real) or not np.isfinite(cut):
                raise DataError(f"the time column holds numbers: give the cut as a number, got {cut!r}")
            return cut
        try:
            if isinstance(cut, datetime.datetime) and cut.tzinfo is not None:
                cut = cut.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            value = np.datetime64(cut, "ns")
        except (ValueError, TypeError):
            raise DataError(f"the time column holds dates: give the cut as a date (e.g. '2012-06-01'), got {cut!r}") from None
        if np.isnat(value):
            raise DataError(f"the cut {cut!r} is not a date")
        return int(value.astype(np.int64))


def interaction_matrix(data: Interactions | Dataset | sp.spmatrix | np.ndarray) -> sp.csr_matrix:
    """The binary float32 CSR matrix a model is fitted on: every pair of :class:`Interactions`, the train split of
    a :class:`Dataset`, or a (n_users, n_items) matrix whose nonzero entries count as 1 (negative ones are refused)."""
    if isinstance(data, Interactions):
        return data.matrix()
    if isinstance(data, Dataset):
        return data.train
    if not sp.issparse(data):
        array = np.asarray(data) if isinstance(data, np.ndarray | list) else None
        if array is None or array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise DataError(f"cannot fit on a {type(data).__name__}: give Interactions (from_frame, read_interactions), "
                            "a Dataset, or a (users x items) sparse matrix")
        data = sp.csr_matrix(array)
    m = canonical_csr(data, np.float32)
    if m.nnz and (not np.isfinite(m.data).all() or m.data.min() < 0):
        raise DataError("the interaction matrix holds negative, NaN or infinite entries; every nonzero entry counts "
                        "as one interaction")
    m.data[:] = 1.0
    return m


def as_history(data: Interactions | Dataset) -> Dataset:
    """The dataset whose train split holds the histories known users are scored from (Interactions: every pair)."""
    if isinstance(data, Interactions):
        return data.dataset()
    if isinstance(data, Dataset):
        return data
    raise DataError(f"expected the interactions a model was fitted on (Interactions or a Dataset), got a "
                    f"{type(data).__name__}")


def _none(data: Interactions, pool: np.ndarray, amount: Any, seed: int, cut: Any, stats: dict, prefix: str
          ) -> np.ndarray:
    if prefix:
        raise DataError("split none fits on every interaction: it has no validation split (validation=None)")
    return np.zeros(len(pool), dtype=bool)


def _random(data: Interactions, pool: np.ndarray, share: float, seed: int, cut: Any, stats: dict,
            prefix: str) -> np.ndarray:
    _check_share(share, prefix)
    rows, cols = data.users[pool], data.items[pool]
    kept, held = holdout_split(binary_csr(rows, cols, (data.n_users, data.n_items)), share, seed)
    stats.update({f"{prefix}holdout": share, f"{prefix}seed": seed})
    out = np.zeros(len(pool), dtype=bool)
    held = held.tocoo()
    key = data.users.astype(np.int64) * data.n_items + data.items
    out[np.searchsorted(key, held.row.astype(np.int64) * data.n_items + held.col)] = True  # pairs are sorted by key
    return out


def _time(data: Interactions, pool: np.ndarray, share: float, seed: int, cut: Any, stats: dict,
          prefix: str) -> np.ndarray:
    if data.times is None:
        raise DataError("a time split needs a time column (time_col)")
    times = data.times[pool]
    if cut is None:
        _check_share(share, prefix)
        value = time_share_cut(times, share)
        stats[f"{prefix}holdout"] = share
    else:
        value = data.time_value(cut)
    stats[f"{prefix}cut"] = _time_text(value, data.time_kind)
    out = np.zeros(len(pool), dtype=bool)
    out[pool] = time_cut(times, value)
    if not out.any():
        raise DataError(f"no interaction is at or after the {prefix}cut {stats[f'{prefix}cut']}")
    if out.sum() == pool.sum():
        raise DataError(f"every interaction is at or after the {prefix}cut {stats[f'{prefix}cut']}: nothing is left to fit on")
    return out


def _last(data: Interactions, pool: np.ndarray, n: int, seed: int, cut: Any, stats: dict,
          prefix: str) -> np.ndarray:
    if data.times is None:
        raise DataError("a last-N split needs a time column (time_col)")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise DataError(f"{prefix or 'last_n '}count must be an integer >= 1, got {n!r}")
    stats[f"{prefix}last_n"] = int(n)
    out = np.zeros(len(pool), dtype=bool)
    out[pool] = last_n_mask(data.users[pool], data.times[pool], data.items[pool], int(n))
    return out


def _check_share(share: Any, prefix: str) -> None:
    if isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0.0 < share < 1.0:
        raise DataError(f"{prefix or 'holdout '}share must be a number in (0, 1), got {share!r}")


_HELD_OUT = {"none": (_none, None), "random": (_random, "holdout"), "time": (_time, "holdout"), "last": (_last, "last_n")}
"""Each split's hold-out, ``(data, pool, amount, seed, cut, stats, prefix)`` to the mask of held-out pairs of ``pool``,
and the setting that sizes its test split: ``amount`` is a share (``holdout``) or a count (``last_n``); for the
validation split it is ``validation``."""


def _time_text(value: Any, kind: str | None) -> Any:
    if kind == "datetime":
        return str(np.datetime64(int(value), "ns"))
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------- building


def from_frame(
    frame: Any,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str | None = None,
    weight_col: str | None = None,
    min_weight: float | None = None,
    name: str = "interactions",
) -> Interactions:
    """Interactions from a pandas or polars DataFrame or a pyarrow Table, columns by name.

    Ids may be integers or text (any other type is read as text); missing or empty ids,
    a missing column and an empty table are refused, naming the column. ``time_col``: dates
    or numbers; ``weight_col``: numbers, summed over duplicate pairs; ``min_weight``: keep
    rows whose weight is at least this.
    """
    table = _arrow(frame)
    roles = {"user": user_col, "item": item_col, "time": time_col, "weight": weight_col}
    names = {role: col for role, col in roles.items() if col is not None}
    for role, col in names.items():
        if col not in table.column_names:
            raise DataError(f"the frame has no {role} column {col!r}; its columns: "
                            + ", ".join(repr(c) for c in table.column_names[:20]))
    columns = {role: table.column(col).combine_chunks() for role, col in names.items()}
    return build(FileColumns("the frame", columns, names, header=True, text=False), min_weight, name)


def read_interactions(
    path: str | Path,
    user_col: int | str = 0,
    item_col: int | str = 1,
    time_col: int | str | None = None,
    weight_col: int | str | None = None,
    min_weight: float | None = None,
    sep: str | None = None,
    header: bool | None = None,
    name: str | None = None,
) -> Interactions:
    """Interactions from a CSV, TSV or Parquet file (read by pyarrow), columns by 0-based position or header name."""
    path = Path(path)
    roles = {"user": user_col, "item": item_col, "time": time_col, "weight": weight_col}
    read = read_columns(path, {r: c for r, c in roles.items() if c is not None}, sep, header)
    data = build(read, min_weight, name or path.stem)
    data.stats["header"] = read.header
    return data


def _arrow(frame: Any) -> pa.Table:
    if isinstance(frame, pa.Table):
        return frame
    try:
        return pa.table(frame)
    except (TypeError, ValueError, pa.ArrowException) as err:
        raise DataError(f"cannot read a table of interactions from a {type(frame).__name__}: {clip(str(err), 160)}") \
            from None


def build(read: FileColumns, min_weight: float | None, name: str) -> Interactions:
    """Interactions from the columns of a file or frame: ids checked and mapped, duplicates collapsed."""
    n_rows = len(read.columns["user"])
    if n_rows == 0:
        raise DataError(f"{read.label} has no interactions")
    stats: dict[str, Any] = {"rows": n_rows}
    read = apply_min_weight(read, min_weight)
    if min_weight is not None:
        stats["below_min_weight"] = int(n_rows - len(read.columns["user"]))
    columns = read.columns
    weights = None if "weight" not in columns else _numbers(read, "weight")
    users, user_ids = encode_ids(read, columns["user"], "user")
    items, item_ids = encode_ids(read, columns["item"], "item")
    times, kind = (None, None) if "time" not in columns else _times(read, columns["time"])
    key = users * len(item_ids) + items
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    stats["duplicates"] = int(len(key) - len(starts))
    return Interactions(
        users=users[order][starts], items=items[order][starts], user_ids=user_ids, item_ids=item_ids,
        times=None if times is None else np.minimum.reduceat(times[order], starts),
        time_kind=kind, weights=None if weights is None else np.add.reduceat(weights[order], starts),
        name=name, stats=stats,
    )


def apply_min_weight(read: FileColumns, min_weight: float | None) -> FileColumns:
    """The rows whose weight is at least ``min_weight`` (all rows when it is None)."""
    if min_weight is None:
        return read
    if "weight" not in read.columns:
        raise DataError("min_weight needs a weight column (weight_col)")
    if isinstance(min_weight, bool) or not isinstance(min_weight, numbers.Real):
        raise DataError(f"min_weight must be a number, got {min_weight!r}")
    keep = _numbers(read, "weight") >= min_weight
    if not keep.any():
        raise DataError(f"no row of {read.label} has a weight of at least {min_weight} "
                        f"(column {read.names['weight']!r})")
    return read.filtered(keep)


def encode_ids(read: FileColumns, col: pa.Array, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the sorted unique ids, and those ids (int64 or text)."""
    column = read.names[role]
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    col = _plain_text(col)
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{read.label}: {role} column {column!r} has {col.null_count:,} missing ids "
                        f"(NaN, None or null), the first in {read.line(row)}")
    if pa.types.is_floating(col.type):
        values = col.to_numpy()
        if not (np.isfinite(values).all() and (values == np.round(values)).all()):
            row = int(np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))[0])
            raise DataError(f"{read.line(row)}: {role} column {column!r} holds a number that is no integer id, "
                            f"{values[row].item()!r}")
        col = pa.array(values.astype(np.int64))
    elif not pa.types.is_integer(col.type):
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = pc.cast(col, pa.string())
        empty = pc.equal(pc.utf8_length(col), 0)
        if pc.any(empty).as_py():
            row = int(np.flatnonzero(empty.to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{read.line(row)}: empty {role} id (column {column!r})")
        if read.text and pc.all(pc.match_substring_regex(col, _UINT)).as_py():
            col = pc.cast(col, pa.int64())
        elif read.text and pc.all(pc.match_substring_regex(col, _INT)).as_py():
            row = int(np.flatnonzero(pc.starts_with(col, "-").to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{read.line(row)}: negative {role} id {col[row].as_py()!r}")
    if pa.types.is_unsigned_integer(col.type) and pc.max(col).as_py() > np.iinfo(np.int64).max:
        row = int(np.flatnonzero(col.to_numpy() > np.iinfo(np.int64).max)[0])
        raise DataError(f"{read.line(row)}: {role} id {col[row].as_py()} is above 2^63 - 1; give such ids as text")
    if pa.types.is_integer(col.type):
        ids, codes = np.unique(col.to_numpy().astype(np.int64), return_inverse=True)
        return codes.astype(np.int64), ids
    encoded = pc.dictionary_encode(col)
    dictionary = encoded.dictionary
    order = pc.array_sort_indices(dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    ids = np.asarray(dictionary.take(pa.array(order)).to_numpy(zero_copy_only=False), dtype=str)
    return rank[encoded.indices.to_numpy(zero_copy_only=False)], ids


def _plain_text(col: pa.Array) -> pa.Array:
    """Text in pyarrow's plain string type (polars hands over ``string_view``)."""
    if pa.types.is_string_view(col.type) or pa.types.is_large_string(col.type):
        return pc.cast(col, pa.string())
    return col


def _numbers(read: FileColumns, role: str) -> np.ndarray:
    col = _plain_text(read.columns[role])
    column = read.names[role]
    if read.text and pa.types.is_string(col.type):
        try:
            col = pc.cast(col, pa.float64())
        except pa.ArrowInvalid:
            raise DataError(f"{read.label}: {role} column {column!r} holds values that are not numbers") from None
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
        raise DataError(f"{read.label}: {role} column {column!r} holds {col.type}, not numbers")
    if col.null_count:
        raise DataError(f"{read.label}: {role} column {column!r} has {col.null_count:,} missing values")
    values = col.to_numpy(zero_copy_only=False).astype(np.float64)
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataError(f"{read.line(row)}: {role} column {column!r} holds {values[row].item()!r}")
    return values


def _parsed_times(col: pa.Array, read: FileColumns, column: str) -> pa.Array:
    """Text times as timestamps (with or without a zone offset; naive ones are UTC), else as numbers."""
    for kind in (pa.timestamp("ns"), pa.timestamp("ns", "UTC"), pa.float64()):
        try:
            return pc.cast(col, kind)
        except pa.ArrowInvalid:
            continue
    raise DataError(f"{read.label}: time column {column!r} holds values that are neither dates "
                    "(e.g. 2012-06-01 or 2012-06-01T10:30:00) nor numbers, or dates outside 1677..2262")


def _times(read: FileColumns, col: pa.Array) -> tuple[np.ndarray, str]:
    """The time column as int64 nanoseconds (dates) or numbers, and which."""
    column = read.names["time"]
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{read.label}: time column {column!r} has {col.null_count:,} missing values, the first in "
                        f"{read.line(row)}")
    col = _plain_text(col)
    if pa.types.is_string(col.type):
        col = _parsed_times(col, read, column)
    try:
        if pa.types.is_date(col.type):
            col = pc.cast(pc.cast(col, pa.timestamp("s")), pa.timestamp("ns"))
        if pa.types.is_timestamp(col.type):
            return pc.cast(col, pa.timestamp("ns", col.type.tz)).cast(pa.int64()).to_numpy(), "datetime"
    except pa.ArrowInvalid:
        raise DataError(f"{read.label}: time column {column!r} holds dates outside 1677-09-21..2262-04-11, the span "
                        "of nanosecond times") from None
    if pa.types.is_integer(col.type):
        return col.to_numpy().astype(np.int64), "number"
    if pa.types.is_floating(col.type):
        values = col.to_numpy()
        if not np.isfinite(values).all():
            raise DataError(f"{read.label}: time column {column!r} holds NaN or infinite values")
        return values.astype(np.float64), "number"
    raise DataError(f"{read.label}: time column {column!r} holds {col.type}, neither dates nor numbers")
