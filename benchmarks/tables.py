"""Speed against the BSPM paper's Tables 5 and 6 (pre-processing and inference times).

    python -m benchmarks.tables --data ../shared/data/gowalla [--runs 3] [--batch-sizes 2048 1024]

Every configuration runs in its own process (so its peak RSS is its own): load, then
``--runs`` fits (pre-processing: normalisation, SVD, operator build), one warm-up pass over
all users (its extra time over a steady pass is reported as jit compile time), then
``--runs`` timed passes. A pass scores all users and takes their top-20 in one device
program, then computes the metrics on the host; top-k is timed alone on one batch (times
the number of batches) and reported apart from scoring. Figures are medians. Prints a markdown table beside the paper's (RTX A6000) and writes the raw
results to ``benchmarks/results/tables-<host>-<date>T<HHMM>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bspm_jax.runtime.io import write_json_atomic

from . import results_path

# name: (preset, overrides, paper Table 6 inference seconds on Gowalla)
CONFIGS: dict[str, tuple[str, dict, float]] = {
    "gf-cf": ("gf-cf", {}, 9.8),
    "bspm-em-euler": ("gowalla-bspm-em", {"sharpen_solver": "euler"}, 10.5),
    "bspm-em-rk4": ("gowalla-bspm-em", {}, 17.9),
    "bspm-lm-euler": ("gowalla-bspm-lm", {"sharpen_solver": "euler"}, 10.6),
    "bspm-lm-rk4": ("gowalla-bspm-lm", {}, 17.6),
}
PAPER_PREPROCESS_S = 35.4  # Table 5, Gowalla
OFFICIAL_CODE_S = 812.0  # the official implementation end to end on Gowalla, CPU, 2-core VM (issue 4)
# baselines of BSPM-EM RK4 (benchmarks/baselines.py), one run each
BASELINES = {"scipy-bspm-em-rk4": "ScipyBSPM", "official-bspm-em-rk4": "OfficialBSPM"}
# Dense n_items^2 products cost 6 * 29,858 * 40,981^2 = 3e14 multiply-adds on Gowalla (about an
# hour on 2 cores): this baseline scores its first --baseline-users users and extrapolates.
SUBSET_BASELINES = {"official-bspm-em-rk4"}


def baseline_worker(args: argparse.Namespace) -> dict:
    """Measure a NumPy baseline of BSPM-EM RK4 in this process (one run)."""
    from benchmarks import baselines
    from bspm_jax import load_dataset
    from bspm_jax.runtime.environment import environment_info, memory_info

    t0 = time.perf_counter()
    data = load_dataset(args.data)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = getattr(baselines, BASELINES[args.worker])().fit(data.train)
    fit_s = time.perf_counter() - t0
    max_users = args.baseline_users if args.worker in SUBSET_BASELINES else None
    batch = min(args.batch_size, max_users or args.batch_size)
    r = baselines.evaluate_numpy(model, data, k=20, batch_size=batch, max_users=max_users)
    scale = r["users_all"] / r["users_scored"]  # inference is linear in the number of users
    return {
        "config": args.worker, "batch_size": batch, "runs": 1, "load_s": load_s,
        "preprocess_s": fit_s, "compile_s": 0.0, "inference_s": r["inference_s"] * scale,
        "topk_metrics_s": r["topk_metrics_s"] * scale,
        "end_to_end_s": load_s + fit_s + (r["inference_s"] + r["topk_metrics_s"]) * scale,
        "users_scored": r["users_scored"], "users_all": r["users_all"],
        "extrapolated": scale != 1.0, "measured_inference_s": r["inference_s"],
        "metrics": r["metrics"], "metrics_users": "all" if scale == 1.0 else f"first {r['users_scored']}",
        "memory": memory_info(), "environment": environment_info(),
    }


def worker(args: argparse.Namespace) -> dict:
    """Measure one configuration in this process."""
    from bspm_jax import evaluate, load_dataset, make_model
    from bspm_jax.runtime.environment import environment_info, memory_info
    from bspm_jax.config import get_preset

    preset, overrides, _ = CONFIGS[args.worker]
    entry = get_preset(preset)
    model = make_model(entry.model_name, **{**entry.model_settings, **overrides})
    t0 = time.perf_counter()
    data = load_dataset(args.data)
    load_s = time.perf_counter() - t0
    fit_s = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        fitted = model.fit(data.train)
        fit_s.append(time.perf_counter() - t0)
    warm = evaluate(fitted, data, ks=(20,), batch_size=args.batch_size)
    passes = [evaluate(fitted, data, ks=(20,), batch_size=args.batch_size) for _ in range(args.runs)]
    # scoring and top-k run in one device program; top-k is timed alone on one batch
    fused = statistics.median(p.timings_s["inference"] for p in passes)
    metrics_s = statistics.median(p.timings_s["evaluate"] for p in passes)
    topk = _top_k_alone(fitted, data, args.batch_size, args.runs)
    inference = fused - topk
    return {
        "config": args.worker,
        "settings": model.config(),
        "batch_size": args.batch_size,
        "runs": args.runs,
        "load_s": load_s,
        "preprocess_s": statistics.median(fit_s),
        "preprocess_all_s": fit_s,
        "compile_s": max(0.0, warm.timings_s["inference"] - fused),
        "inference_s": inference,
        "scoring_topk_s": fused,
        "scoring_topk_all_s": [p.timings_s["inference"] for p in passes],
        "topk_alone_s": topk,
        "metrics_s": metrics_s,
        "topk_metrics_s": topk + metrics_s,
        "end_to_end_s": load_s + statistics.median(fit_s) + fused + metrics_s,
        "metrics": passes[-1].metrics,
        "memory": memory_info(),
        "environment": environment_info(),
    }


def _top_k_alone(model, data, batch_size: int, runs: int) -> float:
    """Seconds of top-20 over all batches: top-k of one batch's scores (median of ``runs``) x batches."""
    import jax
    import numpy as np

    from bspm_jax.ranking import layout_top_k
    from bspm_jax.filtering.rows import SparseRows

    users = data.test_users
    batch_size = min(batch_size, len(users))
    x = SparseRows.from_scipy(data.train[users[:batch_size]], batch_size, users[:batch_size])
    scores, _ = jax.block_until_ready(model.layout_scores_with_stats(x))
    jax.block_until_ready(layout_top_k(scores, x, 20))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(layout_top_k(scores, x, 20))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * -(-len(users) // batch_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/gowalla")
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), default=list(CONFIGS),
                        help="configurations to run (none: only the baselines)")
    parser.add_argument("--baselines", nargs="*", choices=list(BASELINES), default=list(BASELINES),
                        help="NumPy baselines of BSPM-EM RK4 to run for ratios (default: both)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[2048])
    parser.add_argument("--baseline-users", type=int, default=512,
                        help="users the dense official-style baseline scores; its times are extrapolated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out")
    parser.add_argument("--worker", choices=[*CONFIGS, *BASELINES], help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=2048, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        measure = baseline_worker if args.worker in BASELINES else worker
        Path(args.result).write_text(json.dumps(measure(args)))
        return 0
    out = results_path("tables", args.out)
    results = []
    jobs = [(name, batch) for name in args.only for batch in args.batch_sizes]
    jobs += [(name, args.batch_sizes[0]) for name in args.baselines]
    failed = []
    for name, batch in jobs:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "benchmarks.tables", "--worker", name, "--data", args.data,
                   "--batch-size", str(batch), "--runs", str(args.runs), "--result", f"{tmp}/r.json",
                   "--baseline-users", str(args.baseline_users)]
            done = subprocess.run(cmd)
            if done.returncode != 0:  # e.g. killed for memory: say so, keep the other results
                failed.append({"config": name, "batch_size": batch, "returncode": done.returncode})
                print(f"| {name} | {batch} | failed with exit code {done.returncode} |", flush=True)
                continue
            result = json.loads(Path(f"{tmp}/r.json").read_text())
        results.append(result)
        print(_row(result), flush=True)
        write_json_atomic(out, results + failed)  # after every job: an interrupted run keeps its figures
    write_json_atomic(out, results + failed)
    if not results:
        return 1
    env = results[0]["environment"]
    print(f"\n{env['backend']} ({env['device']}), {env['cpu_count']} CPUs, jax {env['jax']}; medians of {args.runs} runs")
    print("| config | batch | preprocess s (paper 35.4) | compile s | inference s | paper inference s (A6000) "
          "| top-k+metrics s | end to end s | Recall@20 | NDCG@20 | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(_row(r))
    ours = next((r for r in results if r["config"] == "bspm-em-rk4"), None)
    for r in results:
        if ours and r["config"] in BASELINES:
            note = (f" (inference extrapolated from its first {r['users_scored']} users; metrics on those users)"
                    if r.get("extrapolated") else
                    f"; Recall@20 difference {ours['metrics']['recall@20'] - r['metrics']['recall@20']:+.5f}")
            print(f"bspm-em-rk4 speed-up over {r['config']}: end to end {r['end_to_end_s'] / ours['end_to_end_s']:.1f}x, "
                  f"inference {r['inference_s'] / ours['inference_s']:.1f}x{note}")
    if ours:
        print(f"bspm-em-rk4 end to end {ours['end_to_end_s']:.1f} s: {OFFICIAL_CODE_S / ours['end_to_end_s']:.1f}x "
              f"faster than the official code's {OFFICIAL_CODE_S:.0f} s (Gowalla, this 2-core VM, quoted in issue 4)")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def _row(r: dict) -> str:
    m = r["metrics"]
    return (
        f"| {r['config']} | {r['batch_size']} | {r['preprocess_s']:.1f} | {r['compile_s']:.1f} | {r['inference_s']:.1f} "
        f"| {CONFIGS[r['config']][2] if r['config'] in CONFIGS else '-'} | {r['topk_metrics_s']:.1f} | {r['end_to_end_s']:.1f} | {m['recall@20']:.5f} "
        f"| {m['ndcg@20']:.5f} | {r['memory']['peak_rss_bytes'] / 2**30:.2f} |"
    )


if __name__ == "__main__":
    sys.exit(main())
