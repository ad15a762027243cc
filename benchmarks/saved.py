"""A saved model against a refit: ``bspm recommend --load`` versus ``bspm recommend`` fitting again.

    python -m benchmarks.saved --data ../shared/data/gowalla [--preset gowalla-bspm-em] [--users 10]

Times, each as one fresh ``bspm`` process (wall clock, so start-up, data loading and
compilation count as a user sees them): ``bspm fit --save`` (fit and write), ``bspm
recommend --load`` and ``bspm recommend`` with the same preset, for the first ``--users``
users; checks that both recommendations are the same bytes. Prints a table and writes
``benchmarks/results/saved-<host>-<date>T<HHMM>.json`` with the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

from . import bspm_process, save_results


def measure(data: str, preset: str, users: int) -> dict:
    ids = ",".join(str(u) for u in range(users))
    with tempfile.TemporaryDirectory() as tmp:
        folder, loaded, refit = Path(tmp) / "model", Path(tmp) / "load.csv", Path(tmp) / "refit.csv"
        fit_s = bspm_process("fit", "--data", data, "--preset", preset, "--save", str(folder))
        size = sum(f.stat().st_size for f in folder.iterdir())
        load_s = bspm_process("recommend", "--load", str(folder), "--users", ids, "--out", str(loaded))
        refit_s = bspm_process("recommend", "--data", data, "--preset", preset, "--users", ids, "--out", str(refit))
        same = loaded.read_bytes() == refit.read_bytes()
    import jax

    return {
        "data": data, "preset": preset, "users": users,
        "seconds": {"fit_and_save": fit_s, "recommend_load": load_s, "recommend_refit": refit_s},
        "saved_bytes": size, "same_recommendations": same,
        "machine": {"node": platform.node(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "jax": jax.__version__, "backend": jax.default_backend()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--preset", default="gowalla-bspm-em")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--out", help="JSON file (default: benchmarks/results/saved-<host>-<date>.json)")
    args = parser.parse_args(argv)
    result = measure(args.data, args.preset, args.users)
    s = result["seconds"]
    print(f"fit + save          {s['fit_and_save']:8.1f} s  ({result['saved_bytes'] / 2**20:.0f} MiB saved)")
    print(f"recommend --load    {s['recommend_load']:8.1f} s")
    print(f"recommend (refit)   {s['recommend_refit']:8.1f} s")
    print(f"same recommendations: {result['same_recommendations']}")
    print(f"wrote {save_results('saved', args.out, result)}")
    return 0 if result["same_recommendations"] else 1


if __name__ == "__main__":
    sys.exit(main())
