"""Tests of the dataset loaders, the holdout split and the shipped sample."""

from __future__ import annotations

import csv
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bspm_jax.data import (
    Dataset, holdout_split, load_dataset, load_lightgcn, load_pairs, load_sample,
    make_gowalla_sample,
)
from bspm_jax.errors import DataError
from helpers import REPO, SHARED_DATA

SAMPLE_DIR = REPO / "bspm_jax" / "data" / "gowalla_sample"


def _shared_gowalla() -> Path | None:
    """The shared Gowalla folder, or None when it is not available."""
    candidates = [SHARED_DATA / "gowalla"]
    if os.environ.get("BSPM_SHARED_DATA"):
        env = Path(os.environ["BSPM_SHARED_DATA"])
        candidates += [env / "gowalla", env]
    for c in candidates:
        if (c / "train.txt").is_file() and (c / "test.txt").is_file():
            return c
    return None


GOWALLA = _shared_gowalla()
needs_gowalla = pytest.mark.skipif(GOWALLA is None, reason="shared Gowalla data not found")


def _lgcn(tmp_path: Path, train: str | bytes, test: str | bytes = "0 9\n") -> Path:
    """A LightGCN folder with the given train.txt and test.txt contents."""
    folder = tmp_path / "ds"
    folder.mkdir(exist_ok=True)
    for fname, content in (("train.txt", train), ("test.txt", test)):
        data = content.encode() if isinstance(content, str) else content
        (folder / fname).write_bytes(data)
    return folder


def _pairs(m: sp.csr_matrix) -> set[tuple[int, int]]:
    """The (row, col) pairs stored in a matrix."""
    c = m.tocoo()
    return set(zip(c.row.tolist(), c.col.tolist()))


def _labelled(ds: Dataset, m: sp.csr_matrix) -> set[tuple[object, object]]:
    """The stored pairs in the dataset's original ids."""
    return {(ds.user_ids[u].item(), ds.item_ids[i].item()) for u, i in _pairs(m)}


_FIXTURE_OK = [HealthCheck.function_scoped_fixture]
TRAIN_OK = "0 1 2 3 4 5 6 7 8\n1 0 1 2 3 4 5 6 7 8 9\n"  # (0, 9) is free for test.txt


# ---------------------------------------------------------------- LightGCN format


def test_lightgcn_basic_merge_blank_duplicates(tmp_path: Path) -> None:
    folder = _lgcn(tmp_path, "0 1 1 2\n\n   \n0\t2 3\r\n2\n", "1 3\n1 3 0\n")
    ds = load_lightgcn(folder)
    assert ds.name == "ds" and ds.user_ids is None and ds.item_ids is None
    assert ds.train.shape == (3, 4) and ds.train.dtype == np.float32
    assert _pairs(ds.train) == {(0, 1), (0, 2), (0, 3)}
    assert _pairs(ds.test) == {(1, 3), (1, 0)}
    # user 1 and item 0 occur in test only: cold, and counted
    assert ds.stats == {"duplicates_train": 2, "duplicates_test": 1, "cold_items_test": 1, "cold_users_test": 1}
    assert ds.valid is None and ds.n_valid == 0 and "n_valid" not in ds.summary()
    assert set(ds.train.data.tolist()) == {1.0}
    assert load_lightgcn(folder, name="x").name == "x"


def test_lightgcn_bom_and_crlf(tmp_path: Path) -> None:
    ds = load_lightgcn(_lgcn(tmp_path, b"\xef\xbb\xbf0 1 2\r\n1 2\r\n", b"1 1\r\n"))
    assert _pairs(ds.train) == {(0, 1), (0, 2), (1, 2)} and _pairs(ds.test) == {(1, 1)}


def test_lightgcn_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder.*nope"):
        load_lightgcn(tmp_path / "nope")
    (tmp_path / "f.txt").write_text("0 1\n")
    with pytest.raises(DataError, match="not a folder"):
        load_lightgcn(tmp_path / "f.txt")
    folder = _lgcn(tmp_path, TRAIN_OK)
    (folder / "test.txt").unlink()
    with pytest.raises(DataError, match=r"missing test\.txt.*test\.txt"):
        load_lightgcn(folder)
    (folder / "train.txt").unlink()
    with pytest.raises(DataError, match=r"missing train\.txt"):
        load_lightgcn(folder)


@pytest.mark.parametrize("content", ["", "\n\n  \n", "0\n1\n2\n"])
@pytest.mark.parametrize("which", ["train", "test"])
def test_lightgcn_empty_file(tmp_path: Path, content: str, which: str) -> None:
    args = (content, "0 9\n") if which == "train" else (TRAIN_OK, content)
    with pytest.raises(DataError, match=rf"{which}\.txt has no interactions"):
        load_lightgcn(_lgcn(tmp_path, *args))


@pytest.mark.parametrize(
    ("bad_line", "token", "kind"),
    [
        (b"3 4 abc", "'abc'", "not an integer id"),
        (b"3 4.5 6", "'4.5'", "not an integer id"),
        (b"3 NaN", "'NaN'", "not an integer id"),
        (b"3 1e3", "'1e3'", "not an integer id"),
        (b"3 +5", "'+5'", "not an integer id"),
        (b"abc 1", "'abc'", "not an integer id"),
        (b"3 4 -4", "'-4'", "negative id"),
        (b"-1 2", "'-1'", "negative id"),
        ("3 \u0663".encode(), "'\u0663'", "not an integer id"),
        ("3 ½".encode(), "'½'", "not an integer id"),
        (b"3 \xff\xfe\x00\x01", "'\ufffd\ufffd\\x00\\x01'", "not an integer id"),
        (b"3 4,5", "'4,5'", "not an integer id"),
    ],
)
@pytest.mark.parametrize("which", ["train", "test"])
def test_lightgcn_malformed_line(
    tmp_path: Path, bad_line: bytes, token: str, kind: str, which: str
) -> None:
    text = b"0 1 2 3 4 5 6\n\n" + bad_line + b"\n4 5\n"
    args = (text, b"0 9\n") if which == "train" else (TRAIN_OK.encode(), text)
    with pytest.raises(DataError) as info:
        load_lightgcn(_lgcn(tmp_path, *args))
    msg = str(info.value)
    assert msg.startswith(f"{which}.txt line 3: ")
    assert kind in msg and token in msg and "(line: " in msg
    assert "\n" not in msg


