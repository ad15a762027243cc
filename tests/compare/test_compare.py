"""Comparisons on small data: stored runs equal independent fits, settings are chosen on validation only, a rerun
redoes nothing, a killed comparison resumes to the same store, each stored command reproduces its figure."""

from __future__ import annotations

import csv
import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bspm_jax.compare.comparison import comparison
from bspm_jax.compare.leaderboard import leaderboard, to_csv, to_markdown
from bspm_jax.compare.run import compare, entries, entry
from bspm_jax.compare.store import ResultsStore
from bspm_jax.compare.suite import load_suite, suite_names
from bspm_jax.data import carve_validation, load_dataset
from bspm_jax.errors import ConfigError
from bspm_jax.evaluation import evaluate
from bspm_jax.models import make_model
from bspm_jax.tuning.grid import grid_points

ROOT = Path(__file__).parents[2]


def _plays(path: Path, seed: int, users: int = 80, items: int = 40) -> Path:
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"i{i}") for u in range(users) for i in rng.choice(items, rng.integers(5, 15), replace=False)]
    path.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    return path


def test_compare_stores_each_run_once_and_ranks_them(tmp_path: Path) -> None:
    data = _plays(tmp_path / "plays.csv", 0)
    contenders = entries(models=["popularity", "lgcn-ide"])
    first = compare(data, contenders, tmp_path / "out", tune=False)
    assert [r.label for r in first] == ["popularity", "lgcn-ide"] and all(r.protocol["name"] == "holdout" for r in first)
    dataset = load_dataset(data)  # nothing needs validation: every model is fitted on the whole train split
    for r in first:
        model = make_model(r.label).fit(dataset.train)
        assert r.test["recall@20"] == evaluate(model, dataset, ks=(20,)).metrics["recall@20"]
        assert r.validation == {} and r.chosen_by == "as configured"
    again = compare(data, contenders, tmp_path / "out", tune=False)  # nothing is redone: the stored records come back
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
    board = leaderboard(recs, paper={"a": {"recall@20": 0.2}})
    assert [row.model for row in board] == ["b", "a"]
    a = board[1]
    assert a.runs == 3 and np.isclose(a.test["recall@20"], np.mean([0.10, 0.14, 0.12]))
    assert np.isclose(a.test_sd["recall@20"], np.std([0.10, 0.14, 0.12], ddof=1))
    assert "| a | 0.1200 ± 0.0200 |" in to_markdown(board, "A")
    assert to_markdown(board, "A", "Paper, Table 1").splitlines()[-1].endswith("| 0.2000 |")
    assert [t["paper_recall@20"] for t in csv.DictReader(to_csv(board).splitlines())] == ["", "0.2000"]


def test_cli_compare_writes_the_store_and_the_leaderboards(tmp_path: Path) -> None:
    from bspm_jax.cli import main

    data = _plays(tmp_path / "p.csv", 1, 60, 30)
    out = tmp_path / "cmp"
    assert main(["compare", "--data", str(data), "--models", "popularity,lgcn-ide", "--no-tune",
                 "--out", str(out), "--quiet"]) == 0
    assert {p.name for p in out.iterdir()} >= {"results.sqlite", "leaderboard.md", "leaderboard.csv", "report.html"}
    page = (out / "report.html").read_text()
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched at view time
    assert page.count("<circle") == 2 and "popularity" in page and "<svg" in page
    table = list(csv.DictReader((out / "leaderboard.csv").read_text().splitlines()))
    stored = {r.label: r.test["recall@20"] for r in ResultsStore(out / "results.sqlite").records()}
    assert {t["model"]: round(float(t["recall@20"]), 6) for t in table} == {k: round(v, 6) for k, v in stored.items()}


