"""The ``bspm`` command run for real in subprocesses: output contract and user errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bspm_jax import get_preset
from helpers import REPO, sample

CONTRACT = {"model", "config", "dataset", "metrics", "timings_s", "environment"}


def bspm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bspm_jax", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def refused(*args: str) -> subprocess.CompletedProcess:
    """``bspm ARGS`` run in this process (the same parser and error path, without a process start per refusal);
    subprocess tests above check that the real command prints no traceback."""
    import contextlib
    import io

    from bspm_jax.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["bspm", *args], code, out.getvalue(), err.getvalue())


def test_run_on_sample_writes_contract(tmp_path):
    out = tmp_path / "out.json"
    proc = bspm("run", "--model", "popularity", "--json", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert CONTRACT <= set(result)
    assert result["model"] == "popularity"
    data = sample()
    assert result["dataset"] | data.summary() == result["dataset"]
    assert {f"{m}@{k}" for m in ("recall", "ndcg", "precision", "hit", "coverage", "novelty") for k in (10, 20)} == set(
        result["metrics"]
    )
    assert set(result["timings_s"]) == {"load", "preprocess", "inference", "evaluate", "total"}
    assert {"jax", "backend", "device", "python", "cpu_count"} <= set(result["environment"])
    # popularity recall@20 recomputed independently: rank unseen items by train degree, ties by index
    deg = np.asarray(data.train.sum(axis=0)).ravel()
    order = np.lexsort((np.arange(data.n_items), -deg))
    recalls = []
    for u in range(data.n_users):
        truth = set(data.test[u].indices)
        if not truth:
            continue
        seen = set(data.train[u].indices)
        top = [i for i in order if i not in seen][:20]
        recalls.append(len(truth.intersection(top)) / len(truth))
    assert result["metrics"]["recall@20"] == pytest.approx(np.mean(recalls), rel=1e-9)
    assert "recall" in proc.stdout and "popularity" in proc.stdout


def test_k_option_and_bspm_preset_override(tmp_path):
    out = tmp_path / "r.json"
    proc = bspm("run", "--preset", "gowalla-em", "--set", "rank=64", "--k", "5", "--json", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["model"] == "bspm"
    assert result["config"]["model"]["rank"] == 64 and result["config"]["model"]["T_s"] == 2.5
    assert result["config"]["evaluation"] == {"k": [5], "batch_size": 1024, "devices": 1}
    assert set(result["metrics"]) == {f"{m}@5" for m in ("recall", "ndcg", "precision", "hit", "coverage", "novelty")}


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--model", "nope"], "unknown model 'nope'"),
        (["run", "--preset", "nope"], "unknown preset 'nope'"),
        (["run", "--data", "/nonexistent/dir"], "/nonexistent/dir"),
        (["run", "--model", "bspm", "--set", "T_s=0"], "T must be"),
        (["run", "--model", "bspm", "--set", "rank=100000"], "rank"),
        (["run", "--model", "bspm", "--set", "nosuch=1"], "no setting nosuch"),
        (["run", "--k", "0"], "K"),
        (["run", "--batch-size", "0"], "batch_size"),
    ],
)
def test_user_errors_exit_2_without_traceback(tmp_path, args, message):
    out = tmp_path / "out.json"
    proc = bspm(*args, "--json", str(out), "--quiet")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_malformed_file_error_keeps_existing_output(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train.txt").write_text("0 1 2\n1 x 3\n")
    (folder / "test.txt").write_text("0 3\n")
    out = tmp_path / "out.json"
    out.write_text("precious")
    proc = bspm("run", "--data", str(folder), "--json", str(out), "--quiet")
    assert proc.returncode == 2
    assert "train.txt" in proc.stderr and "line 2" in proc.stderr and "'x'" in proc.stderr
    assert out.read_text() == "precious"


def test_pairs_csv_with_holdout(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["user,item,rating"] + [f"u{u},i{i},5" for u in range(40) for i in rng.choice(30, 6, replace=False)]
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.json"
    proc = bspm("run", "--model", "popularity", "--data", str(path), "--user-col", "user", "--item-col", "item",
                "--json", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    ds = json.loads(out.read_text())["dataset"]
    assert (ds["n_users"], ds["n_items"], ds["n_train"] + ds["n_test"]) == (40, 30, 240)


def test_config_file_with_overrides_echoed_and_rerunnable(tmp_path):
    """A TOML config runs like the equivalent flags; its effective config, written back, reruns identically."""
    from bspm_jax.config import dumps

    cfg = tmp_path / "exp.toml"
    cfg.write_text('description = "mine"\n[model]\nname = "bspm"\nrank = 32\nT_s = 2.0\n[evaluation]\nk = [20]\n')
    out1, out2, out3 = (tmp_path / f"o{i}.json" for i in range(3))
    proc = bspm("run", "--config", str(cfg), "--set", "beta=0.1", "--set", "evaluation.batch_size=500", "--json", str(out1), "--quiet")
    assert proc.returncode == 0, proc.stderr
    r1 = json.loads(out1.read_text())
    assert r1["config"]["description"] == "mine"
    assert r1["config"]["model"]["rank"] == 32 and r1["config"]["model"]["beta"] == 0.1
    assert r1["config"]["evaluation"] == {"k": [20], "batch_size": 500, "devices": 1}
    flags = ["--model", "bspm", "--set", "rank=32", "--set", "T_s=2.0", "--set", "beta=0.1", "--k", "20", "--batch-size", "500"]
    proc = bspm("run", *flags, "--json", str(out2), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out2.read_text())["metrics"] == r1["metrics"]
    echoed = {k: v for k, v in r1["config"].items() if k != "data"}
    (tmp_path / "echo.toml").write_text(dumps(echoed))
    proc = bspm("run", "--config", str(tmp_path / "echo.toml"), "--json", str(out3), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out3.read_text())["metrics"] == r1["metrics"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[model]\nname = \"bspm\"\nrank = \n", "not valid TOML"),
        ("[modle]\nname = \"bspm\"\n", "unknown table or key modle"),
        ("[model]\nname = \"bspm\"\nT_s = -1.0\n", "T must be"),
        ("[evaluation]\nk = [0]\n", "evaluation.k"),
        ("[data]\nformat = 3\n", "unknown key format in [data]"),
    ],
)
def test_bad_config_file_exit_2(tmp_path, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out.json"
    proc = refused("run", "--config", str(cfg), "--json", str(out), "--quiet")
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_recommend_known_and_new_users_match_library(tmp_path):
    """CSV rows equal bspm_jax.recommend on the same fit; a new user's history is scored like a known row."""
    from bspm_jax import make_model
    from bspm_jax.ranking import recommend_indices

    data = sample()
    out = tmp_path / "recs.csv"
    history = data.train[5].indices
    proc = bspm("recommend", "--preset", "gowalla-em", "--set", "rank=32", "--users", "0,3,5",
                "--history", ",".join(map(str, history)), "--k", "7", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["user"] for r in rows] == ["0"] * 7 + ["3"] * 7 + ["5"] * 7 + ["new1"] * 7
    model = make_model("bspm", **{**get_preset("gowalla-em").model_settings, "rank": 32}).fit(data.train)
    items, scores = recommend_indices(model, data.train, users=np.array([0, 3, 5]), k=7)
    got = np.array([int(r["item"]) for r in rows]).reshape(4, 7)
    np.testing.assert_array_equal(got[:3], items)
    np.testing.assert_array_equal(got[3], got[2])  # user 5's history as a new user: same list
    np.testing.assert_allclose([float(r["score"]) for r in rows[:21]], scores.ravel(), rtol=1e-5)
    for u, top in zip([0, 3, 5], got[:3]):
        assert not set(top) & set(data.train[u].indices)