def test_lightgcn_malformed_message_example(tmp_path: Path) -> None:
    train = "\n".join(["0 1"] * 16 + ["3 4 abc"]) + "\n"
    with pytest.raises(DataError) as info:
        load_lightgcn(_lgcn(tmp_path, train))
    assert str(info.value) == "train.txt line 17: 'abc' is not an integer id (line: '3 4 abc')"


def test_lightgcn_malformed_long_line_is_truncated(tmp_path: Path) -> None:
    train = "0 " + " ".join(str(i) for i in range(500)) + " x" * 3 + "y" * 1000 + "\n"
    with pytest.raises(DataError, match=r"line 1: 'x' is not an integer id") as info:
        load_lightgcn(_lgcn(tmp_path, train))
    assert len(str(info.value)) < 200 and "..." in str(info.value)


@pytest.mark.parametrize("big", [str(2**31 - 1), "99999999999", "9" * 10_000])
def test_lightgcn_id_too_large(tmp_path: Path, big: str) -> None:
    with pytest.raises(DataError, match=r"train\.txt line 2: id \d+(\.\.\.)? is too large"):
        load_lightgcn(_lgcn(tmp_path, f"0 1\n1 {big}\n"))
    with pytest.raises(DataError, match=r"train\.txt line 1: id .* is too large"):
        load_lightgcn(_lgcn(tmp_path, f"{big} 1\n"))
    with pytest.raises(DataError, match=r"test\.txt line 1: id .* is too large"):
        load_lightgcn(_lgcn(tmp_path, TRAIN_OK, f"0 {big}\n"))


def test_lightgcn_leading_zeros_are_not_too_large(tmp_path: Path) -> None:
    ds = load_lightgcn(_lgcn(tmp_path, "0 0000000000002 1\n", "0 00000000000000\n"))
    assert _pairs(ds.train) == {(0, 2), (0, 1)} and _pairs(ds.test) == {(0, 0)}


@pytest.mark.parametrize("train", [f"0 1\n{2**31 - 2} 2\n", "0 1 5000000\n"])
def test_lightgcn_sparse_ids_rejected(tmp_path: Path, train: str) -> None:
    with pytest.raises(DataError, match=r"distinct ids.*load_pairs.*remaps"):
        load_lightgcn(_lgcn(tmp_path, train))


def test_lightgcn_moderately_sparse_ids_accepted(tmp_path: Path) -> None:
    ds = load_lightgcn(_lgcn(tmp_path, "0 1\n900000 999999\n", "900000 1\n"))
    assert ds.train.shape == (900001, 1000000) and ds.n_train == 2


@pytest.mark.parametrize(
    ("test", "shape", "cold"),
    [
        ("0 9\n\n2 1\n", (3, 10), {"cold_users_test": 1, "cold_items_test": 0}),
        ("0 9\n1 10\n", (2, 11), {"cold_users_test": 0, "cold_items_test": 1}),
        ("0 9\n5\n", (6, 10), {"cold_users_test": 0, "cold_items_test": 0}),
        ("7 12 11 12\n", (8, 13), {"cold_users_test": 1, "cold_items_test": 2}),
    ],
)
def test_lightgcn_test_ids_outside_train_are_cold(tmp_path: Path, test: str, shape: tuple, cold: dict) -> None:
    """Ids of test that train never names are accepted; the catalogue spans both files."""
    ds = load_lightgcn(_lgcn(tmp_path, TRAIN_OK, test))
    assert ds.train.shape == shape and ds.test.shape == shape
    assert {k: v for k, v in ds.stats.items() if k.startswith("cold_")} == cold
    assert _cold_brute(_pairs(ds.train), _pairs(ds.test)) == (cold["cold_users_test"], cold["cold_items_test"])


def _cold_brute(train: set, other: set) -> tuple[int, int]:
    """(users, items) of ``other`` that no pair of ``train`` names."""
    return (len({u for u, _ in other} - {u for u, _ in train}), len({i for _, i in other} - {i for _, i in train}))


def test_lightgcn_sparse_ids_over_all_files_rejected(tmp_path: Path) -> None:
    """The density check spans every file: a sparse test id is refused like a sparse train id."""
    with pytest.raises(DataError, match=r"^test\.txt: item ids go up to 5000000 .*train\.txt and test\.txt.*load_pairs"):
        load_lightgcn(_lgcn(tmp_path, TRAIN_OK, "0 5000000\n"))
    folder = _lgcn(tmp_path, TRAIN_OK)
    (folder / "valid.txt").write_text("4000000 1\n")
    with pytest.raises(DataError, match=r"^valid\.txt: user ids go up to 4000000"):
        load_lightgcn(folder)


def _write_valid(folder: Path, text: str) -> Path:
    (folder / "valid.txt").write_text(text)
    return folder


def test_lightgcn_valid_file(tmp_path: Path) -> None:
    folder = _write_valid(_lgcn(tmp_path, "0 1 2\n1 2 3\n", "0 4\n1 0\n"), "0 3 3\n2 5\n")
    ds = load_lightgcn(folder)
    assert ds.train.shape == ds.valid.shape == ds.test.shape == (3, 6)
    assert _pairs(ds.valid) == {(0, 3), (2, 5)} and ds.n_valid == 2
    assert _pairs(ds.train) == {(0, 1), (0, 2), (1, 2), (1, 3)} and _pairs(ds.test) == {(0, 4), (1, 0)}
    assert ds.stats == {"duplicates_train": 0, "duplicates_valid": 1, "duplicates_test": 0,
                        "cold_items_valid": 1, "cold_users_valid": 1, "cold_items_test": 2, "cold_users_test": 0}
    assert ds.summary()["n_valid"] == 2 and ds.valid_users.tolist() == [0, 2]
    assert load_dataset(folder).n_valid == 2


