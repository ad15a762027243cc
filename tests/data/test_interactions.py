"""Interactions from frames and files, and the four splits, against brute-force NumPy and pandas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bspm_jax.data import Interactions, from_frame, interaction_matrix, read_interactions
from bspm_jax.errors import DataError

FIXTURE_OK = [HealthCheck.function_scoped_fixture]


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "user": ["bob", "amy", "bob", "bob", "cat", "amy"],
        "item": ["x", "y", "y", "x", "z", "z"],
        "ts": pd.to_datetime(["2020-01-03", "2020-01-01", "2020-01-02", "2020-01-01", "2020-01-05", "2020-01-04"]),
        "rating": [4.0, 5.0, 2.0, 3.0, 5.0, 1.0],
    })


def _pairs(data: Interactions) -> dict[tuple, tuple]:
    """(user id, item id) -> (time, weight), computed from the Interactions' arrays."""
    times = data.times if data.times is not None else [None] * data.n_interactions
    weights = data.weights if data.weights is not None else [None] * data.n_interactions
    return {(data.user_ids[u].item(), data.item_ids[i].item()): (t, w)
            for u, i, t, w in zip(data.users, data.items, times, weights)}


def test_frame_ids_duplicates_times_and_weights() -> None:
    df = _frame()
    data = from_frame(df, time_col="ts", weight_col="rating")
    assert data.user_ids.tolist() == ["amy", "bob", "cat"] and data.item_ids.tolist() == ["x", "y", "z"]
    expected = {}  # brute force: earliest time and summed weight of each pair
    for row in df.itertuples():
        t, w = expected.get((row.user, row.item), (None, 0.0))
        ns = row.ts.value
        expected[(row.user, row.item)] = (ns if t is None else min(t, ns), w + row.rating)
    assert _pairs(data) == expected
    assert data.time_kind == "datetime" and data.stats == {"rows": 6, "duplicates": 1}
    kept = from_frame(df, time_col="ts", weight_col="rating", min_weight=4)
    assert set(_pairs(kept)) == {("bob", "x"), ("amy", "y"), ("cat", "z")} and kept.stats["below_min_weight"] == 3
    assert kept.user_ids.tolist() == ["amy", "bob", "cat"] and kept.item_ids.tolist() == ["x", "y", "z"]
    back = data.to_pandas()
    assert list(back.columns) == ["user", "item", "time", "weight"] and len(back) == 5


def test_pandas_polars_and_arrow_agree() -> None:
    df = _frame()
    a = from_frame(df, time_col="ts")
    for other in (from_frame(pl.from_pandas(df), time_col="ts"), from_frame(pa.Table.from_pandas(df), time_col="ts")):
        assert _pairs(other) == _pairs(a)
        assert other.user_ids.tolist() == a.user_ids.tolist()


def test_integer_ids_stay_integers_and_sort_as_numbers() -> None:
    df = pd.DataFrame({"u": [10, 2, 10, -5], "i": [7, 7, 30, 7]})
    data = from_frame(df, user_col="u", item_col="i")
    assert data.user_ids.dtype == np.int64 and data.user_ids.tolist() == [-5, 2, 10]
    assert data.item_ids.tolist() == [7, 30]
    dense = np.zeros((3, 2))
    for u, i in zip(df.u, df.i):
        dense[data.user_ids.tolist().index(u), data.item_ids.tolist().index(i)] = 1
    np.testing.assert_array_equal(data.matrix().toarray(), dense)


def test_parquet_and_csv_files_read_like_the_frame(tmp_path: Path) -> None:
    df = _frame().assign(item=["007", "y", "y", "007", "z", "z"])
    pq.write_table(pa.Table.from_pandas(df), tmp_path / "d.parquet")
    df.to_csv(tmp_path / "d.csv", index=False)
    frame = from_frame(df, time_col="ts", weight_col="rating")
    for path in ("d.parquet", "d.csv"):
        got = read_interactions(tmp_path / path, user_col="user", item_col="item", time_col="ts", weight_col="rating")
        assert got.item_ids.tolist() == ["007", "y", "z"]  # text ids keep their leading zeros
        assert _pairs(got) == _pairs(frame)


