"""The results store: records round-trip, keys say what a run is, two writing processes lose nothing."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from bspm_jax.compare import ResultsStore, RunRecord, identity, run_key
from bspm_jax.errors import DataError


def _record(label: str = "bspm", seed: int = 0, recall: float = 0.19, finished: str = "2026-12-07T20:00:00") -> RunRecord:
    return RunRecord(label=label, model="bspm", kind="final", seed=seed, settings={"rank": 64, "T_s": 2.5}, train={},
                     chosen_by="preset", protocol={"name": "A", "description": "d"}, dataset={"name": "d", "digest": "ab12"},
                     validation={"recall@20": recall - 0.05}, test={"recall@20": recall, "ndcg@20": recall - 0.03},
                     fit_s=1.5, score_s=0.25, search_s=0.0, peak_mib=812.0, training={}, curve=[],
                     machine={"node": "vm"}, version="0.1.0", command="bspm run --preset x", finished=finished)


def test_records_round_trip_and_replace_by_key(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results.sqlite")
    first = _record()
    key = store.put(first)
    assert store.get(key) == first and store.get("nope") is None
    store.put(dataclasses.replace(first, test={"recall@20": 0.2}))  # the same run again replaces it
    assert [r.test for r in store.records()] == [{"recall@20": 0.2}]
    other = _record(seed=1, finished="2026-12-07T20:00:01")
    store.put(other)
    assert [r.seed for r in ResultsStore(tmp_path / "results.sqlite").records()] == [0, 1]  # reopened


def test_key_is_what_the_run_is() -> None:
    r = _record()
    what = identity("final", {"T_s": 2.5, "rank": 64}, {}, "preset")
    assert r.key == run_key("bspm", what, 0, {"description": "d", "name": "A"}, "ab12")  # key order is irrelevant
    assert len({r.key, _record(seed=1).key, _record(label="gf-cf").key,
                dataclasses.replace(r, settings={"rank": 32}).key, dataclasses.replace(r, kind="trial").key,
                dataclasses.replace(r, train={"lr": 0.1}).key, dataclasses.replace(r, chosen_by="grid").key,
                dataclasses.replace(r, dataset={"digest": "cd34"}).key}) == 8
    assert dataclasses.replace(r, test={"recall@20": 0.5}, fit_s=9.0).key == r.key  # results are not identity


WRITER = r"""
import dataclasses, sys
sys.path.insert(0, sys.argv[3])
from test_store import _record
from bspm_jax.compare import ResultsStore
store = ResultsStore(sys.argv[1])
for i in range(40):
    store.put(_record(label=f"{sys.argv[2]}-{i}", finished=f"2026-12-07T20:00:{i:02d}"))
"""


def test_two_processes_writing_one_store_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    ResultsStore(path)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(Path(__file__).parent)],
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    labels = sorted(r.label for r in ResultsStore(path).records())
    assert labels == sorted(f"{n}-{i}" for n in "ab" for i in range(40))


def test_damaged_or_foreign_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database at all, just bytes" * 40)
    with pytest.raises(DataError, match=r"junk\.sqlite is not a bspm results store \(SQLite\)"):
        ResultsStore(tmp_path / "junk.sqlite")
    with pytest.raises(DataError, match="is a folder, not a results store"):
        ResultsStore(tmp_path)
    store = ResultsStore(tmp_path / "r.sqlite")
    import sqlite3

    with sqlite3.connect(tmp_path / "r.sqlite") as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'format'")
    with pytest.raises(DataError, match="is a results store of format 99; this bspm_jax reads 2"):
        ResultsStore(tmp_path / "r.sqlite")
    del store
