"""Does a validation split carved from train stand for the test split? Popularity of each split's items,
and per-user Recall@K differences between models on both splits, with paired standard errors.

    python -m benchmarks.split_shift --data ../shared/data/gowalla --models gowalla-chebycf gowalla-ensemble-best gowalla-bspm-em

The first model is the reference. A difference of the same sign on both splits is what selection on
validation needs; a significant reversal means that validation selects for another target than test.
Popularity is the mean degree, over train + test, of the items of each split's interactions: for a
random per-user holdout it is the same for the held-out and the kept interactions.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from . import machine, save_results


def per_user_recall(evaluation: Any, truth: Any, k: int) -> np.ndarray:
    """Recall@k of each evaluated user, from the evaluation's ranking and the relevant items ``truth`` (CSR)."""
    items = evaluation.ranking.items[:, :k]
    rows = truth[evaluation.users]
    hits = np.array([np.isin(items[i], rows.indices[rows.indptr[i]:rows.indptr[i + 1]]).sum()
                     for i in range(len(evaluation.users))])
    return hits / np.diff(rows.indptr)


def popularity(data: Any, val: Any) -> dict[str, float]:
    """Mean degree over train + test of the items of test, carved validation and kept train interactions."""
    degree = np.asarray((data.train + data.test).sum(axis=0)).ravel()
    return {name: float(degree[m.indices].mean()) for name, m in
            (("test", data.test), ("validation", val.valid), ("train_kept", val.train))}


def main(argv: list[str] | None = None) -> int:
    from bspm_jax import evaluate, load_dataset
    from bspm_jax.spectral import SpectrumCache
    from bspm_jax.config import get_preset
    from bspm_jax.data import carve_validation
    from bspm_jax.models import make_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--models", nargs="+", required=True, help="preset names; the first is the reference")
    parser.add_argument("--validation", type=float, default=0.2, help="share of each user's train items carved")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    data = load_dataset(args.data)
    val = carve_validation(data, args.validation, args.seed)
    result: dict[str, Any] = {"data": data.summary(), "validation": {"fraction": args.validation, "seed": args.seed},
                              "popularity": popularity(data, val), "recall": {}, "paired": {}}
    print("mean degree (train + test) of the items of: " + ", ".join(f"{k} {v:.1f}" for k, v in result["popularity"].items()))
    for split, ds in (("validation", val), ("test", data)):
        cache, recalls = SpectrumCache(), {}
        for name in args.models:
            config = get_preset(name)
            model = make_model(config.model_name, **config.model_settings).fit(ds.train, cache)
            evaluation = evaluate(model, ds, ks=(args.k,), split="valid" if split == "validation" else "test")
            recalls[name] = per_user_recall(evaluation, ds.valid if split == "validation" else ds.test, args.k)
            result["recall"][f"{split}:{name}"] = evaluation.metrics[f"recall@{args.k}"]
        reference = args.models[0]
        for name in args.models[1:]:
            d = recalls[name] - recalls[reference]
            entry = {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))), "users": len(d)}
            result["paired"][f"{split}:{name}-{reference}"] = entry
            print(f"{split:>10}  {name} - {reference}: {entry['mean']:+.5f} (se {entry['se']:.5f}, {len(d):,} users)")
    result["machine"] = machine()
    print(f"wrote {save_results('split-shift', args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