@pytest.mark.parametrize(
    ("valid", "pattern"),
    [
        ("0 1\n", r"\(user 0, item 1\) is in both train\.txt and valid\.txt \(1 pair overlap\)"),
        ("0 9\n", r"\(user 0, item 9\) is in both valid\.txt and test\.txt"),
        ("1 9\n0 x\n", r"^valid\.txt line 2: 'x' is not an integer id"),
        ("1 9\n0 -2\n", r"^valid\.txt line 2: negative id '-2'"),
        ("\n\n", r"^valid\.txt has no interactions"),
        (f"0 {2**31}\n", r"^valid\.txt line 1: id \d+ is too large"),
    ],
)
def test_lightgcn_valid_file_errors(tmp_path: Path, valid: str, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        load_lightgcn(_write_valid(_lgcn(tmp_path, TRAIN_OK), valid))


def test_lightgcn_pair_in_train_and_test(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"\(user 0, item 3\) is in both.*\(4 pairs overlap\)"):
        load_lightgcn(_lgcn(tmp_path, TRAIN_OK, "1 4 9\n0 9 5 3\n"))


# ---------------------------------------------------------------- pairs (CSV/TSV)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_pairs_int_ids_header_autodetect_and_remap(tmp_path: Path) -> None:
    train = _write(tmp_path / "r.csv", "userId,movieId,rating,ts\n10,5,4.0,1\n10,7,3,2\n"
                                      "3,5,1,3\n10,5,2,4\n\n3,100,1,5\n")
    test = _write(tmp_path / "t.csv", "userId,movieId,rating,ts\n3,7,1,1\n10,100,1,1\n")
    ds = load_pairs(train, test_path=test)
    assert ds.name == "r"
    assert ds.user_ids.tolist() == [3, 10] and ds.item_ids.tolist() == [5, 7, 100]
    assert ds.user_ids.dtype == np.int64
    assert _labelled(ds, ds.train) == {(10, 5), (10, 7), (3, 5), (3, 100)}
    assert _labelled(ds, ds.test) == {(3, 7), (10, 100)}
    assert ds.stats == {"header": True, "duplicates_train": 1, "duplicates_test": 0,
                        "split": "file"}
    assert ds.user_index(10) == 1 and ds.item_label(np.array([2])).tolist() == [100]


def test_pairs_header_detected_by_type(tmp_path: Path) -> None:
    ds = load_pairs(_write(tmp_path / "r.csv", "who,what\n1,2\n3,4\n"), holdout=0.5)
    assert ds.stats["header"] is True and ds.user_ids.tolist() == [1, 3]
    ds = load_pairs(_write(tmp_path / "s.csv", "who,what\na,b\nc,d\n"), holdout=0.5)
    assert ds.stats["header"] is False and ds.user_ids.tolist() == ["a", "c", "who"]


def test_pairs_string_ids_by_name_tsv(tmp_path: Path) -> None:
    train = _write(tmp_path / "r.tsv", "ts\titem\tuser\n1\tx\tbob\n2\ty\talice\n3\tz\tbob\n")
    test = _write(tmp_path / "t.tsv", "ts\titem\tuser\n1\ty\tbob\n")
    ds = load_pairs(train, user_col="user", item_col="item", test_path=test)
    assert ds.user_ids.tolist() == ["alice", "bob"] and ds.item_ids.tolist() == ["x", "y", "z"]
    assert _labelled(ds, ds.train) == {("bob", "x"), ("alice", "y"), ("bob", "z")}
    assert _labelled(ds, ds.test) == {("bob", "y")}


def test_pairs_mixed_columns_types_are_independent(tmp_path: Path) -> None:
    train = _write(tmp_path / "r.csv", "1,a\n2,b\n1,b\n")
    test = _write(tmp_path / "t.csv", "2,a\n")
    ds = load_pairs(train, test_path=test)
    assert ds.user_ids.dtype == np.int64 and ds.item_ids.dtype.kind == "U"
    assert ds.stats["header"] is False


@pytest.mark.parametrize(("suffix", "sep"), [(".txt", ";"), (".dat", " "), (".txt", "\t"),
                                             ("", ",")])
def test_pairs_sniffed_separator(tmp_path: Path, suffix: str, sep: str) -> None:
    rows = ["1", "2", "9"], ["1", "3", "9"], ["2", "3", "9"], ["2", "1", "9"]
    train = _write(tmp_path / f"r{suffix}", "".join(sep.join(r) + "\n" for r in rows))
    ds = load_pairs(train, holdout=0.5)
    assert ds.user_ids.tolist() == [1, 2] and ds.item_ids.tolist() == [1, 2, 3]
    assert _labelled(ds, ds.train) | _labelled(ds, ds.test) == {(1, 2), (1, 3), (2, 3), (2, 1)}


def test_pairs_explicit_sep_and_header_false(tmp_path: Path) -> None:
    train = _write(tmp_path / "r.csv", "u|i\n1|2\n1|3\n")
    ds = load_pairs(train, sep="|", header=False, holdout=0.5)
    assert ds.user_ids.tolist() == ["1", "u"]  # header row read as data: string ids
    with pytest.raises(DataError, match="single character"):
        load_pairs(train, sep="||")
    with pytest.raises(DataError, match="need a header"):
        load_pairs(train, sep="|", header=False, user_col="u")


def test_pairs_holdout_split_and_stats(tmp_path: Path) -> None:
    lines = [f"u{u},i{i}" for u in range(20) for i in range(u % 7 + 1)]
    train = _write(tmp_path / "r.csv", "\n".join(lines) + "\n")
    ds = load_pairs(train, holdout=0.3, seed=4)
    assert ds.stats == {"header": False, "duplicates_train": 0, "split": "random", "holdout": 0.3, "seed": 4,
                        "cold_items_test": 0, "cold_users_test": 0}
    everything = {tuple(line.split(",")) for line in lines}
    assert _labelled(ds, ds.train) | _labelled(ds, ds.test) == everything
    assert not _labelled(ds, ds.train) & _labelled(ds, ds.test)
    again = load_pairs(train, holdout=0.3, seed=4)
    assert _pairs(again.test) == _pairs(ds.test)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(DataError, match=r"holdout.*\(0, 1\)"):
            load_pairs(train, holdout=bad)


def test_pairs_errors_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file.*nope.csv"):
        load_pairs(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="no such file.*nope.txt"):
        load_pairs(tmp_path / "nope.txt")
    with pytest.raises(DataError, match=r"e\.csv is empty"):
        load_pairs(_write(tmp_path / "e.csv", "\n \n"))
    with pytest.raises(DataError, match=r"h\.csv has no interactions"):
        load_pairs(_write(tmp_path / "h.csv", "user,item\n"))
    ok = _write(tmp_path / "ok.csv", "1,2\n1,3\n")
    with pytest.raises(DataError, match="no such file.*missing_test"):
        load_pairs(ok, test_path=tmp_path / "missing_test.csv")


def test_pairs_errors_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"f\.csv line 3: expected 2 columns, found 1 "
                                        r"\(line: '7'\)"):
        load_pairs(_write(tmp_path / "f.csv", "1,2\n\n7\n"))
    with pytest.raises(DataError, match=r"g\.csv line 2: empty item id"):
        load_pairs(_write(tmp_path / "g.csv", "1,2\n3, \n"))
    with pytest.raises(DataError, match=r"n\.csv line 3: negative user id '-3'"):
        load_pairs(_write(tmp_path / "n.csv", "1,2\n4,2\n-3,2\n"))
    with pytest.raises(DataError, match=r"m\.csv line 1: negative item id '-2'"):
        load_pairs(_write(tmp_path / "m.csv", "1,-2\n4,2\n"))
    cols = _write(tmp_path / "c.csv", "user,item,rating\n1,2,3\n")
    with pytest.raises(DataError, match=r"no column named 'movie'; available: 'user', 'item', "
                                        r"'rating'"):
        load_pairs(cols, item_col="movie")
    with pytest.raises(DataError, match="expected at least 6 columns"):
        load_pairs(cols, item_col=5)


