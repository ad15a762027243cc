"""S-Diff on ML-1M (DiffRec split): seeds, the paper's ablations, and times beside BSPM's.

    python -m benchmarks.s_diff --data ../shared/data/ml-1m-diffrec [--preset ml1m-s-diff]
        [--seeds 0,1,2,3,4] [--ablations] [--out FILE]

Each run trains ``--preset`` with ``train.seed=N`` early-stopped on validation and reports
test Recall/NDCG@10/20 from the train history, then refits on train + validation for the
best epoch count and reports test from that history (what ``bspm run --preset
ml1m-s-diff`` does with ``evaluation.refit_with_valid = true``); training time to the best
epoch and in all, and inference time over all test users. With
``--ablations``: the Table 3 rows (schedule ``ddpm``, ``ve``, ``vp``) and FiLM against
concatenation (Fig. 6), seed 0. Then BSPM's fit + scoring (preset ``ml1m-bspm``) on the
same split. The JSON file (``benchmarks/results/s-diff-<host>-<date>.json``) is rewritten
after every run and a rerun with the same ``--out`` skips the runs it already holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from bspm_jax.config import get_preset
from bspm_jax.data import Dataset, load_dataset
from bspm_jax.evaluation import evaluate
from bspm_jax.evaluation.fit import FitOptions, fitting_matrix, fit_model, refit_trained
from bspm_jax.experiment import model_from_config, train_settings

from . import machine, results_path, save_results

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
PAPER = {"S-Diff (Table 1)": {"recall@10": 0.1277, "recall@20": 0.2018, "ndcg@10": 0.0970, "ndcg@20": 0.1225},
         "ddpm": {"recall@10": 0.0998, "ndcg@10": 0.0901}, "ve": {"recall@10": 0.1207, "ndcg@10": 0.0942},
         "vp": {"recall@10": 0.1255, "ndcg@10": 0.0970}}


def _metrics(ev: Any) -> dict[str, float]:
    return {m: ev.metrics[m] for m in METRICS}


def _run(dataset: Dataset, preset: str, overrides: list[str], batch_size: int = 1024) -> dict[str, Any]:
    """Train early-stopped on validation (test from the train history), then refit on train + validation
    for the best epoch count (test from the train + validation history): both protocols of the split."""
    config = get_preset(preset).with_overrides(overrides)
    model, settings = model_from_config(config), train_settings(config)
    t0 = time.perf_counter()
    fitted, record = fit_model(model, dataset, FitOptions(train=settings, batch_size=batch_size))
    train_s = time.perf_counter() - t0
    test = evaluate(fitted, dataset, ks=(10, 20), batch_size=batch_size)
    valid = evaluate(fitted, dataset, ks=(10, 20), batch_size=batch_size, split="valid")
    t1 = time.perf_counter()
    refit = refit_trained(model, dataset, settings, record["best_epoch"]).model
    refit_s = time.perf_counter() - t1
    test_tv = evaluate(refit, dataset, ks=(10, 20), batch_size=batch_size, history="train+valid")
    return {
        "overrides": overrides, "settings": model.config(), "train": settings.to_dict(),
        "test_history_train": _metrics(test), "validation": _metrics(valid),
        "test_refit_train_valid": _metrics(test_tv),
        "epochs_run": record["epochs_run"], "best_epoch": record["best_epoch"],
        "training_s": train_s, "training_to_best_s": record["seconds_to_best"], "refit_s": refit_s,
        "inference_s": test.timings_s["inference"], "inference_refit_s": test_tv.timings_s["inference"],
    }


def _bspm(dataset: Dataset, batch_size: int = 1024) -> dict[str, Any]:
    """BSPM's fit and scoring on the same split (preset ml1m-bspm), both protocols."""
    model = model_from_config(get_preset("ml1m-bspm"))
    t0 = time.perf_counter()
    fitted = model.fit(fitting_matrix(dataset))
    fit_s = time.perf_counter() - t0
    test = evaluate(fitted, dataset, ks=(10, 20), batch_size=batch_size)
    refit = model.fit(fitting_matrix(dataset, True))
    test_tv = evaluate(refit, dataset, ks=(10, 20), batch_size=batch_size, history="train+valid")
    return {"fit_s": fit_s, "inference_s": test.timings_s["inference"], "test_history_train": _metrics(test),
            "test_refit_train_valid": _metrics(test_tv)}


def _summary(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    out = {}
    for m in METRICS:
        values = [r[key][m] for r in runs]
        out[m] = {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--preset", default="ml1m-s-diff")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--ablations", action="store_true")
    parser.add_argument("--out", help="JSON file (default: benchmarks/results/s-diff-<host>-<date>.json)")
    args = parser.parse_args(argv)
    path = results_path("s-diff", args.out)
    result: dict[str, Any] = {"data": args.data, "preset": args.preset, "runs": {}, "paper": PAPER}
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("preset") == args.preset and old.get("data") == args.data:
            result["runs"] = old.get("runs", {})
    plan = {f"seed{s}": [f"train.seed={s}"] for s in (int(x) for x in args.seeds.split(",") if x.strip())}
    if args.ablations:
        plan.update({"schedule=ddpm": ["model.schedule=ddpm"], "schedule=ve": ["model.schedule=ve"],
                     "fusion=concat": ["model.fusion=concat"]})
    dataset = load_dataset(args.data)
    for name, overrides in plan.items():
        if name in result["runs"]:
            continue
        run = _run(dataset, args.preset, overrides)
        result["runs"][name] = run
        t, tv = run["test_history_train"], run["test_refit_train_valid"]
        print(f"{name:<15} history train: R@10 {t['recall@10']:.4f} R@20 {t['recall@20']:.4f} N@10 {t['ndcg@10']:.4f} "
              f"N@20 {t['ndcg@20']:.4f} | refit train+valid: R@10 {tv['recall@10']:.4f} R@20 {tv['recall@20']:.4f} "
              f"N@10 {tv['ndcg@10']:.4f} N@20 {tv['ndcg@20']:.4f} | best epoch {run['best_epoch']}, "
              f"to best {run['training_to_best_s']:.1f} s, inference {run['inference_s']:.2f} s", flush=True)
        result["machine"] = machine()
        save_results("s-diff", str(path), result)
    if "bspm" not in result:
        result["bspm"] = _bspm(dataset)
    seeds = [r for n, r in result["runs"].items() if n.startswith("seed")]
    if seeds:
        result["seeds_summary"] = {key: _summary(seeds, key) for key in ("test_history_train", "test_refit_train_valid")}
        for key, summary in result["seeds_summary"].items():
            print(f"S-Diff, {len(seeds)} seeds, {key}: " + ", ".join(
                f"{m} {s['mean']:.4f} ± {s['sd']:.4f}" for m, s in summary.items()))
    b = result["bspm"]
    print(f"BSPM (ml1m-bspm): fit {b['fit_s']:.2f} s, inference {b['inference_s']:.2f} s, test R@20 "
          f"{b['test_history_train']['recall@20']:.4f} (refit {b['test_refit_train_valid']['recall@20']:.4f})")
    result["machine"] = machine()
    print(f"wrote {save_results('s-diff', str(path), result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