def test_tuning_chooses_on_validation_only(tmp_path: Path) -> None:
    """The configured point first, then the model's own grid: the chosen point is the best on validation (recomputed
    here, ties to the first), each trial is stored with its validation figure and no test figure."""
    data = _plays(tmp_path / "p.csv", 2, 70, 35)
    (record,) = compare(data, entries(models=["turbo-cf"]), tmp_path / "out")
    dataset = carve_validation(load_dataset(data), 0.2, 0)
    default = make_model("turbo-cf")
    configured = {"alpha": default.alpha, "power": default.power}
    points = [configured] + [p for p in grid_points(default.search_space()) if p != configured]
    scores = [evaluate(make_model("turbo-cf", **p).fit(dataset.train), dataset, ks=(20,), split="valid")
              .metrics["recall@20"] for p in points]
    best = points[int(np.argmax(scores))]
    assert {k: record.settings[k] for k in best} == best
    assert record.chosen_by.startswith("best validation recall@20 of 6 points (seed 0)")
    chosen = make_model("turbo-cf", **best).fit(dataset.train)
    assert record.test["recall@20"] == evaluate(chosen, dataset, ks=(20,)).metrics["recall@20"]
    trials = [r for r in ResultsStore(tmp_path / "out" / "results.sqlite").records() if r.kind == "trial"]
    assert sorted(t.validation["recall@20"] for t in trials) == sorted(scores) and all(t.test == {} for t in trials)


def test_trained_models_search_on_the_first_seed_then_run_every_seed(tmp_path: Path) -> None:
    data = _plays(tmp_path / "p.csv", 3)
    calls = []

    def progress(iterable, **kwargs):
        calls.append(kwargs)
        return iterable

    contenders = [entry(model="mult-dae", sets=["train.epochs=4", "train.eval_every=1", "latent=16"],
                        space={"train.lr": [1e-3, 1e-2], "dropout": [0.5]})]
    finals = compare(data, contenders, tmp_path / "out", seeds=[0, 1], progress=progress)
    assert calls[0] == {"total": 2 + 2, "desc": "compare", "unit": "run"}  # 2 trials + 2 seeds, then the inner bars
    assert any(c.get("desc") == "epochs" for c in calls[1:])
    runs = ResultsStore(tmp_path / "out" / "results.sqlite").records()
    trials = [r for r in runs if r.kind == "trial"]
    assert [t.train["lr"] for t in trials] == [1e-3, 1e-2] and {t.seed for t in trials} == {0}
    best = max(trials, key=lambda t: t.validation["recall@20"])
    assert [f.train["lr"] for f in finals] == [best.train["lr"]] * 2 and [f.seed for f in finals] == [0, 1]
    assert finals[0].validation == best.validation  # seed 0's final run is the chosen trial's model, not retrained
    assert finals[0].training["best_epoch"] == best.training["best_epoch"]
    assert all(len(f.curve) == 4 and all("recall@20" in c for c in f.curve) for f in finals)
    from bspm_jax.compare.run import write_outputs

    write_outputs(runs, tmp_path / "out")
    assert (tmp_path / "out" / "report.html").read_text().count("<polyline") == 2  # one learning curve per seed


def test_every_entry_gets_the_same_split_and_no_refit(tmp_path: Path) -> None:
    """A preset that carves its own validation (10%) and refits on train + validation runs under the comparison's
    split (20%) without the refit, like every other entry."""
    data = _plays(tmp_path / "p.csv", 5)
    contenders = [entry(model="popularity"), entry(preset="gowalla-mult-dae", sets=["train.epochs=2", "train.eval_every=1", "latent=8",
                                                          "evaluation.refit_with_valid=true"])]
    finals = compare(data, contenders, tmp_path / "out", tune=False)
    assert len({r.dataset["digest"] for r in finals}) == 1 and len({json.dumps(r.protocol) for r in finals}) == 1
    dataset = carve_validation(load_dataset(data), 0.2, 0)
    assert finals[0].dataset["n_train"] == dataset.n_train
    assert "evaluation.refit_with_valid=false" in finals[1].command and "data.validation=0.2" in finals[1].command


