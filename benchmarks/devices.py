"""Scoring speed-up across local devices, and the equality of every device count's top-K with one device's.

    python -m benchmarks.devices --data ../shared/data/gowalla [--preset gowalla-bspm-em] [--counts 1 2 4]
    python -m benchmarks.devices --cpu-devices 2        # split the host CPU into 2 XLA devices

Fits once, then ranks every test user's row (top 20) with the user batches split across 1, 2,
... local devices (``rank_rows(..., devices=n)``). Each count runs ``--runs`` times after one
warm-up call (compilation); the median is reported with its speed-up over the first count
(one device by default), and the top-K items and scores are compared bit for bit with its.
Prints a table and writes ``benchmarks/results/devices-<host>-<date>T<HHMM>.json``. On a GPU machine the
devices are its GPUs; ``--cpu-devices N`` re-runs this script with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (CPU threads shared by N devices).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import save_results


def measure(data_path: str | None, preset: str, counts: list[int] | None, batch_size: int, runs: int) -> dict:
    """Fit once and time the ranking of all test users on each device count."""
    import jax

    from bspm_jax import get_preset, load_dataset, load_sample, make_model
    from bspm_jax.runtime.environment import environment_info, memory_info
    from bspm_jax.ranking import rank_rows

    data = load_sample() if data_path is None else load_dataset(data_path)
    model = make_model("bspm", **get_preset(preset).model_settings).fit(data.train)
    rows = data.train[data.test_users]
    n_local = len(jax.local_devices())
    counts = counts or sorted({1, *[2**i for i in range(1, n_local.bit_length()) if 2**i <= n_local], n_local})
    reference, table = None, []
    for count in counts:
        rank_rows(model, rows, 20, batch_size, devices=count)  # warm-up: compile
        seconds, ranking = [], None
        for _ in range(runs):
            t0 = time.perf_counter()
            ranking = rank_rows(model, rows, 20, batch_size, devices=count)
            seconds.append(time.perf_counter() - t0)
        if reference is None:
            reference = ranking
        table.append({
            "devices": count, "seconds": seconds, "median_s": statistics.median(seconds),
            "identical_to_first": bool(np.array_equal(ranking.items, reference.items)
                                            and np.array_equal(ranking.scores, reference.scores)),
        })
    base = table[0]["median_s"]
    for row in table:
        row["speed_up"] = base / row["median_s"]
    return {"data": data.name, "preset": preset, "n_users_scored": rows.shape[0], "batch_size": batch_size,
            "runs": runs, "rows": table, "memory": memory_info(), "environment": environment_info()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a dataset folder (default: the shipped sample)")
    parser.add_argument("--preset", default="gowalla-bspm-em")
    parser.add_argument("--counts", type=int, nargs="+", help="device counts (default: 1, 2, 4, ... and all)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu-devices", type=int, help="split the host CPU into this many XLA devices")
    parser.add_argument("--out", help="results file (default: benchmarks/results/devices-<host>-<date>.json)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cpu_devices and not args.child:  # XLA reads the device count before JAX starts: run a child
        env = {**os.environ, "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={args.cpu_devices}"}
        cmd = [sys.executable, "-m", "benchmarks.devices", *(sys.argv[1:] if argv is None else argv), "--child"]
        return subprocess.run(cmd, env=env).returncode
    result = measure(args.data, args.preset, args.counts, args.batch_size, args.runs)
    env = result["environment"]
    print(f"{result['data']}, {result['preset']}: {result['n_users_scored']:,} users, batch {args.batch_size}, "
          f"{env['backend']} ({env['device']}), median of {args.runs}")
    print("\n| devices | scoring + top-20 s | speed-up | top-20 identical to the first row |")
    print("|---|---|---|---|")
    for row in result["rows"]:
        print(f"| {row['devices']} | {row['median_s']:.2f} | {row['speed_up']:.2f} | {row['identical_to_first']} |")
    print(f"wrote {save_results('devices', args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
