"""The ``bspm`` command run for real in subprocesses: output contract and user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bspm_jax import load_sample

CONTRACT = {"model", "config", "dataset", "metrics", "timings_s", "environment"}


def bspm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bspm_jax", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_run_on_sample_writes_contract(tmp_path):
    out = tmp_path / "out.json"
    proc = bspm("run", "--model", "popularity", "--json", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert CONTRACT <= set(result)
    assert result["model"] == "popularity"
    data = load_sample()
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
    assert result["config"]["rank"] == 64 and result["config"]["T_s"] == 2.5
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
    proc = bspm("run", "--data", str(path), "--user-col", "user", "--item-col", "item", "--json", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    ds = json.loads(out.read_text())["dataset"]
    assert (ds["n_users"], ds["n_items"], ds["n_train"] + ds["n_test"]) == (40, 30, 240)
