"""Scale: BSPM-EM RK4 on seeded synthetic power-law data of growing size, time and peak memory.

    python -m benchmarks.scale [--sizes 10000x10000x100000 30000x20000x300000 ...] [--rank 448]
    python -m benchmarks.scale --amazon-book        # 52,643 users x 91,599 items, 2,984,108 interactions

Each size runs in its own process (so its peak RSS is its own): generate the data
(:func:`bspm_jax.data.synthetic.power_law_interactions`, 20% per-user test holdout), fit
(normalisation + SVD), then score every test user (batch size planned from free memory)
and compute Recall/NDCG@20. Prints a table with the fitted growth exponent of the total time
against the number of interactions (least squares on log-log) and writes the results to
``benchmarks/results/scale-<host>-<date>T<HHMM>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bspm_jax.io import write_json_atomic

DEFAULT_SIZES = ["10000x10000x100000", "20000x20000x300000", "30000x40000x1000000", "52643x91599x2984108"]
AMAZON_BOOK = "52643x91599x2984108"


def worker(size: str, rank: int, seed: int) -> dict:
    """Generate, fit and evaluate one size in this process."""
    from bspm_jax import evaluate, get_preset, make_model
    from bspm_jax.data.synthetic import synthetic_dataset
    from bspm_jax.environment import environment_info, memory_info

    n_users, n_items, n_interactions = (int(v) for v in size.split("x"))
    t0 = time.perf_counter()
    data = synthetic_dataset(n_users, n_items, n_interactions, seed=seed)
    t1 = time.perf_counter()
    model = make_model("bspm", **{**get_preset("gowalla-em").model_settings, "rank": rank}).fit(data.train)
    t2 = time.perf_counter()
    result = evaluate(model, data, ks=(20,), batch_size="auto")
    t3 = time.perf_counter()
    return {
        "size": size, "n_users": n_users, "n_items": n_items, "n_interactions": n_interactions,
        "n_train": data.n_train, "rank": rank, "seed": seed, "n_users_evaluated": result.n_users,
        "batch_size": len(result.ranking.batches[0]),
        "timings_s": {"generate": t1 - t0, "preprocess": t2 - t1, **result.timings_s, "fit_and_score": t3 - t1},
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
    parser.add_argument("--out", help="results file (default: benchmarks/results/scale-<host>-<date>.json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        json.dump(worker(args.worker, args.rank, args.seed), sys.stdout)
        return 0
    sizes = [AMAZON_BOOK] if args.amazon_book else args.sizes
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M")
    out = Path(args.out or Path(__file__).parent / "results" / f"scale-{platform.node()}-{stamp}.json")
    rows = []
    for size in sizes:
        with tempfile.TemporaryFile("w+") as buf:
            cmd = [sys.executable, "-m", "benchmarks.scale", "--worker", size, "--rank", str(args.rank),
                   "--seed", str(args.seed)]
            proc = subprocess.run(cmd, stdout=buf, stderr=subprocess.PIPE, text=True)
            buf.seek(0)
            if proc.returncode != 0:
                print(f"{size}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(buf.read()))
        r = rows[-1]
        print(f"{size}: fit {r['timings_s']['preprocess']:.1f} s, scoring {r['timings_s']['inference']:.1f} s, "
              f"peak RSS {r['memory']['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
    exponent = growth_exponent(rows)
    print("\n| users | items | interactions | batch | pre-processing s | scoring s | fit + score s | peak RSS GiB | Recall@20 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["timings_s"]
        print(f"| {r['n_users']:,} | {r['n_items']:,} | {r['n_interactions']:,} | {r['batch_size']} | "
              f"{t['preprocess']:.1f} | {t['inference']:.1f} | {t['fit_and_score']:.1f} | "
              f"{r['memory']['peak_rss_bytes'] / 2**30:.2f} | {r['metrics']['recall@20']:.4f} |")
    if exponent is not None:
        print(f"\ngrowth exponent of fit + score time against interactions: {exponent:.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, {"rows": rows, "growth_exponent": exponent, "rank": args.rank})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