@pytest.mark.parametrize("change, pattern", [
    (lambda d: d.drop(columns="item"), r"^the frame has no item column 'item'; its columns: 'user', 'ts', 'rating'$"),
    (lambda d: d.assign(user=[None, "a", "b", "c", "d", "e"]), r"user column 'user' has 1 missing ids .* row 1$"),
    (lambda d: d.assign(item=["x", "y", np.nan, "x", "z", "z"]), r"item column 'item' has 1 missing ids .* row 3$"),
    (lambda d: d.assign(item=["x", "", "y", "x", "z", "z"]), r"^the frame row 2: empty item id \(column 'item'\)$"),
    (lambda d: d.assign(user=[1.0, 2.5, 1.0, 1.0, 2.0, 3.0]), r"holds a number that is no integer id, 2\.5$"),
    (lambda d: d.iloc[:0], r"^the frame has no interactions$"),
    (lambda d: d.assign(ts=[None, 1, 2, 3, 4, 5]), r"time column 'ts' has 1 missing values"),
    (lambda d: d.assign(ts=["a"] * 6), r"time column 'ts' holds values that are neither dates .* nor numbers, or dates outside 1677\.\.2262$"),
])
def test_frame_refusals(change, pattern) -> None:
    with pytest.raises(DataError, match=pattern):
        from_frame(change(_frame()), time_col="ts")


def test_other_refusals() -> None:
    with pytest.raises(DataError, match=r"^min_weight needs a weight column"):
        from_frame(_frame(), min_weight=3)
    with pytest.raises(DataError, match=r"^no row of the frame has a weight of at least 9"):
        from_frame(_frame(), weight_col="rating", min_weight=9)
    with pytest.raises(DataError, match=r"^cannot read a table of interactions from a int"):
        from_frame(3)
    data = from_frame(_frame(), time_col="ts")
    with pytest.raises(DataError, match=r"^split must be one of none, random, time, last, got 'later'$"):
        data.split("later")
    with pytest.raises(DataError, match=r"^the time column holds dates: give the cut as a date"):
        data.split("time", cut="soon")
    with pytest.raises(DataError, match=r"^no interaction is at or after the cut 2030"):
        data.split("time", cut="2030-01-01")
    with pytest.raises(DataError, match=r"^every interaction is at or after the cut"):
        data.split("time", cut="2019-01-01")
    with pytest.raises(DataError, match=r"^a time split needs a time column"):
        from_frame(_frame()).split("time")
    with pytest.raises(DataError, match=r"^last_n count must be an integer >= 1, got 0$"):
        data.split("last", last_n=0)
    with pytest.raises(DataError, match=r"^split none fits on every interaction: it has no validation split"):
        data.split("none", validation=0.1)
    with pytest.raises(DataError, match=r"negative, NaN or infinite"):
        interaction_matrix(np.array([[1.0, -1.0]]))


# ---------------------------------------------------------------- splits against brute force


@st.composite
def _interactions(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(2, 40))
    users = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    items = draw(st.lists(st.integers(0, 9), min_size=n, max_size=n))
    times = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
    return pd.DataFrame({"user": [f"u{u}" for u in users], "item": items, "t": times})


def _earliest(df: pd.DataFrame) -> dict[tuple, int]:
    out: dict[tuple, int] = {}
    for u, i, t in zip(df.user, df.item, df.t):
        out[(u, i)] = min(out.get((u, i), t), t)
    return out


def _labelled(ds, matrix) -> set[tuple]:
    coo = matrix.tocoo()
    return {(ds.user_ids[u].item(), ds.item_ids[i].item()) for u, i in zip(coo.row, coo.col)}


def _check_partition(ds, pairs: dict) -> None:
    train, test = _labelled(ds, ds.train), _labelled(ds, ds.test)
    valid = set() if ds.valid is None else _labelled(ds, ds.valid)
    assert train | test | valid == set(pairs)
    assert not train & test and not train & valid and not valid & test  # no test item in any history


