"""S-Diff on ML-1M (DiffRec split): seeds, the paper's ablations, and times beside BSPM's.

    python -m benchmarks.s_diff --data ../shared/data/ml-1m-diffrec [--preset ml1m-s-diff]
        [--seeds 0,1,2,3,4] [--ablations] [--out FILE]

Each run is exactly ``bspm run --preset <preset> --set train.seed=N`` (trained and
early-stopped on validation, evaluated once on test): test Recall/NDCG@10/20, training
time to the best epoch and in all, and inference time over all test users. With
``--ablations``: the Table 3 rows (schedule ``ddpm``, ``ve``, ``vp``) and FiLM against
concatenation (Fig. 6), seed 0. Then BSPM's fit + scoring (preset ``ml1m-bspm``) on the
same split. The JSON file (``benchmarks/results/s-diff-<host>-<date>.json``) is rewritten
after every run and a rerun with the same ``--out`` skips the runs it already holds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

from bspm_jax.config import get_preset
from bspm_jax.experiment import run_config

from . import results_path, save_results

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
PAPER = {"S-Diff (Table 1)": {"recall@10": 0.1277, "recall@20": 0.2018, "ndcg@10": 0.0970, "ndcg@20": 0.1225},
         "ddpm": {"recall@10": 0.0998, "ndcg@10": 0.0901}, "ve": {"recall@10": 0.1207, "ndcg@10": 0.0942},
         "vp": {"recall@10": 0.1255, "ndcg@10": 0.0970}}


def _machine() -> dict[str, Any]:
    import jax

    return {"node": platform.node(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__, "backend": jax.default_backend()}


def _run(data: str, preset: str, overrides: list[str]) -> dict[str, Any]:
    config = get_preset(preset).with_overrides([f"data.path={data}", *overrides])
    result = run_config(config)
    training = result.get("training", {})
    return {
        "overrides": overrides,
        "test": {m: result["metrics"][m] for m in METRICS},
        "validation": {m: result.get("validation_metrics", {}).get(m) for m in METRICS},
        "epochs_run": training.get("epochs_run"), "best_epoch": training.get("best_epoch"),
        "training_s": training.get("seconds"), "training_to_best_s": training.get("seconds_to_best"),
        "fit_s": result["timings_s"]["preprocess"], "inference_s": result["timings_s"]["inference"],
        "total_s": result["timings_s"]["total"],
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for m in METRICS:
        values = [r["test"][m] for r in runs]
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
    plan = {f"seed{s}": [f"train.seed={s}"] for s in (int(x) for x in args.seeds.split(","))}
    if args.ablations:
        plan.update({"schedule=ddpm": ["model.schedule=ddpm"], "schedule=ve": ["model.schedule=ve"],
                     "fusion=concat": ["model.fusion=concat"]})
    for name, overrides in plan.items():
        if name in result["runs"]:
            continue
        run = _run(args.data, args.preset, overrides)
        result["runs"][name] = run
        t = run["test"]
        print(f"{name:<15} test R@10 {t['recall@10']:.4f} R@20 {t['recall@20']:.4f} N@10 {t['ndcg@10']:.4f} "
              f"N@20 {t['ndcg@20']:.4f}  best epoch {run['best_epoch']}  to best {run['training_to_best_s']:.1f} s  "
              f"inference {run['inference_s']:.2f} s", flush=True)
        result["machine"] = _machine()
        save_results("s-diff", str(path), result)
    if "bspm" not in result["runs"]:
        result["runs"]["bspm"] = _run(args.data, "ml1m-bspm", [])
    seeds = [r for n, r in result["runs"].items() if n.startswith("seed")]
    result["seeds_summary"] = _summary(seeds)
    result["machine"] = _machine()
    for m, s in result["seeds_summary"].items():
        print(f"S-Diff {m:<10} {s['mean']:.4f} ± {s['sd']:.4f} over {len(seeds)} seeds (paper {PAPER['S-Diff (Table 1)'][m]})")
    b = result["runs"]["bspm"]
    print(f"BSPM (ml1m-bspm): fit {b['fit_s']:.2f} s, inference {b['inference_s']:.2f} s, "
          f"test R@20 {b['test']['recall@20']:.4f}")
    print(f"wrote {save_results('s-diff', str(path), result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