def test_recommend_keep_seen_and_errors(tmp_path):
    proc = bspm("recommend", "--model", "popularity", "--users", "0", "--k", "50", "--keep-seen", "--quiet")
    assert proc.returncode == 0, proc.stderr
    data = sample()
    deg = np.asarray(data.train.sum(axis=0)).ravel()
    top = np.lexsort((np.arange(data.n_items), -deg))[:50]
    items = [int(line.split(",")[2]) for line in proc.stdout.strip().splitlines()[1:]]
    assert items == top.tolist()
    out = tmp_path / "r.csv"
    out.write_text("precious")
    for args, message in [
        (["--users", "999999"], "user id 999999 is outside"),
        (["--history", "1,abc"], "item id 'abc' is not an integer"),
        ([], "name the users"),
    ]:
        proc = refused("recommend", "--model", "popularity", *args, "--out", str(out), "--quiet")
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert out.read_text() == "precious"


def test_tune_selects_on_validation_and_writes_best_config(tmp_path):
    """The table equals evaluate() on the validation split per point; best.toml reproduces the test metrics."""
    from bspm_jax import evaluate, make_model
    from bspm_jax.config import load_config
    from bspm_jax.tuning import validation_split

    out = tmp_path / "tune"
    proc = bspm("tune", "--model", "bspm", "--set", "rank=32", "--grid", "T_s=1.0,2.5", "--grid", "sharpen_solver=euler,rk4",
                "--metric", "ndcg@20", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "results.json").read_text())
    rows = result["results"]
    assert len(rows) == 4 and result["validation"]["fraction"] == 0.2 and result["validation"]["seed"] == 0
    assert [r["ndcg@20"] for r in rows] == sorted((r["ndcg@20"] for r in rows), reverse=True)
    data = sample()
    val = validation_split(data, 0.2, 0)
    assert val.n_train + val.n_valid == data.n_train and (val.train.multiply(val.valid)).nnz == 0
    assert val.test is data.test and result["validation"]["n_validation_interactions"] == val.n_valid
    for row in rows:
        model = make_model("bspm", rank=32, T_s=row["T_s"], sharpen_solver=row["sharpen_solver"]).fit(val.train)
        assert evaluate(model, val, ks=(20,), split="valid").metrics["ndcg@20"] == pytest.approx(row["ndcg@20"], abs=1e-9)
    best = load_config(out / "best.toml")
    assert best.model_settings["T_s"] == rows[0]["T_s"] and best.model_settings["rank"] == 32
    csv_rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert [float(r["ndcg@20"]) for r in csv_rows] == [r["ndcg@20"] for r in rows]
    rerun = tmp_path / "best.json"
    proc = bspm("run", "--config", str(out / "best.toml"), "--k", "20", "--json", str(rerun), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(rerun.read_text())["metrics"]["ndcg@20"] == pytest.approx(result["test_metrics"]["ndcg@20"], abs=1e-9)


def test_tune_refuses_huge_or_bad_grids(tmp_path):
    out = tmp_path / "t"
    proc = refused("tune", "--model", "bspm", "--out", str(out), "--quiet")  # the paper's whole space
    assert proc.returncode == 2 and "points, more than max_points" in proc.stderr
    proc = refused("tune", "--model", "bspm", "--grid", "T_s=1.0,0.0", "--out", str(out), "--quiet")
    assert proc.returncode == 2 and "grid point" in proc.stderr and "T must be" in proc.stderr
    assert not out.exists()


def test_plot_writes_figures_and_their_data(tmp_path):
    """`bspm plot` writes PNG, SVG and JSON per figure; fig8's numbers equal evaluate() of both variants."""
    from bspm_jax import evaluate, make_model

    out = tmp_path / "figs"
    proc = bspm("plot", "fig8", "fig10", "--model", "bspm", "--set", "rank=32", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    for name in ("fig8", "fig10"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (out / f"{name}.svg").read_text()
    fig8 = json.loads((out / "fig8.json").read_text())
    data = sample()
    model = make_model("bspm", rank=32).fit(data.train)
    blur = make_model("bspm", rank=32, sharpen=False).with_fit_of(model)
    for i, m in enumerate([blur, model]):
        assert fig8["metrics"]["recall@20"][i] == pytest.approx(evaluate(m, data, ks=(20,)).metrics["recall@20"], abs=1e-9)
    proc = refused("plot", "fig7", "--out", str(tmp_path / "none"), "--quiet")
    assert proc.returncode == 2 and "unknown figure fig7" in proc.stderr
    assert not (tmp_path / "none").exists()


def test_gradient_tune_checkpoints_are_true_validation_metrics_and_best_toml_reproduces_test(tmp_path):
    """`bspm tune --method gradient`: each checkpoint's metric is evaluate() of its settings on the sampled validation
    users; the best is the highest; best.toml run on test gives the reported test figure."""
    from bspm_jax import evaluate, make_model
    from bspm_jax.config import load_config
    from bspm_jax.tuning.gradient import _sample_valid
    from bspm_jax.tuning import validation_split

    out = tmp_path / "grad"
    proc = bspm("tune", "--method", "gradient", "--model", "chebycf", "--set", "eta=16", "--steps", "4",
                "--eval-every", "2", "--eval-users", "500", "--batch-users", "128", "--lr", "0.01",
                "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "results.json").read_text())
    checkpoints = result["checkpoints"]
    assert [c["step"] for c in checkpoints] == [0, 2, 4]
    assert checkpoints[0]["settings"]["beta"] == 0.4 and checkpoints[0]["settings"]["band_gains"] == [1.0] * 8
    best = max(checkpoints, key=lambda c: (c["recall@20"], -c["step"]))
    assert result["best"] == best["settings"] and result["validation"]["best_step"] == best["step"]
    data = sample()
    val = validation_split(data, 0.2, 0)
    users = np.sort(np.random.default_rng(0).choice(np.flatnonzero(np.diff(val.valid.indptr) > 0), 500, replace=False))
    for c in checkpoints[1:]:
        model = make_model("chebycf", **c["settings"]).fit(val.train)
        got = evaluate(model, _sample_valid(val, users), ks=(20,), split="valid").metrics["recall@20"]
        assert got == pytest.approx(c["recall@20"], abs=1e-9)
    assert load_config(out / "best.toml").model_settings["coefficients"] == best["settings"]["coefficients"]
    rerun = tmp_path / "best.json"
    proc = bspm("run", "--config", str(out / "best.toml"), "--k", "20", "--json", str(rerun), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(rerun.read_text())["metrics"]["recall@20"] == pytest.approx(result["test_metrics"]["recall@20"], abs=1e-9)


def test_plot_response_overlays_models_and_refuses_models_without_a_response(tmp_path):
    from bspm_jax import make_model

    out = tmp_path / "resp"
    proc = bspm("plot", "response", "--model", "gf-cf", "--model", "chebycf", "--model", "lgcn-ide",
                "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "response.json").read_text())
    assert [c["label"] for c in data["curves"]] == ["gf-cf", "chebycf", "lgcn-ide"]
    assert (out / "response.png").stat().st_size > 0 and (out / "response.svg").stat().st_size > 0
    s2 = np.asarray(data["s2"])
    np.testing.assert_allclose(data["curves"][2]["response"], s2, atol=1e-6)  # LGCN-IDE, one layer: h = s^2
    lgcn = make_model("lgcn-ide").fit(sample().train)
    assert data["curves"][2]["ideal_cutoff"] is None and lgcn.ideal_cutoff() is None
    density, middles = np.asarray(data["density"]["values"]), np.asarray(data["density"]["s2"])
    assert density.min() >= -1e-6 and 0.8 < np.sum(density * np.diff(s2)) < 1.1  # about 1 (midpoint rule)
    assert np.allclose(middles, 0.5 * (s2[1:] + s2[:-1]))
    proc = refused("tune", "--method", "gradient", "--model", "chebycf", "--grid", "beta=0.1,0.2", "--out", str(tmp_path / "g"))
    assert proc.returncode == 2 and "--grid is for the grid search" in proc.stderr
    proc = refused("tune", "--method", "gradient", "--model", "bspm", "--out", str(tmp_path / "g"), "--quiet")
    assert proc.returncode == 2 and "tunes these models: chebycf, ensemble; not the bspm model" in proc.stderr
    assert not (tmp_path / "g").exists()
    proc = refused("plot", "response", "--model", "mf-bpr", "--out", str(out), "--quiet")
    assert proc.returncode == 2 and "has no frequency response" in proc.stderr
    proc = refused("plot", "fig8", "--model", "bspm", "--model", "gf-cf", "--out", str(out), "--quiet")
    assert proc.returncode == 2 and "response figure alone" in proc.stderr


def test_tune_gradient_freezes_the_named_parameters_and_refuses_unknown_ones(tmp_path):
    out = tmp_path / "frozen"
    proc = bspm("tune", "--method", "gradient", "--model", "chebycf", "--set", "eta=16", "--steps", "2",
                "--eval-every", "1", "--eval-users", "300", "--batch-users", "64", "--lr", "0.05",
                "--freeze", "coefficients", "--freeze", "gains", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "results.json").read_text())
    start, *later = [c["settings"] for c in result["checkpoints"]]
    assert result["config"]["tune"]["frozen"] == ["coefficients", "gains"]
    for settings in later:  # Adam moved beta; the frozen parameters kept their starting values
        assert settings["coefficients"] == start["coefficients"] and settings["band_gains"] == start["band_gains"]
        assert settings["beta"] != start["beta"]
    proc = refused("tune", "--method", "gradient", "--model", "chebycf", "--freeze", "weights", "--out", str(tmp_path / "g"),
                "--quiet")
    assert proc.returncode == 2 and "chebycf model has no parameter weights to freeze" in proc.stderr
    assert not (tmp_path / "g").exists()


def test_version_and_presets_commands():
    import tomllib

    import bspm_jax
    from bspm_jax.config import preset_names

    proc = bspm("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"bspm {bspm_jax.__version__}"
    assert bspm_jax.__version__ == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    proc = bspm("presets")
    assert proc.returncode == 0, proc.stderr
    headers = [line for line in proc.stdout.splitlines() if not line.startswith(" ")]
    assert [h.split(" ")[0] for h in headers] == preset_names()  # every preset, once, in order
    em = next(h for h in headers if h.startswith("gowalla-bspm-em "))
    assert em == "gowalla-bspm-em (model bspm; earlier name gowalla-em)"
    body = " ".join(proc.stdout.split())
    assert " ".join(get_preset("ml1m-giffcf").to_dict()["description"].split()) in body


def test_earlier_preset_name_runs_as_the_new_one(tmp_path):
    outs = []
    for name in ("gowalla-em", "gowalla-bspm-em"):
        out = tmp_path / f"{name}.json"
        proc = bspm("run", "--preset", name, "--set", "rank=64", "--json", str(out), "--quiet", "--no-cache")
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(out.read_text()))
    assert outs[0]["metrics"] == outs[1]["metrics"] and outs[0]["config"]["model"] == outs[1]["config"]["model"]


def test_run_carves_the_validation_split_the_config_asks_for(tmp_path):
    from bspm_jax import carve_validation

    out = tmp_path / "out.json"
    proc = bspm("run", "--model", "mf-bpr", "--set", "dim=8", "--set", "data.validation=0.2", "--set",
                "data.validation_seed=3", "--set", "train.epochs=2", "--set", "train.eval_every=1", "--json", str(out),
                "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    carved = carve_validation(sample(), 0.2, 3)  # the split the run must have trained and chosen on
    assert result["dataset"]["n_valid"] == carved.n_valid and result["dataset"]["n_train"] == carved.n_train
    assert result["protocol"]["name"] == "A" and "recall@20" in result["validation_metrics"]
    assert result["config"]["data"] == {"path": "<sample>", "validation": 0.2, "validation_seed": 3}
