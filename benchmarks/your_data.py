"""Your data, end to end at 10^7 interactions: Parquet in, BSPM fitted on everything, every user's top-20 out.

    python -m benchmarks.your_data [--users 200000] [--items 20000] [--interactions 10000000] [--dir /tmp/yd]

A seeded synthetic power-law matrix (:func:`bspm_jax.data.synthetic.power_law_interactions`)
becomes a table of string ids (``user_0000042``, ``item_00042``) with a timestamp, written
as Parquet and as CSV in ``--dir``. Each step then runs in a process of its own, so that
its wall time and peak RSS are its own:

- ``read-parquet``, ``read-csv``: :func:`bspm_jax.read_interactions` of each file;
- ``load-csv`` and ``load-csv-e0b680e``: ``load_pairs`` of the CSV (ids mapped, a 20% random
  holdout split) by this library and by the hand-written reader of commit e0b680e
  (``git show e0b680e:bspm_jax/data/pairs.py``, run against today's package);
- ``fit``: ``bspm fit --data FILE.parquet --split none --no-cache --save DIR`` (BSPM, default settings and
  ``--set``; the SVD computed afresh);
- ``recommend``: ``bspm recommend --load DIR --users all --k 20 --out recs.parquet``.

Writes ``benchmarks/results/your-data-<host>-<date>T<HHMM>.json`` with the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

from . import machine, save_results

REPO = Path(__file__).resolve().parents[1]
OLD = "e0b680e"


def make_files(folder: Path, n_users: int, n_items: int, n: int, seed: int) -> dict[str, object]:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from bspm_jax.data.synthetic import power_law_interactions

    t0 = time.perf_counter()
    m = power_law_interactions(n_users, n_items, n, seed=seed).tocoo()
    rng = np.random.default_rng(seed)
    order = rng.permutation(m.nnz)
    users = np.char.add("user_", np.char.zfill(m.row[order].astype(str), 7))
    items = np.char.add("item_", np.char.zfill(m.col[order].astype(str), 5))
    times = rng.integers(1_500_000_000, 1_700_000_000, m.nnz)
    table = pa.table({"user": users, "item": items, "ts": times})
    pq.write_table(table, folder / "plays.parquet")
    pa_csv.write_csv(table, folder / "plays.csv")
    return {"users": n_users, "items": n_items, "interactions": int(m.nnz), "seconds": time.perf_counter() - t0,
            "parquet_bytes": (folder / "plays.parquet").stat().st_size, "csv_bytes": (folder / "plays.csv").stat().st_size}


def old_load_pairs():
    """``load_pairs`` as it was at commit e0b680e, imported into today's ``bspm_jax.data`` package."""
    source = subprocess.run(["git", "show", f"{OLD}:bspm_jax/data/pairs.py"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    module = types.ModuleType("bspm_jax.data.pairs_e0b680e")
    module.__package__ = "bspm_jax.data"
    sys.modules[module.__name__] = module
    exec(compile(source, f"pairs.py@{OLD}", "exec"), module.__dict__)
    return module.load_pairs


def run_step(step: str, folder: Path, sets: list[str]) -> dict[str, object]:
    """One step in this process: its wall seconds, peak RSS and what it made."""
    from bspm_jax import load_pairs, read_interactions
    from bspm_jax.cli import main

    t0 = time.perf_counter()
    out: dict[str, object] = {}
    if step in ("read-parquet", "read-csv"):
        data = read_interactions(folder / f"plays.{step.split('-')[1]}", user_col="user", item_col="item",
                                 time_col="ts")
        out = {"users": data.n_users, "items": data.n_items, "pairs": data.n_interactions}
    elif step in ("load-csv", "load-csv-e0b680e"):
        load = load_pairs if step == "load-csv" else old_load_pairs()
        data = load(folder / "plays.csv", user_col="user", item_col="item")
        out = {"users": data.n_users, "items": data.n_items, "train": data.n_train, "test": data.n_test}
    elif step == "fit":
        code = main(["fit", "--data", str(folder / "plays.parquet"), "--user-col", "user", "--item-col", "item",
                     "--time-col", "ts", "--split", "none", "--save", str(folder / "model"), "--quiet", "--no-cache",
                     *[a for s in sets for a in ("--set", s)]])
        out = {"exit": code}
    elif step == "recommend":
        code = main(["recommend", "--load", str(folder / "model"), "--users", "all", "--k", "20",
                     "--out", str(folder / "recs.parquet"), "--quiet"])
        out = {"exit": code, "bytes": (folder / "recs.parquet").stat().st_size}
    else:
        raise SystemExit(f"unknown step {step}")
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_gib"] = peak_rss_gib()
    return out


def peak_rss_gib() -> float:
    """This process's peak resident set (VmHWM): unlike ``ru_maxrss``, not inherited from the parent at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


STEPS = ["read-parquet", "read-csv", "load-csv", "load-csv-e0b680e", "fit", "recommend"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default="/tmp/bspm-your-data")
    parser.add_argument("--steps", nargs="+", default=STEPS)
    parser.add_argument("--reuse", action="store_true", help="keep the files already in --dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a BSPM setting of the fit step")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--out")
    args = parser.parse_args()
    folder = Path(args.dir)
    if args.step:
        print(json.dumps(run_step(args.step, folder, args.set)))
        return
    folder.mkdir(parents=True, exist_ok=True)
    made = {"reused": str(folder)} if args.reuse else make_files(folder, args.users, args.items, args.interactions,
                                                                 args.seed)
    result: dict[str, object] = {"machine": machine(), "data": made, "model": {"name": "bspm", "set": args.set},
                                 "steps": {}}
    print(json.dumps(result["data"]), flush=True)
    for step in args.steps:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "benchmarks.your_data", "--step", step, "--dir", str(folder),
                               *[a for s in args.set for a in ("--set", s)]],
                              cwd=REPO, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{step} failed:\n{proc.stderr[-3000:]}")
        record = json.loads(proc.stdout.strip().splitlines()[-1])
        record["process_seconds"] = time.perf_counter() - t0
        result["steps"][step] = record
        print(step, json.dumps(record), flush=True)
    print(f"wrote {save_results('your-data', args.out, result)}")


if __name__ == "__main__":
    main()
