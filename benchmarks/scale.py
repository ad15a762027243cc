"""Scale: BSPM-EM RK4 on seeded synthetic power-law data of growing size, time and peak memory.

    python -m benchmarks.scale [--sizes 10000x10000x100000 30000x20000x300000 ...] [--rank 448]
    python -m benchmarks.scale --amazon-book        # 52,643 users x 91,599 items, 2,984,108 interactions
    python -m benchmarks.scale --sizes 1000000x200000x20000000 --score-users 4096

Each size runs in its own process (so its peak RSS is its own): generate the data
(:func:`bspm_jax.data.synthetic.power_law_interactions`, 20% per-user test holdout), fit
(normalisation + SVD), then score every test user (batch size planned from free memory)
and compute Recall/NDCG@20. With ``--score-users N`` only a seeded sample of N test users
is scored and the time for all of them is extrapolated (batches are independent and equal
in size, so scoring time is linear in users; the sample's compile time makes the estimate a
slight over-estimate); the JSON keeps the measured and the extrapolated times apart. Prints
a table with the fitted growth exponent of the total time against the number of
interactions (least squares on log-log) and writes the results to
``benchmarks/results/scale-<host>-<date>T<HHMM>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from bspm_jax.runtime.io import write_json_atomic

from . import results_path

DEFAULT_SIZES = ["10000x10000x100000", "20000x20000x300000", "30000x40000x1000000", "52643x91599x2984108"]
AMAZON_BOOK = "52643x91599x2984108"


def sample_test_users(data, n_users: int | None, seed: int):
    """``data`` with test rows kept for a seeded sample of ``n_users`` test users (all if None or more)."""
    users = data.test_users
    if n_users is None or n_users >= len(users):
        return data
    chosen = np.random.default_rng(seed).choice(users, n_users, replace=False)
    keep = np.zeros(data.n_users, dtype=data.test.dtype)
    keep[chosen] = 1
    test = sp.csr_matrix(sp.diags(keep) @ data.test)
    test.eliminate_zeros()
    return dataclasses.replace(data, test=test)


def worker(size: str, rank: int, seed: int, score_users: int | None = None) -> dict:
    """Generate, fit and evaluate one size in this process (scoring a sample of ``score_users`` test users)."""
    from bspm_jax import evaluate, get_preset, make_model
    from bspm_jax.data.synthetic import synthetic_dataset
    from bspm_jax.runtime.environment import environment_info, memory_info

    n_users, n_items, n_interactions = (int(v) for v in size.split("x"))
    t0 = time.perf_counter()
    data = synthetic_dataset(n_users, n_items, n_interactions, seed=seed)
    t1 = time.perf_counter()
    model = make_model("bspm", **{**get_preset("gowalla-bspm-em").model_settings, "rank": rank}).fit(data.train)
    t2 = time.perf_counter()
    n_test_users = len(data.test_users)
    result = evaluate(model, sample_test_users(data, score_users, seed), ks=(20,), batch_size="auto")
    t3 = time.perf_counter()
    # scoring all test users: measured, or extrapolated linearly from the sample
    all_users = result.timings_s["inference"] * n_test_users / result.n_users
    return {
        "size": size, "n_users": n_users, "n_items": n_items, "n_interactions": n_interactions,
        "n_train": data.n_train, "rank": rank, "seed": seed, "n_test_users": n_test_users,
        "n_users_evaluated": result.n_users, "sampled": result.n_users < n_test_users,
        "batch_size": len(result.ranking.batches[0]),
        "timings_s": {"generate": t1 - t0, "preprocess": t2 - t1, **result.timings_s,
                      "inference_all_users": all_users, "fit_and_score": t2 - t1 + all_users,
                      "measured_wall": t3 - t1},
        "metrics": result.metrics, "memory": memory_info(), "environment": environment_info(),
    }


def growth_exponent(rows: list[dict]) -> float | None:
    """Slope of log(fit + score time) against log(interactions)."""
    if len(rows) < 2:
        return None
    x = np.log([r["n_interactions"] for r in rows])
    y = np.log([r["timings_s"]["fit_and_score"] for r in rows])
    return float(np.polyfit(x, y, 1)[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="USERSxITEMSxINTERACTIONS")
    parser.add_argument("--amazon-book", action="store_true", help=f"only the Amazon-book-sized case ({AMAZON_BOOK})")
    parser.add_argument("--rank", type=int, default=448, help="SVD rank of the ideal low-pass filter (default 448)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score-users", type=int, help="score a seeded sample of this many test users and "
                        "extrapolate the scoring time to all of them (default: score all)")
    parser.add_argument("--out", help="results file (default: benchmarks/results/scale-<host>-<date>.json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        json.dump(worker(args.worker, args.rank, args.seed, args.score_users), sys.stdout)
        return 0
    sizes = [AMAZON_BOOK] if args.amazon_book else args.sizes
    out = results_path("scale", args.out)
    rows = []
    for size in sizes:
        with tempfile.TemporaryFile("w+") as buf:
            cmd = [sys.executable, "-m", "benchmarks.scale", "--worker", size, "--rank", str(args.rank),
                   "--seed", str(args.seed)] + (["--score-users", str(args.score_users)] if args.score_users else [])
            proc = subprocess.run(cmd, stdout=buf, stderr=subprocess.PIPE, text=True)
            buf.seek(0)
            if proc.returncode != 0:
                print(f"{size}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(buf.read()))
        r = rows[-1]
        print(f"{size}: fit {r['timings_s']['preprocess']:.1f} s, scoring {r['n_users_evaluated']:,} users "
              f"{r['timings_s']['inference']:.1f} s, "
              f"peak RSS {r['memory']['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
    exponent = growth_exponent(rows)
    print("\n| users | items | interactions | batch | pre-processing s | users scored | scoring s | "
          "scoring all test users s | fit + score s | peak RSS GiB | Recall@20 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, est = r["timings_s"], " (extrapolated)" if r.get("sampled") else ""
        print(f"| {r['n_users']:,} | {r['n_items']:,} | {r['n_interactions']:,} | {r['batch_size']} | "
              f"{t['preprocess']:.1f} | {r['n_users_evaluated']:,} | {t['inference']:.1f} | "
              f"{t['inference_all_users']:.1f}{est} | {t['fit_and_score']:.1f}{est} | "
              f"{r['memory']['peak_rss_bytes'] / 2**30:.2f} | {r['metrics']['recall@20']:.4f} |")
    if exponent is not None:
        print(f"\ngrowth exponent of fit + score time against interactions: {exponent:.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, {"rows": rows, "growth_exponent": exponent, "rank": args.rank})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
