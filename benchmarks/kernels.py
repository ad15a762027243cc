"""The native kernel's instruction-set paths against XLA, on the products BSPM runs.

    python -m benchmarks.kernels --data ../shared/data/gowalla [--rank 448] [--users 2048] [--runs 3]

For every path this CPU runs (``bspm_jax.runtime.native.isa_paths()``) and for XLA: the dense
product of the ideal term, ``(R_u L) R`` as ``R^T (R_u L)^T`` on column chunks of 64 and of
16 users (a random (n_items, rank) matrix: the timing does not depend on its values), and
one ``P~`` pass through ``R~`` on chunks of 64 (the dataset's normalised interactions).
Reports the best of ``--runs`` calls after a warm-up, GFMA/s for the dense product, and
whether each path's result equals the first path's bit for bit. Prints a table and writes
``benchmarks/results/kernels-<host>-<date>T<HHMM>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import save_results


def _best(fn, args, runs: int) -> tuple[float, np.ndarray]:
    out = np.asarray(fn(*args).block_until_ready())  # warm-up: compile
    seconds = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(*args).block_until_ready()
        seconds.append(time.perf_counter() - t0)
    return min(seconds), out


def measure(data_path: str | None, rank: int, users: int, runs: int) -> dict:
    import jax
    import jax.numpy as jnp

    from bspm_jax import load_dataset, load_sample

    from bspm_jax.runtime import native
    from bspm_jax.runtime.environment import environment_info
    from bspm_jax.spectral import normalize

    data = load_sample() if data_path is None else load_dataset(data_path)
    norm, _, _ = normalize(data.train)
    norm = norm.astype(np.float32)
    norm.sort_indices()
    norm_t = norm.T.tocsr()
    norm_t.sort_indices()
    n_items = norm.shape[1]
    rng = np.random.default_rng(0)
    right_t = jnp.asarray(rng.standard_normal((n_items, rank), dtype=np.float32))
    csr = [jnp.asarray(a) for a in (norm.indptr.astype(np.int32), norm.indices.astype(np.int32), norm.data)]
    csr_t = [jnp.asarray(a) for a in (norm_t.indptr.astype(np.int32), norm_t.indices.astype(np.int32), norm_t.data)]
    state = jnp.asarray(rng.random((users, n_items), dtype=np.float32))
    rows = []
    for width in (64, 16):
        xl = jnp.asarray(rng.standard_normal((users // width, rank, width), dtype=np.float32))
        chunks = native.to_chunks(state, width)
        cases = {"xla": (jax.jit(lambda a, x: jax.lax.map(lambda xc: a @ xc, x)), None)}
        cases.update({p: (jax.jit(lambda a, x, p=p: native.dense_matmul(a, x, p)), p) for p in native.isa_paths()})
        first = None
        for name, (fn, path) in cases.items():
            s, out = _best(fn, (right_t, xl), runs)
            row = {"product": "dense (R_u L) R", "width": width, "path": name, "best_s": s,
                   "gfma_per_s": n_items * rank * users / s / 1e9}
            if path is not None:
                first = out if first is None else first
                row["identical_to_first_path"] = bool(np.array_equal(out, first))
            rows.append(row)
        if width != 64:
            continue
        first = None
        for path in native.isa_paths():
            fn = jax.jit(lambda x, p=path: native.csr_matmul(*csr_t, native.csr_matmul(*csr, x, p), p))
            s, out = _best(fn, (chunks,), runs)
            first = out if first is None else first
            rows.append({"product": "P~ pass (X R~^T) R~", "width": width, "path": path, "best_s": s,
                         "identical_to_first_path": bool(np.array_equal(out, first))})
    return {"data": data.name, "rank": rank, "users": users, "runs": runs, "rows": rows,
            "environment": environment_info()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a dataset folder (default: the shipped sample)")
    parser.add_argument("--rank", type=int, default=448)
    parser.add_argument("--users", type=int, default=2048, help="users per call (a multiple of 64)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", help="results file (default: benchmarks/results/kernels-<host>-<date>.json)")
    args = parser.parse_args(argv)
    if args.users < 64 or args.users % 64:
        parser.error("--users must be a positive multiple of 64")
    result = measure(args.data, args.rank, args.users, args.runs)
    env = result["environment"]
    print(f"{result['data']}: rank {args.rank}, {args.users} users per call, {env['backend']} ({env['device']}), "
          f"best of {args.runs}")
    print("\n| product | width | path | best s | GFMA/s | bits equal to the first path |")
    print("|---|---|---|---|---|---|")
    for row in result["rows"]:
        gfma = f"{row['gfma_per_s']:.1f}" if "gfma_per_s" in row else ""
        print(f"| {row['product']} | {row['width']} | {row['path']} | {row['best_s']:.3f} | {gfma} | "
              f"{row.get('identical_to_first_path', '')} |")
    print(f"wrote {save_results('kernels', args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
