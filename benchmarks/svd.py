"""The truncated SVD of R~: the block Krylov solver against PROPACK (and ARPACK), accuracy and time, and BSPM's metrics.

    python -m benchmarks.svd --data ../shared/data/gowalla [--rank 448] [--solvers block,propack] [--preset gowalla-bspm-em]
    python -m benchmarks.svd --synthetic 52643x91599x2984108 --solvers block      # Amazon-book size

For each solver (``svd_solver`` of :func:`bspm_jax.spectral.truncated_svd`, its default
tolerance unless ``--tol``): the wall time of the SVD alone (normalisation excluded; the
first solver's time includes the one-off JIT compilation of the products, so a warm-up
call on a small matrix runs first), the largest residual of the returned triplets
(``max_i ||A^T A v_i - s_i^2 v_i|| / (s_i s_1)``, float64 SciPy products), and against the
reference solver (the last one named): the largest relative difference of the singular
values and the largest principal angle between the two subspaces. With ``--preset`` the
preset's model (e.g. BSPM-EM) is fitted on each spectrum and its test Recall/NDCG@20
reported. Results: ``benchmarks/results/svd-<host>-<date>T<HHMM>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from . import machine, results_path, save_results


def principal_angle(a: np.ndarray, b: np.ndarray) -> float:
    """The largest principal angle between the row spaces of two matrices with orthonormal rows."""
    cosines = np.linalg.svd(a @ b.T, compute_uv=False)
    return float(np.arcsin(np.sqrt(max(0.0, 1.0 - float(cosines.min()) ** 2))))


def main(argv: list[str] | None = None) -> int:
    from bspm_jax import evaluate, spectral
    from bspm_jax.config import get_preset
    from bspm_jax.experiment import dataset_from_config, model_from_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a data folder (its train split is decomposed)")
    source.add_argument("--synthetic", metavar="USERSxITEMSxINTERACTIONS", help="seeded power-law data of this size")
    parser.add_argument("--rank", type=int, default=448)
    parser.add_argument("--solvers", default="block,propack", help="comma-separated; the last is the reference")
    parser.add_argument("--tol", type=float, default=None, help="stopping rule (default: the library's)")
    parser.add_argument("--preset", help="fit this preset's model on each spectrum and report its test metrics")
    parser.add_argument("--out", help="JSON file (default: benchmarks/results/svd-<host>-<date>T<HHMM>.json)")
    args = parser.parse_args(argv)
    tol = spectral.DEFAULT_TOL if args.tol is None else args.tol

    dataset = None
    if args.data:
        config = get_preset(args.preset or "gowalla-bspm-em").with_values({"data.path": args.data})
        dataset = dataset_from_config(config)
        train = dataset.train
    else:
        from bspm_jax.data.synthetic import power_law_interactions

        n_users, n_items, n_interactions = (int(v) for v in args.synthetic.split("x"))
        train = power_law_interactions(n_users, n_items, n_interactions, seed=0)
    cache = spectral.SpectrumCache()
    norm = cache.normalized(train)[0]  # once, outside the timings
    spectral.truncated_svd(spectral.normalize(train[:3000, :3000])[0], 8, solver="block")  # compile the products
    result: dict[str, Any] = {"data": args.data or f"synthetic {args.synthetic}", "shape": list(norm.shape),
                              "nnz": int(norm.nnz), "rank": args.rank, "tol": tol, "solvers": {}}
    spectra = {}
    for solver in [s.strip() for s in args.solvers.split(",") if s.strip()]:
        t0 = time.perf_counter()
        spectrum = cache.spectrum(train, args.rank, solver, tol)
        seconds = time.perf_counter() - t0
        s, vt = spectrum.values, spectrum.vectors
        residual = spectral.residuals(norm, s, vt)
        spectra[solver] = (s, vt)
        entry = {"seconds": seconds, "max_residual": float(residual.max()), "s_1": float(s[0]), "s_k": float(s[-1])}
        print(f"{solver:<8} SVD {seconds:7.2f} s  max residual {entry['max_residual']:.2e}  s_1 {s[0]:.6f}  "
              f"s_{args.rank} {s[-1]:.6f}", flush=True)
        result["solvers"][solver] = entry
    reference = list(spectra)[-1]
    ref_s, ref_vt = spectra[reference]
    for solver, (s, vt) in spectra.items():
        entry = result["solvers"][solver]
        entry["max_rel_value_diff_vs_" + reference] = float(np.max(np.abs(s - ref_s) / ref_s))
        entry["principal_angle_vs_" + reference] = principal_angle(vt, ref_vt)
        print(f"{solver:<8} vs {reference}: singular values within {entry['max_rel_value_diff_vs_' + reference]:.2e} "
              f"(relative), largest principal angle {entry['principal_angle_vs_' + reference]:.2e}", flush=True)
    if args.preset and dataset is not None:
        for solver in spectra:
            preset = get_preset(args.preset).with_values({"model.rank": args.rank, "model.svd_solver": solver,
                                                           "model.svd_tol": tol})
            fitted = model_from_config(preset).fit(train, cache)  # the spectrum above, from the cache
            metrics = evaluate(fitted, dataset, ks=(20,)).metrics
            result["solvers"][solver][args.preset] = {k: metrics[k] for k in ("recall@20", "ndcg@20")}
            print(f"{solver:<8} {args.preset}: test R@20 {metrics['recall@20']:.5f} N@20 {metrics['ndcg@20']:.5f}",
                  flush=True)
    result["machine"] = machine()
    print(f"wrote {save_results('svd', args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