def test_pairs_test_file_errors(tmp_path: Path) -> None:
    train = _write(tmp_path / "r.csv", "1,a\n2,b\n1,b\n")
    cases = [("2,c\n", r"t\.csv line 1: item 'c' is not in the train file"),
             ("2,a\n7,a\n", r"t\.csv line 2: user '7' is not in the train file"),
             ("x,a\n", r"t\.csv line 1: user 'x' is not in the train file"),
             ("2,a\n-1,a\n", r"t\.csv line 2: negative user id '-1'"),
             ("1,b\n2,a\n2,b\n", r"pair \(user 1, item 'b'\) is in both r\.csv and t\.csv "
                                 r"\(2 pairs overlap\)")]
    for text, pattern in cases:
        with pytest.raises(DataError, match=pattern):
            load_pairs(train, test_path=_write(tmp_path / "t.csv", text))


# ---------------------------------------------------------------- round trip property

_ids = st.one_of(
    st.integers(0, 40),
    st.text(alphabet="abcxyz0123456789", min_size=1, max_size=4),
)


@st.composite
def _pair_sets(draw: st.DrawFn, id_strategy: st.SearchStrategy) -> tuple[list, list]:
    """Train and test pair lists (with duplicates) whose pair sets are disjoint."""
    pairs = draw(st.lists(st.tuples(id_strategy, id_strategy), min_size=2, max_size=60))
    in_test = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    train = [p for p, t in zip(pairs, in_test) if not t]
    test = [p for p, t in zip(pairs, in_test) if t and p not in set(train)]
    return train, test