@settings(max_examples=40, deadline=None)
@given(df=_interactions(), cut=st.integers(0, 13), share=st.floats(0.05, 0.95))
def test_property_time_split(df: pd.DataFrame, cut: int, share: float) -> None:
    data = from_frame(df, time_col="t")
    pairs = _earliest(df)
    if 0 < sum(t >= cut for t in pairs.values()) < len(pairs):
        ds = data.split("time", cut=cut)
        _check_partition(ds, pairs)
        assert _labelled(ds, ds.test) == {p for p, t in pairs.items() if t >= cut}
    times = sorted(pairs.values())
    n_out = min(max(1, round(share * len(times))), len(times))
    first = times[len(times) - n_out]  # brute force: the cut is the time of the n_out-th latest pair
    if first == times[0]:
        with pytest.raises(DataError, match="nothing is left to fit on"):
            data.split("time", holdout=share)
        return
    ds = data.split("time", holdout=share)
    _check_partition(ds, pairs)
    assert _labelled(ds, ds.test) == {p for p, t in pairs.items() if t >= first}


@settings(max_examples=40, deadline=None)
@given(df=_interactions(), n=st.integers(1, 3), n_valid=st.integers(1, 2))
def test_property_last_n_split(df: pd.DataFrame, n: int, n_valid: int) -> None:
    data = from_frame(df, time_col="t")
    pairs = _earliest(df)
    expected_test, expected_valid = set(), set()
    for user in {u for u, _ in pairs}:
        # brute force: latest first, ties in time broken by the larger item id
        mine = sorted((p for p in pairs if p[0] == user), key=lambda p: (pairs[p], p[1]), reverse=True)
        held = min(n, len(mine) - 1)
        expected_test |= set(mine[:held])
        rest = mine[held:]
        expected_valid |= set(rest[:min(n_valid, len(rest) - 1)])
    ds = data.split("last", last_n=n, validation=n_valid)
    _check_partition(ds, pairs)
    assert _labelled(ds, ds.test) == expected_test
    assert _labelled(ds, ds.valid) == expected_valid


@settings(max_examples=40, deadline=None)
@given(df=_interactions(), seed=st.integers(0, 5))
def test_property_random_and_none_splits(df: pd.DataFrame, seed: int) -> None:
    data = from_frame(df, time_col="t")
    pairs = _earliest(df)
    ds = data.split("random", holdout=0.3, seed=seed, validation=0.3, validation_seed=seed)
    _check_partition(ds, pairs)
    for user in {u for u, _ in pairs}:  # a user with two or more pairs keeps at least one in train
        if sum(p[0] == user for p in pairs) >= 2:
            assert any(p[0] == user for p in _labelled(ds, ds.train))
    everything = data.split("none")
    assert _labelled(everything, everything.train) == set(pairs) and everything.test.nnz == 0


def test_review_cases_times_offsets_polars_text_and_min_weight_lines(tmp_path: Path) -> None:
    """Zone offsets and polars text times are dates; far-future dates, huge unsigned ids and shares given as text are
    refused in one line; rows dropped by min_weight keep their line numbers in messages."""
    df = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "t": ["2020-01-01T02:00:00+02:00", "2020-01-02T00:00:00Z"]})
    expected = [np.datetime64("2020-01-01T00:00", "ns").astype(np.int64), np.datetime64("2020-01-02T00:00", "ns").astype(np.int64)]
    assert from_frame(df, time_col="t").times.tolist() == expected
    naive = df.assign(t=["2020-01-01", "2020-01-02"])
    assert from_frame(pl.from_pandas(naive), time_col="t").times.tolist() == expected
    with pytest.raises(DataError, match="dates outside 1677..2262"):
        from_frame(naive.assign(t=["9999-12-31", "2020-01-01"]), time_col="t")
    with pytest.raises(DataError, match=r"^the frame row 1: user id 18446744073709551615 is above 2\^63 - 1"):
        from_frame(pa.table({"user": pa.array([2**64 - 1, 1], pa.uint64()), "item": [1, 2]}))
    with pytest.raises(DataError, match=r"^holdout share must be a number in \(0, 1\), got '0.2'$"):
        from_frame(naive).split("random", holdout="0.2")
    (tmp_path / "r.csv").write_text("user,item,rating\na,x,1\nb,y,5\n,z,5\n")
    with pytest.raises(DataError, match=r"^r\.csv line 4: empty user id"):
        read_interactions(tmp_path / "r.csv", user_col="user", item_col="item", weight_col="rating", min_weight=4)