def test_stored_commands_reproduce_their_figures(tmp_path: Path) -> None:
    """Each row's command, run alone, gives the stored test figure: a tuned training-free model and a trained one."""
    from bspm_jax.cli import main

    data = _plays(tmp_path / "p.csv", 4, 50, 25)
    contenders = entries(models=["turbo-cf"]) + [entry(model="mf-bpr", sets=["train.epochs=3", "dim=8"], budget=2)]
    for record in compare(data, contenders, tmp_path / "out", seeds=[1]):
        out = tmp_path / f"{record.label}.json"
        assert main([*shlex.split(record.command)[1:], "--json", str(out), "--quiet"]) == 0
        assert json.loads(out.read_text())["metrics"]["recall@20"] == record.test["recall@20"], record.command


KILLED = """
import sys
from bspm_jax.compare.run import compare, entry
compare(sys.argv[1], [entry(model="popularity"), entry(model="mult-dae", sets=[
    "train.epochs=60", "train.eval_every=1", "train.checkpoint_every=1", "train.patience=100", "latent=16"])],
    sys.argv[2], seeds=[0], tune=False)
"""


def _same(record) -> dict:
    """What a run computed (not when, or how long it took)."""
    return {"label": record.label, "kind": record.kind, "seed": record.seed, "settings": record.settings,
            "train": record.train, "validation": record.validation, "test": record.test,
            "curve": [{k: v for k, v in c.items()} for c in record.curve], "command": record.command,
            "best_epoch": record.training.get("best_epoch"), "epochs_run": record.training.get("epochs_run")}