@settings(max_examples=60, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(data=_pair_sets(st.integers(0, 30)), shuffle_seed=st.integers(0, 2**16))
def test_property_lightgcn_round_trip(tmp_path: Path, data: tuple[list, list],
                                      shuffle_seed: int) -> None:
    train, test = data
    if not train:
        return
    n_users = max(u for u, _ in train) + 1
    n_items = max(i for _, i in train) + 1
    test = [(u, i) for u, i in test if u < n_users and i < n_items]
    if not test:
        return
    rng = np.random.default_rng(shuffle_seed)

    def text(pairs: list[tuple[int, int]]) -> str:
        lines = [f"{u} {i}" if rng.random() < 0.5 else f"{u}\t{i}  " for u, i in pairs]
        by_user: dict[int, list[int]] = {}
        for u, i in pairs:
            by_user.setdefault(u, []).append(i)
        lines += [" ".join(map(str, [u, *items])) for u, items in by_user.items()]
        lines.append("")
        rng.shuffle(lines)
        return "\n".join(lines)

    ds = load_lightgcn(_lgcn(tmp_path, text(train), text(test)))
    assert ds.train.shape == (n_users, n_items)
    assert _pairs(ds.train) == set(train) and _pairs(ds.test) == set(test)
    assert ds.stats["duplicates_train"] == 2 * len(train) - len(set(train))
    assert ds.stats["duplicates_test"] == 2 * len(test) - len(set(test))


def _expected_ids(tokens: list[str]) -> list:
    """Original ids as the pairs loader should read them, computed independently."""
    if all(re.fullmatch(r"[0-9]+", t) for t in tokens):
        return [int(t) for t in tokens]
    return tokens


@settings(max_examples=80, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(data=st.one_of(_pair_sets(st.integers(0, 40).map(str)), _pair_sets(_ids.map(str))),
       with_header=st.booleans(),
       sep=st.sampled_from([",", "\t", ";"]))
def test_property_pairs_round_trip(tmp_path: Path, data: tuple[list, list], with_header: bool,
                                   sep: str) -> None:
    train, test = data
    if not train:
        return
    users = _expected_ids([u for u, _ in train])
    items = _expected_ids([i for _, i in train])
    key_u = dict(zip((u for u, _ in train), users))
    key_i = dict(zip((i for _, i in train), items))
    test = [(u, i) for u, i in test if u in key_u and i in key_i
            and (key_u[u], key_i[i]) not in set(zip(users, items))]
    for fname, rows in (("train.txt", train), ("test.txt", test)):
        with open(tmp_path / fname, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter=sep)
            if with_header:
                writer.writerow(["user_id", "item_id", "rating"])
            writer.writerows([u, i, "5"] for u, i in rows)
    kwargs = {"header": None if with_header else False, "sep": sep}
    if test:
        ds = load_pairs(tmp_path / "train.txt", test_path=tmp_path / "test.txt", **kwargs)
    else:
        ds = load_pairs(tmp_path / "train.txt", holdout=0.5, **kwargs)
    assert ds.user_ids.tolist() == sorted(set(users))
    assert ds.item_ids.tolist() == sorted(set(items))
    expected_train = set(zip(users, items))
    if test:
        assert _labelled(ds, ds.train) == expected_train
        assert _labelled(ds, ds.test) == {(key_u[u], key_i[i]) for u, i in test}
        assert ds.stats["duplicates_train"] == len(train) - len(expected_train)
    else:
        assert _labelled(ds, ds.train) | _labelled(ds, ds.test) == expected_train
    assert ds.stats["header"] is with_header


# ---------------------------------------------------------------- holdout split


@st.composite
def _matrices(draw: st.DrawFn) -> sp.csr_matrix:
    n_users, n_items = draw(st.integers(1, 15)), draw(st.integers(1, 15))
    cells = draw(st.sets(st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
                         max_size=n_users * n_items))
    rows = np.array([c[0] for c in cells], dtype=np.int64)
    cols = np.array([c[1] for c in cells], dtype=np.int64)
    return sp.csr_matrix((np.ones(len(cells), np.float32), (rows, cols)), shape=(n_users, n_items))


@settings(max_examples=100, deadline=None)
@given(m=_matrices(), fraction=st.floats(0.01, 0.99), seed=st.integers(0, 2**32 - 1))
def test_property_holdout_split(m: sp.csr_matrix, fraction: float, seed: int) -> None:
    kept, held = holdout_split(m, fraction, seed)
    for part in (kept, held):
        assert isinstance(part, sp.csr_matrix) and part.dtype == np.float32
        assert part.shape == m.shape and set(part.data.tolist()) <= {1.0}
    assert _pairs(kept) | _pairs(held) == _pairs(m) and not _pairs(kept) & _pairs(held)
    degree = np.diff(m.indptr)
    n_kept, n_held = np.diff(kept.indptr), np.diff(held.indptr)
    for d, k, h in zip(degree, n_kept, n_held):
        if d >= 2:
            assert k >= 1 and h >= 1 and h == min(max(round(fraction * d), 1), d - 1)
        else:
            assert h == 0
    again = holdout_split(m, fraction, seed)
    assert _pairs(again[0]) == _pairs(kept) and _pairs(again[1]) == _pairs(held)


def test_holdout_seed_matters_and_errors() -> None:
    m = sp.random(50, 40, density=0.3, format="csr", random_state=1)
    a, b = holdout_split(m, 0.2, 0)[1], holdout_split(m, 0.2, 1)[1]
    assert _pairs(a) != _pairs(b)
    for bad in (0, 1, -1, 2.0):
        with pytest.raises(DataError, match=r"\(0, 1\)"):
            holdout_split(m, bad, 0)


# ---------------------------------------------------------------- load_dataset, sample, Gowalla


def test_load_dataset_dispatch(tmp_path: Path) -> None:
    folder = _lgcn(tmp_path, TRAIN_OK)
    assert load_dataset(folder).n_train == 18
    assert load_dataset(folder, name="n").name == "n"
    csv_file = _write(tmp_path / "p.csv", "1,2\n1,3\n2,2\n")
    assert load_dataset(csv_file, holdout=0.5).stats["split"] == "random"
    with pytest.raises(DataError, match="no such file or directory"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match=r"folder has neither train_list\.npy \(DiffRec format\) nor train\.txt "
                                        r"\(LightGCN format\)"):
        load_dataset(tmp_path / "empty_dir")


def test_sample_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    ds = load_sample()
    assert ds.name == "gowalla-sample" and ds.user_ids is None
    assert (ds.n_users, ds.n_items, ds.n_train, ds.n_test) == (7183, 3500, 91653, 26056)
    assert load_dataset().summary() == ds.summary()
    assert np.diff(ds.train.indptr).min() >= 2 and np.diff(ds.test.indptr).min() >= 1
    assert np.diff(ds.train.tocsc().indptr).min() >= 1
    size = sum((SAMPLE_DIR / f).stat().st_size for f in ("train.txt", "test.txt"))
    assert size <= 1_000_000
    assert (SAMPLE_DIR / "PROVENANCE.md").is_file()


@needs_gowalla
def test_sample_matches_regeneration(tmp_path: Path) -> None:
    counts = make_gowalla_sample(GOWALLA, tmp_path)
    assert counts == {"users": 7183, "items": 3500, "train": 91653, "test": 26056}
    for fname in ("train.txt", "test.txt"):
        assert (tmp_path / fname).read_bytes() == (SAMPLE_DIR / fname).read_bytes()


@needs_gowalla
def test_real_gowalla_counts() -> None:
    ds = load_lightgcn(GOWALLA)
    assert (ds.n_users, ds.n_items, ds.n_train, ds.n_test) == (29858, 40981, 810128, 217242)
    assert ds.stats == {"duplicates_train": 0, "duplicates_test": 0, "cold_items_test": 0, "cold_users_test": 0}
    assert ds.name == "gowalla"



@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 6)), max_size=40))
def test_test_users_are_the_users_with_test_items(pairs: list[tuple[int, int]]) -> None:
    """``Dataset.test_users`` is the sorted set of users appearing in the test pairs."""
    users = np.array([u for u, _ in pairs], dtype=np.int64)
    items = np.array([i for _, i in pairs], dtype=np.int64)
    test = sp.csr_matrix((np.ones(len(pairs), np.float32), (users, items)), shape=(10, 7))
    ds = Dataset(sp.csr_matrix((10, 7), dtype=np.float32), test, "t")
    assert ds.test_users.tolist() == sorted({u for u, _ in pairs})


