"""A comparison on the shipped sample: each stored run equals run_experiment, a rerun redoes nothing, the
leaderboard's means and spreads equal NumPy's over the stored runs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from bspm_jax.compare.leaderboard import leaderboard, to_csv, to_markdown
from bspm_jax.compare.run import compare, entries
from bspm_jax.compare.store import ResultsStore
from bspm_jax.data import carve_validation, load_dataset
from bspm_jax.evaluation import evaluate
from bspm_jax.models import make_model


def test_compare_stores_each_run_once_and_ranks_them(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}") for u in range(80) for i in rng.choice(40, rng.integers(5, 15), replace=False)]
    data = tmp_path / "plays.csv"
    data.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    contenders = entries(models=["popularity", "lgcn-ide"])
    first = compare(data, contenders, tmp_path / "out")
    assert [r.label for r in first] == ["popularity", "lgcn-ide"] and all(r.protocol["name"] == "A" for r in first)
    dataset = carve_validation(load_dataset(data), 0.2, 0)  # what the runs saw, computed independently
    for r in first:
        model = make_model(r.label).fit(dataset.train)
        assert r.test["recall@20"] == evaluate(model, dataset, ks=(20,)).metrics["recall@20"]
        assert r.validation["recall@20"] == evaluate(model, dataset, ks=(20,), split="valid").metrics["recall@20"]
    again = compare(data, contenders, tmp_path / "out")  # nothing is redone: the stored records come back
    assert [r.finished for r in again] == [r.finished for r in first]
    assert len(ResultsStore(tmp_path / "out" / "results.sqlite").records()) == 2
    board = leaderboard(again)
    best = max(first, key=lambda r: r.test["recall@20"])
    assert board[0].model == best.label and board[0].test["recall@20"] == best.test["recall@20"]
    table = list(csv.DictReader(to_csv(board).splitlines()))
    assert [t["model"] for t in table] == [b.model for b in board] and float(table[0]["recall@20_sd"]) == 0.0
    assert to_markdown(board, "A").startswith("Protocol: A\n")


def test_leaderboard_means_and_spreads_equal_numpy() -> None:
    from test_store import _record

    recs = [_record(label="a", seed=s, recall=v) for s, v in enumerate([0.10, 0.14, 0.12])] + [_record(label="b", recall=0.13)]
    board = leaderboard(recs)
    assert [row.model for row in board] == ["b", "a"]
    a = board[1]
    assert a.runs == 3 and np.isclose(a.test["recall@20"], np.mean([0.10, 0.14, 0.12]))
    assert np.isclose(a.test_sd["recall@20"], np.std([0.10, 0.14, 0.12], ddof=1))
    assert "| a | 0.1200 ± 0.0200 |" in to_markdown(board, "A")


def test_cli_compare_writes_the_store_and_the_leaderboards(tmp_path: Path, capsys) -> None:
    from bspm_jax.cli import main

    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}") for u in range(60) for i in rng.choice(30, rng.integers(5, 12), replace=False)]
    (tmp_path / "p.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    out = tmp_path / "cmp"
    assert main(["compare", "--data", str(tmp_path / "p.csv"), "--models", "popularity,lgcn-ide", "--no-tune",
                 "--out", str(out), "--quiet"]) == 0
    assert {p.name for p in out.iterdir()} >= {"results.sqlite", "leaderboard.md", "leaderboard.csv", "report.html"}
    page = (out / "report.html").read_text()
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched at view time
    assert page.count("<circle") == 2 and "popularity" in page and "<svg" in page
    table = list(csv.DictReader((out / "leaderboard.csv").read_text().splitlines()))
    stored = {r.label: r.test["recall@20"] for r in ResultsStore(out / "results.sqlite").records()}
    assert {t["model"]: round(float(t["recall@20"]), 6) for t in table} == {k: round(v, 6) for k, v in stored.items()}



def test_tuning_chooses_on_validation_only(tmp_path: Path) -> None:
    """The chosen point is the grid's best on validation (recomputed here), and its test figure is that model's."""
    from bspm_jax.compare.spaces import SEARCH_SPACES
    from bspm_jax.tuning.grid import grid_points

    rng = np.random.default_rng(2)
    rows = [(f"u{u}", f"i{i}") for u in range(70) for i in rng.choice(35, rng.integers(5, 14), replace=False)]
    data = tmp_path / "p.csv"
    data.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    (record,) = compare(data, entries(models=["turbo-cf"]), tmp_path / "out")
    dataset = carve_validation(load_dataset(data), 0.2, 0)
    scores = []
    for point in grid_points(SEARCH_SPACES["turbo-cf"]):
        model = make_model("turbo-cf", **point).fit(dataset.train)
        scores.append(evaluate(model, dataset, ks=(20,), split="valid").metrics["recall@20"])
    best = grid_points(SEARCH_SPACES["turbo-cf"])[int(np.argmax(scores))]  # ties: the first, as the grid keeps order
    assert {k: record.settings[k] for k in best} == best and record.chosen_by.startswith("grid on validation (6 points")
    chosen = make_model("turbo-cf", **best).fit(dataset.train)
    assert record.test["recall@20"] == evaluate(chosen, dataset, ks=(20,)).metrics["recall@20"]
    assert "--set alpha=" in record.command and "--set power=" in record.command


def test_stored_commands_reproduce_their_figures(tmp_path: Path) -> None:
    """Each row's command, run alone, gives the stored test figure: a tuned training-free model and a trained one."""
    import json
    import shlex

    from bspm_jax.cli import main

    rng = np.random.default_rng(4)
    rows = [(f"u{u}", f"i{i}") for u in range(50) for i in rng.choice(25, rng.integers(5, 12), replace=False)]
    data = tmp_path / "p.csv"
    data.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    contenders = entries(models=["turbo-cf"]) + entries(models=["mf-bpr"], sets=["train.epochs=3", "dim=8"])
    for record in compare(data, contenders, tmp_path / "out", seeds=[1]):
        out = tmp_path / f"{record.label}.json"
        assert main([*shlex.split(record.command)[1:], "--json", str(out), "--quiet"]) == 0
        assert json.loads(out.read_text())["metrics"]["recall@20"] == record.test["recall@20"], record.command