def test_a_killed_comparison_resumes_to_the_same_store(tmp_path: Path) -> None:
    data = _plays(tmp_path / "p.csv", 6, 200, 120)
    whole = compare(data, [entry(model="popularity"), entry(model="mult-dae", sets=[
        "train.epochs=60", "train.eval_every=1", "train.checkpoint_every=1", "train.patience=100", "latent=16"])],
        tmp_path / "whole", seeds=[0], tune=False)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(data), str(killed)])
    try:
        deadline = time.monotonic() + 240
        while not list(killed.glob("checkpoints/*/checkpoint.npz")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    stored = ResultsStore(killed / "results.sqlite").records()
    assert [r.label for r in stored] == ["popularity"]  # killed during the trained run: it is not in the store
    resumed = compare(data, [entry(model="popularity"), entry(model="mult-dae", sets=[
        "train.epochs=60", "train.eval_every=1", "train.checkpoint_every=1", "train.patience=100", "latent=16"])],
        killed, seeds=[0], tune=False)
    assert resumed[1].training["resumed_from_epoch"] > 0  # it went on from its checkpoint
    assert resumed[0].finished == stored[0].finished  # the finished run was not redone
    assert [_same(r) for r in resumed] == [_same(r) for r in whole]
    assert [_same(r) for r in ResultsStore(killed / "results.sqlite").records()] == [_same(r) for r in whole]


def test_shipped_suites_load_and_bad_suites_are_refused(tmp_path: Path) -> None:
    assert {"sdiff-table1", "gowalla-training-free", "bspm-table4", "bspm-tables56"} <= set(suite_names())
    table1 = load_suite("sdiff-table1")
    assert table1.seeds == [0, 1, 2] and len(table1.entries) == 13
    assert table1.paper["ml1m-s-diff"] == {"recall@20": 0.2018, "ndcg@20": 0.1225}
    assert not load_suite("bspm-tables56").tune
    cases = {
        'entries = [{model = "popularity"}]\nseed = 1\n': r"unknown key\(s\) seed",
        'entries = [{model = "nope"}]\n': r"entry 1: unknown model 'nope'",
        'entries = [{preset = "nope"}]\n': r"entry 1: .*nope",
        'entries = [{model = "popularity", preset = "gowalla-gf-cf"}]\n': "names a model or a preset, not both",
        'seeds = [-1]\nentries = [{model = "popularity"}]\n': "seeds must be a non-empty list",
        'entries = [{model = "popularity"}, {model = "popularity"}]\n': "name each model or preset once",
        'entries = [{model = "turbo-cf", space = {nope = [1]}}]\n': "search key 'nope' is not a setting",
        'entries = [{model = "popularity", budget = 0}]\n': "budget must be an integer >= 1",
        "entries = [\n": "is not valid TOML",
        "description = 'no entries'\n": r"give its models as \[\[entries\]\] tables",
    }
    for n, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"s{n}.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_suite(path)
    with pytest.raises(ConfigError, match="unknown suite 'nope'"):
        load_suite("nope")
    with pytest.raises(ConfigError, match="give --suite, or --models/--presets, not both"):
        comparison(tmp_path / "d.csv", tmp_path / "o", models=["popularity"], suite="sdiff-table1")


def test_cli_reads_and_splits_the_file_the_same_for_every_entry(tmp_path: Path) -> None:
    """Named columns and a time split, given once: every stored command repeats them and reproduces its figure."""
    from bspm_jax.cli import main

    rng = np.random.default_rng(7)
    rows = [(f"u{u}", f"t{i}", int(rng.integers(0, 10_000)))
            for u in range(60) for i in rng.choice(30, rng.integers(6, 12), replace=False)]
    data = tmp_path / "listens.csv"
    data.write_text("track,listener,ts\n" + "".join(f"{i},{u},{t}\n" for u, i, t in rows))
    out = tmp_path / "cmp"
    assert main(["compare", "--data", str(data), "--user-col", "listener", "--item-col", "track", "--time-col", "ts",
                 "--split", "last", "--last-n", "2", "--models", "popularity,turbo-cf", "--budget", "2",
                 "--out", str(out), "--quiet"]) == 0
    finals = [r for r in ResultsStore(out / "results.sqlite").records() if r.kind == "final"]
    (split,) = {r.protocol["split"] for r in finals}  # one split for every entry: validation held out as test is
    assert split == "test: each user's 2 latest interactions; validation: each user's 2 latest interactions of the rest"
    for record in finals:
        assert '--set data.user_col="listener"' in record.command and "--set data.last_n=2" in record.command
        json_out = tmp_path / f"{record.label}.json"
        assert main([*shlex.split(record.command)[1:], "--json", str(json_out), "--quiet"]) == 0
        assert json.loads(json_out.read_text())["metrics"]["recall@20"] == record.test["recall@20"]


def test_cli_refusals_are_one_line(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
    from test_cli import refused

    data = _plays(tmp_path / "p.csv", 8, 30, 20)
    cases = [
        (["--suite", "sdiff-table1", "--models", "popularity"], "give --suite, or --models/--presets, not both"),
        (["--suite", "nope"], "unknown suite 'nope'"),
        (["--models", "nope"], "unknown model 'nope'"),
        (["--models", "popularity", "--budget", "0"], "budget must be an integer >= 1"),
        (["--models", "popularity,popularity"], "name each model or preset once"),
        (["--suite", "bspm-tables56", "--set", "rank=8"], "--set applies to --models and --presets"),
    ]
    for extra, message in cases:
        done = refused("compare", "--data", str(data), "--out", str(tmp_path / "o"), "--quiet", *extra)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, extra


def test_the_refit_protocol_has_its_own_runs_and_commands(tmp_path: Path) -> None:
    """--refit: each chosen model fitted again on train + validation, test scored from that history; the figures
    are those of ``bspm run --refit-with-valid`` (each stored command, run alone), and never share a key with A."""
    from bspm_jax.cli import main

    data = _plays(tmp_path / "p.csv", 9, 50, 25)
    contenders = [entry(model="turbo-cf", budget=2), entry(model="mult-dae", budget=1,
                                                           sets=["train.epochs=3", "train.eval_every=1", "latent=8"])]
    finals = compare(data, contenders, tmp_path / "out", seeds=[0], refit=True)
    assert {r.protocol["name"] for r in finals} == {"refit"}
    for record in finals:
        assert "evaluation.refit_with_valid=true" in record.command and record.validation
        out = tmp_path / f"{record.label}.json"
        assert main([*shlex.split(record.command)[1:], "--json", str(out), "--quiet"]) == 0
        assert json.loads(out.read_text())["metrics"]["recall@20"] == record.test["recall@20"], record.command
    again = compare(data, contenders, tmp_path / "out", seeds=[0])  # protocol A beside it in the store: other runs
    assert {r.protocol["name"] for r in again} == {"A"} and {r.key for r in again}.isdisjoint({r.key for r in finals})

    import sqlite3

    from bspm_jax.compare.comparison import render

    kept = tmp_path / "kept"
    kept.mkdir()
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as source, sqlite3.connect(kept / "results.sqlite") as copy:
        source.backup(copy)  # a store kept with results: one file
    with pytest.raises(ConfigError, match=r"holds final runs of protocol\(s\) A, refit: name one"):
        render(kept / "results.sqlite", tmp_path / "pages")
    render(kept / "results.sqlite", tmp_path / "pages", "refit")
    board = list(csv.DictReader((tmp_path / "pages" / "leaderboard.csv").read_text().splitlines()))
    assert {b["model"]: float(b["recall@20"]) for b in board} == {r.label: round(r.test["recall@20"], 6) for r in finals}
    assert sorted(p.name for p in kept.iterdir()) == ["results.sqlite"]  # read without writing beside it

def test_the_docs_python_example_runs(tmp_path: Path, monkeypatch) -> None:
    code = re.search(r"## From Python\n\n```python\n(.+?)\n```", (ROOT / "docs" / "compare.md").read_text(), re.S).group(1)
    _plays(tmp_path / "plays.csv", 10, 40, 20)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/compare.md", "exec"), {})
    board = (tmp_path / "cmp" / "leaderboard.csv").read_text().splitlines()
    assert len(board) == 3 and board[0].startswith("model,recall@20,ndcg@20,")


def test_gradient_tuning_starts_from_the_grids_best_and_is_kept(tmp_path: Path, monkeypatch) -> None:
    """A gradient-tuned point joins the trials (chosen only if best on validation); a rerun does not tune again."""
    import bspm_jax.compare.run as run_module

    data = _plays(tmp_path / "p.csv", 11, 120, 60)
    contenders = [entry(model="chebycf", sets=["eta=16"], space={"phi": [1.0, 1.5]}, gradient=True)]
    (final,) = compare(data, contenders, tmp_path / "out")
    runs = ResultsStore(tmp_path / "out" / "results.sqlite").records()
    trials = [r for r in runs if r.kind == "trial"]
    (tuned,) = [r for r in runs if r.kind == "gradient"]
    assert len(trials) == 3 and final.chosen_by.endswith("; and gradient tuning from the best of them")
    grid_best = max(trials[:2], key=lambda t: t.validation["recall@20"])
    assert tuned.command.count("--set phi=") == 1 and f"--set phi={grid_best.settings['phi']}" in tuned.command
    assert trials[2].settings["coefficients"] == tuned.settings["coefficients"]  # the gradient's point, scored
    assert final.validation == max(trials, key=lambda t: t.validation["recall@20"]).validation

    def refuse(*args, **kwargs):
        raise AssertionError("gradient tuning ran again")

    monkeypatch.setattr(run_module, "tune_gradient", refuse)
    assert compare(data, contenders, tmp_path / "out")[0].finished == final.finished
    with pytest.raises(ConfigError, match="gradient tuning tunes the chebycf, ensemble models, not the turbo-cf"):
        entry(model="turbo-cf", gradient=True)