# ---------------------------------------------------------------- LightGCN with valid.txt and cold ids


@settings(max_examples=60, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(pairs=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=3, max_size=50),
       where=st.lists(st.sampled_from(["train", "valid", "test"]), min_size=50, max_size=50))
def test_property_lightgcn_three_files_with_cold_ids(tmp_path: Path, pairs: list, where: list) -> None:
    """Three disjoint pair sets round-trip; the catalogue and the cold counts match a brute force."""
    split: dict[str, set] = {"train": set(), "valid": set(), "test": set()}
    for p, w in zip(pairs, where):
        if not any(p in s for s in split.values()):
            split[w].add(p)
    if not all(split.values()):
        return
    folder = _lgcn(tmp_path, *("".join(f"{u} {i}\n" for u, i in sorted(split[s])) for s in ("train", "test")))
    _write_valid(folder, "".join(f"{u} {i} {i}\n" for u, i in sorted(split["valid"])))
    ds = load_lightgcn(folder)
    every = set().union(*split.values())
    assert ds.train.shape == (max(u for u, _ in every) + 1, max(i for _, i in every) + 1)
    assert _pairs(ds.train) == split["train"] and _pairs(ds.valid) == split["valid"] and _pairs(ds.test) == split["test"]
    assert ds.stats["duplicates_valid"] == len(split["valid"])
    for name in ("valid", "test"):
        users, items = _cold_brute(split["train"], split[name])
        assert (ds.stats[f"cold_users_{name}"], ds.stats[f"cold_items_{name}"]) == (users, items)


# ---------------------------------------------------------------- DiffRec (.npy)

from bspm_jax.data import carve_validation, load_diffrec  # noqa: E402


def _shared_diffrec() -> Path | None:
    """The shared ml-1m-diffrec folder, or None when it is not available."""
    candidates = [SHARED_DATA / "ml-1m-diffrec",
                  Path("/work/shared/data/ml-1m-diffrec")]
    if os.environ.get("BSPM_SHARED_DATA"):
        candidates.append(Path(os.environ["BSPM_SHARED_DATA"]) / "ml-1m-diffrec")
    return next((c for c in candidates if (c / "train_list.npy").is_file()), None)


ML1M = _shared_diffrec()


def _npy_folder(tmp_path: Path, arrays: dict[str, object], name: str = "dr") -> Path:
    """A DiffRec folder with ``arrays`` (by split) saved by np.save, or raw bytes written as is."""
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    for f in folder.iterdir():
        f.unlink()
    for split, value in arrays.items():
        file = folder / f"{split}_list.npy"
        if isinstance(value, bytes):
            file.write_bytes(value)
        else:
            np.save(file, value, allow_pickle=True)
    return folder


def _arr(pairs: list[tuple[int, int]], dtype: object = np.int64) -> np.ndarray:
    return np.asarray(pairs, dtype=dtype).reshape(-1, 2)


@settings(max_examples=60, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(pairs=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 15)), min_size=2, max_size=60),
       where=st.lists(st.sampled_from(["train", "valid", "test"]), min_size=60, max_size=60),
       repeat=st.lists(st.booleans(), min_size=60, max_size=60),
       dtype=st.sampled_from([np.int64, np.int32, np.uint16, np.dtype(">i8"), np.uint64]),
       with_valid=st.booleans(), fortran=st.booleans())
def test_property_diffrec_round_trip(tmp_path: Path, pairs: list, where: list, repeat: list, dtype: object,
                                     with_valid: bool, fortran: bool) -> None:
    """Pair sets (with repeats, any integer dtype) load as the same sets; duplicates and cold ids counted."""
    split: dict[str, list] = {"train": [], "valid": [], "test": []}
    owner: dict[tuple, str] = {}
    for p, w, r in zip(pairs, where, repeat):
        w = owner.setdefault(p, w if with_valid or w != "valid" else "train")
        split[w] += [p, p] if r else [p]
    if not split["train"] or not split["test"]:
        return
    arrays = {s: _arr(v, dtype) for s, v in split.items() if v or s != "valid"}
    if fortran:
        arrays = {s: np.asfortranarray(a) for s, a in arrays.items()}
    if not with_valid:
        arrays.pop("valid", None)
    if "valid" in arrays and not split["valid"]:
        arrays.pop("valid")
    ds = load_diffrec(_npy_folder(tmp_path, arrays))
    every = {p for s in arrays for p in split[s]}
    assert ds.train.shape == (max(u for u, _ in every) + 1, max(i for _, i in every) + 1)
    assert ds.name == "dr" and ds.user_ids is None
    for s in ("train", "valid", "test"):
        matrix = getattr(ds, s)
        if s not in arrays:
            assert matrix is None and f"duplicates_{s}" not in ds.stats
            continue
        assert _pairs(matrix) == set(split[s]) and matrix.dtype == np.float32
        assert ds.stats[f"duplicates_{s}"] == len(split[s]) - len(set(split[s]))
        if s != "train":
            assert (ds.stats[f"cold_users_{s}"], ds.stats[f"cold_items_{s}"]) == _cold_brute(set(split["train"]), set(split[s]))
    assert load_dataset(_npy_folder(tmp_path, arrays)).summary() == ds.summary()


