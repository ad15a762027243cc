"""The production path: a CSV of string ids fitted on everything, saved, moved, its CSV deleted, recommending by id."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from bspm_jax import load_history, load_model
from bspm_jax.cli import main


def _write_plays(path: Path, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(f"user_{u:03d}", f"item_{i:03d}", int(t)) for u in range(60)
            for i, t in zip(rng.choice(45, rng.integers(3, 12), replace=False), rng.integers(0, 1000, 12))]
    frame = pd.DataFrame(rows, columns=["who", "what", "when"])
    frame.to_csv(path, index=False)
    return frame


def _bspm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bspm_jax", *args], capture_output=True, text=True, timeout=600)


def test_saved_model_recommends_after_a_move_with_its_csv_deleted(tmp_path: Path) -> None:
    plays = tmp_path / "plays.csv"
    frame = _write_plays(plays)
    saved = tmp_path / "model"
    proc = _bspm("fit", "--data", str(plays), "--user-col", "who", "--item-col", "what", "--time-col", "when",
                 "--split", "none", "--set", "rank=16", "--save", str(saved), "--quiet")
    assert proc.returncode == 0, proc.stderr
    history = tmp_path / "new.txt"
    history.write_text("fresh item_001 item_002 item_030\n")
    before = tmp_path / "before.parquet"
    args = ["--users", "all", "--history-file", str(history), "--k", "5", "--quiet"]
    assert main(["recommend", "--load", str(saved), *args, "--out", str(before)]) == 0
    moved = tmp_path / "elsewhere" / "model"
    moved.parent.mkdir()
    shutil.move(saved, moved)
    plays.unlink()
    after = tmp_path / "after.csv"
    proc = _bspm("recommend", "--load", str(moved), *args, "--out", str(after))
    assert proc.returncode == 0, proc.stderr
    a = pd.read_parquet(before)
    b = pd.read_csv(after)
    assert list(a.columns) == ["user", "rank", "item", "score"] == list(b.columns)
    pd.testing.assert_frame_equal(a.drop(columns="score"), b.drop(columns="score"), check_dtype=False)
    np.testing.assert_allclose(a.score, b.score, rtol=1e-5)
    # every user of the CSV, then the new one; each list against brute-force scores of the user's history
    users = sorted(frame.who.unique())
    assert a.user.tolist() == [u for u in users for _ in range(5)] + ["fresh"] * 5
    model, data = load_model(moved), load_history(moved)
    items = {name: k for k, name in enumerate(data.item_ids.tolist())}
    for user in ("user_000", "user_007", "fresh"):
        seen = ({"item_001", "item_002", "item_030"} if user == "fresh"
                else set(frame.what[frame.who == user]))
        row = np.zeros((1, len(items)), np.float32)
        row[0, [items[i] for i in seen]] = 1
        scores = np.array(model.score(jnp.asarray(row)))[0]
        scores[row[0] > 0] = -np.inf
        best = np.argsort(-scores, kind="stable")[:5]
        mine = a[a.user == user]
        np.testing.assert_allclose(mine.score, scores[best], rtol=1e-4)
        assert set(mine.item) == {data.item_ids[i] for i in best} and not set(mine.item) & seen


@pytest.mark.parametrize("args, message", [
    (["fit", "--data", "{plays}", "--user-col", "who", "--item-col", "movie", "--split", "none", "--save", "{out}"],
     "plays.csv: no column named 'movie'; available: 'who', 'what', 'when'"),
    (["fit", "--data", "{plays}", "--user-col", "who", "--item-col", "what", "--split", "none", "--set", "rank=500",
      "--save", "{out}"], "rank = 500 does not fit this data: an SVD rank must be an integer in 1..44 for a 60 x 45 "
                          "matrix (below its smaller side); set rank to at most 44"),
    (["fit", "--model", "chebycf", "--data", "{plays}", "--user-col", "who", "--item-col", "what", "--split", "none",
      "--set", "eta=45", "--save", "{out}"], "eta = 45 does not fit this data"),
    (["fit", "--data", "{plays}", "--user-col", "who", "--item-col", "what", "--split", "time", "--save", "{out}"],
     "a time split needs a time column (time_col)"),
    (["fit", "--data", "{plays}", "--user-col", "who", "--item-col", "what", "--time-col", "when", "--split", "time",
      "--cut", "2020-01-01", "--save", "{out}"], "the time column holds numbers: give the cut as a number"),
    (["fit", "--data", "{plays}", "--user-col", "who", "--item-col", "what", "--time-col", "when", "--split", "last",
      "--last-n", "0", "--save", "{out}"], "last_n count must be an integer >= 1, got 0"),
    (["fit", "--data", "{dir}/empty.csv", "--user-col", "who", "--item-col", "what", "--save", "{out}"],
     "empty.csv has no interactions"),
    (["fit", "--data", "{dir}/holes.csv", "--user-col", "who", "--item-col", "what", "--save", "{out}"],
     "holes.csv line 3: empty user id (column 'who')"),
    (["fit", "--data", "{dir}/holes.parquet", "--user-col", "who", "--item-col", "what", "--save", "{out}"],
     "holes.parquet: item column 'what' has 1 missing ids (NaN, None or null), the first in holes.parquet row 2"),
    (["recommend", "--load", "{model}", "--users", "user_000", "--k", "44"], "k = 44 is more than the "),
    (["recommend", "--load", "{model}", "--users", "nobody", "--k", "3"], "unknown user id 'nobody'"),
    (["recommend", "--load", "{model}", "--history", "item_001,nothing", "--k", "3"], "unknown item id 'nothing'"),
    (["recommend", "--load", "{model}", "--users", "all", "--out", "{dir}/r.json"],
     "recommendations are written as .parquet, .pq, .csv: r.json has none"),
    (["recommend", "--load", "{model}", "--users-file", "{dir}/none.txt"], "no such users file"),
])
def test_refusals_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    plays = tmp_path / "plays.csv"
    _write_plays(plays)
    (tmp_path / "empty.csv").write_text("who,what\n")
    (tmp_path / "holes.csv").write_text("who,what\nu1,i1\n,i2\n")
    pd.DataFrame({"who": ["u1", "u2"], "what": ["i1", None]}).to_parquet(tmp_path / "holes.parquet")
    model = tmp_path / "model"
    if "{model}" in args:
        assert main(["fit", "--data", str(plays), "--user-col", "who", "--item-col", "what", "--split", "none",
                     "--model", "popularity", "--save", str(model), "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    filled = [a.format(plays=plays, out=out, model=model, dir=tmp_path) for a in args]
    assert main([*filled, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not (tmp_path / "r.json").exists()


def test_parquet_export_of_integer_ids_with_new_users(tmp_path: Path) -> None:
    """Integer user ids beside new users' labels: one text user column in every chunk, nothing confused."""
    rng = np.random.default_rng(2)
    rows = [(u, i) for u in range(30) for i in rng.choice(20, 4, replace=False)]
    (tmp_path / "ints.csv").write_text("u,i\n" + "".join(f"{u},{i}\n" for u, i in rows))
    out = tmp_path / "r.parquet"
    assert main(["recommend", "--data", str(tmp_path / "ints.csv"), "--model", "popularity", "--users", "all",
                 "--history", "5,6", "--k", "2", "--out", str(out), "--quiet"]) == 0
    recs = pd.read_parquet(out)
    assert recs.user.tolist() == [str(u) for u in range(30) for _ in range(2)] + ["new1"] * 2
    assert not set(recs.item[recs.user == "new1"]) & {5, 6}
    for u in range(30):  # fitted on every pair of the file: nothing recommended from the user's own rows
        assert not set(recs.item[recs.user == str(u)]) & {i for v, i in rows if v == u}