GOOD_TRAIN = _arr([(0, 1), (0, 2), (1, 0), (2, 3)])
GOOD_TEST = _arr([(0, 3), (1, 2)])


def _header_only(array: np.ndarray) -> bytes:
    """The .npy bytes of ``array`` with its data cut off after 3 bytes."""
    import io
    buf = io.BytesIO()
    np.save(buf, array)
    raw = buf.getvalue()
    return raw[: len(raw) - array.nbytes + 3]


@pytest.mark.parametrize(
    ("split", "value", "pattern"),
    [
        ("train", b"user,item\n0,1\n", r"^train_list\.npy is not a \.npy file .*magic.*train_list\.npy$"),
        ("train", b"", r"^train_list\.npy is not a \.npy file"),
        ("test", b"PK\x03\x04zipzip", r"^test_list\.npy is not a \.npy file"),
        ("train", b"\x93NUMPY\x01", r"^train_list\.npy: corrupt or truncated \.npy header"),
        ("train", b"\x93NUMPY\x01\x00\x20\x00{'descr': '<i8', 'fortran_order': False", r"corrupt or truncated \.npy header"),
        ("train", b"\x93NUMPY\x07\x00\x10\x00" + b" " * 16, r"^train_list\.npy: unsupported \.npy format version 7\.0"),
        ("train", _header_only(GOOD_TRAIN), r"^train_list\.npy is truncated: its header announces 4 pairs \(64 bytes\) but 3 bytes follow"),
        ("valid", np.array([[0, "a"]], dtype=object), r"^valid_list\.npy holds an object array \(pickled"),
        ("train", np.array([{"u": 1}], dtype=object), r"^train_list\.npy holds an object array"),
        ("train", GOOD_TRAIN.astype(np.float64), r"^train_list\.npy has dtype float64; user and item ids must be integers"),
        ("test", GOOD_TEST.astype(bool), r"^test_list\.npy has dtype bool"),
        ("train", np.array(["0", "1"]), r"has dtype <U1"),
        ("train", np.zeros((2, 3), np.int64), r"^train_list\.npy holds an array of shape \(2, 3\); expected shape \(n, 2\)"),
        ("train", np.arange(4), r"shape \(4,\); expected shape \(n, 2\)"),
        ("train", np.zeros((2, 2, 2), np.int64), r"shape \(2, 2, 2\)"),
        ("train", np.int64(3), r"shape \(\)"),
        ("train", _arr([]), r"^train_list\.npy has no interactions"),
        ("test", _arr([]), r"^test_list\.npy has no interactions"),
        ("train", _arr([(0, 1), (-3, 2)]), r"^train_list\.npy row 1: negative user id -3 \(1 negative user ids\)"),
        ("test", _arr([(0, -1)], np.int8), r"^test_list\.npy row 0: negative item id -1"),
        ("train", _arr([(0, 1), (1, 2**31 - 1)]), r"^train_list\.npy row 1: item id 2147483647 is too large \(ids must be < 2147483647\)"),
        ("valid", _arr([(2**63 + 5, 1)], np.uint64), r"^valid_list\.npy row 0: user id 9223372036854775813 is too large"),
        ("valid", _arr([(0, 1)]), r"pair \(user 0, item 1\) is in both train_list\.npy and valid_list\.npy \(1 pair overlap\)"),
        ("test", _arr([(0, 1), (0, 2), (3, 3)]), r"pair \(user 0, item 1\) is in both train_list\.npy and test_list\.npy \(2 pairs overlap\)"),
        ("valid", _arr([(0, 3)]), r"pair \(user 0, item 3\) is in both valid_list\.npy and test_list\.npy"),
        ("test", _arr([(0, 9_000_000)]), r"^test_list\.npy: item ids go up to 9000000 but only \d+ distinct ids are used .*DiffRec format"),
    ],
)
def test_diffrec_refusals(tmp_path: Path, split: str, value: object, pattern: str) -> None:
    arrays: dict[str, object] = {"train": GOOD_TRAIN, "test": GOOD_TEST, split: value}
    folder = _npy_folder(tmp_path, arrays)
    with pytest.raises(DataError, match=pattern) as info:
        load_diffrec(folder)
    assert "\n" not in str(info.value)
    if split != "valid" or "in both" not in pattern:
        assert f"{split}_list.npy" in str(info.value)


def test_diffrec_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        load_diffrec(tmp_path / "nope")
    folder = _npy_folder(tmp_path, {"train": GOOD_TRAIN})
    with pytest.raises(DataError, match=r"missing test_list\.npy in .*test_list\.npy does not exist"):
        load_diffrec(folder)
    with pytest.raises(DataError, match=r"missing test_list\.npy"):
        load_dataset(folder)
    folder = _npy_folder(tmp_path, {"test": GOOD_TEST})
    with pytest.raises(DataError, match=r"missing train_list\.npy"):
        load_diffrec(folder)
    (tmp_path / "f.npy").write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder"):
        load_diffrec(tmp_path / "f.npy")


def test_diffrec_without_valid_and_name(tmp_path: Path) -> None:
    ds = load_diffrec(_npy_folder(tmp_path, {"train": GOOD_TRAIN, "test": GOOD_TEST}), name="x")
    assert ds.name == "x" and ds.valid is None and ds.train.shape == (3, 4) and _pairs(ds.test) == {(0, 3), (1, 2)}
    assert ds.stats == {"duplicates_train": 0, "duplicates_test": 0, "cold_items_test": 0, "cold_users_test": 0}


@pytest.mark.skipif(ML1M is None, reason="shared ml-1m-diffrec data not found")
def test_real_ml1m_diffrec() -> None:
    ds = load_dataset(ML1M)
    assert (ds.n_users, ds.n_items, ds.n_train, ds.n_valid, ds.n_test) == (5949, 2810, 403_277, 110_722, 57_532)
    assert ds.stats == {"duplicates_train": 0, "duplicates_valid": 0, "duplicates_test": 0,
                        "cold_items_valid": 0, "cold_users_valid": 0, "cold_items_test": 0, "cold_users_test": 0}
    raw = {s: np.load(ML1M / f"{s}_list.npy", allow_pickle=False) for s in ("train", "valid", "test")}
    for s, a in raw.items():
        assert _pairs(getattr(ds, s)) == set(map(tuple, a.tolist()))
    assert ds.summary() == {"name": "ml-1m-diffrec", "n_users": 5949, "n_items": 2810, "n_train": 403_277,
                            "n_test": 57_532, "n_valid": 110_722}


# ---------------------------------------------------------------- validation carved from train


@settings(max_examples=40, deadline=None)
@given(m=_matrices(), fraction=st.floats(0.05, 0.95), seed=st.integers(0, 2**32 - 1))
def test_property_carve_validation(m: sp.csr_matrix, fraction: float, seed: int) -> None:
    test = sp.csr_matrix(m.shape, dtype=np.float32)
    ds = Dataset(sp.csr_matrix(m, dtype=np.float32), test, "d", stats={"duplicates_train": 3})
    carved = carve_validation(ds, fraction, seed)
    assert _pairs(carved.train) | _pairs(carved.valid) == _pairs(m) and not _pairs(carved.train) & _pairs(carved.valid)
    assert carved.test is test and carved.name == "d"
    kept, held = holdout_split(m, fraction, seed)
    assert _pairs(carved.train) == _pairs(kept) and _pairs(carved.valid) == _pairs(held)
    again = carve_validation(ds, fraction, seed)
    assert _pairs(again.train) == _pairs(carved.train) and _pairs(again.valid) == _pairs(carved.valid)
    users, items = _cold_brute(_pairs(carved.train), _pairs(carved.valid))
    assert carved.stats == {"duplicates_train": 3, "validation": "carved", "validation_fraction": fraction,
                            "validation_seed": seed, "cold_items_valid": items, "cold_users_valid": users,
                            "cold_items_test": 0, "cold_users_test": 0}
    assert carved.n_valid == len(_pairs(held)) and carved.summary()["n_valid"] == carved.n_valid


def test_carve_validation_seed_refusals_and_tuning_split() -> None:
    from bspm_jax.tuning import validation_split

    ds = load_sample()
    a, b = carve_validation(ds, 0.2, 0), carve_validation(ds, 0.2, 1)
    assert _pairs(a.valid) != _pairs(b.valid) and a.n_train + a.n_valid == ds.n_train
    tuned = validation_split(ds, 0.2, 0)
    assert _pairs(tuned.train) == _pairs(a.train) and _pairs(tuned.valid) == _pairs(a.valid)
    assert validation_split(a, 0.5, 3) is a  # a dataset's own validation split is used as is
    with pytest.raises(DataError, match="already has a validation split"):
        carve_validation(a, 0.2, 0)
    with pytest.raises(DataError, match=r"\(0, 1\)"):
        carve_validation(ds, 1.0, 0)


def test_dataset_valid_shape_is_checked() -> None:
    m = sp.csr_matrix((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="valid shape"):
        Dataset(m, m, "x", valid=sp.csr_matrix((3, 5), dtype=np.float32))


def test_run_experiment_on_a_diffrec_folder_reports_valid_and_cold_counts(tmp_path: Path) -> None:
    """The run JSON's dataset block carries n_valid and the cold counts; test excludes train and valid."""
    from bspm_jax import evaluate, make_model
    from bspm_jax.experiment import run_experiment

    folder = _npy_folder(tmp_path, {"train": GOOD_TRAIN, "valid": _arr([(0, 4), (3, 0)]), "test": _arr([(0, 5), (1, 4)])})
    result = run_experiment(make_model("popularity"), folder, ks=(2,))
    block = result["dataset"]
    assert (block["n_train"], block["n_valid"], block["n_test"], block["n_users"], block["n_items"]) == (4, 2, 2, 4, 6)
    assert (block["cold_items_valid"], block["cold_users_valid"], block["cold_items_test"], block["cold_users_test"]) == (1, 1, 2, 0)
    ds = load_diffrec(folder)
    assert result["metrics"] == evaluate(make_model("popularity").fit(ds.train), ds, ks=(2,)).metrics


def test_pairs_test_file_ids_of_another_kind(tmp_path: Path) -> None:
    """A test file's ids are matched to train's as train reads them: text against text, whatever the file's type."""
    import pandas as pd

    train = _write(tmp_path / "r.csv", "user,item\nu1,a\n7,b\nu1,b\n")
    pd.DataFrame({"user": [7], "item": ["a"]}).to_parquet(tmp_path / "t.parquet")  # an integer column
    ds = load_pairs(train, user_col="user", item_col="item", test_path=tmp_path / "t.parquet")
    assert _labelled(ds, ds.test) == {("7", "a")}
    ints = _write(tmp_path / "i.csv", "1,2\n3,4\n")
    with pytest.raises(DataError, match=r"t2\.csv line 2: user '12345678901234567890' is not in the train file"):
        load_pairs(ints, test_path=_write(tmp_path / "t2.csv", "1,4\n12345678901234567890,2\n"))
