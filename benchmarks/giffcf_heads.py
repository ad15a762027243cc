"""Saved one-head GiffCF models (e.g. the seeds of a preset) composed as the heads of one GiffCF, evaluated under protocol A.

    python -m benchmarks.giffcf_heads --data ../shared/data/ml-1m-diffrec --models DIR1 DIR2 DIR3 [--out FILE]

Each DIR is a model saved by ``bspm fit --save`` (same settings and train matrix, one head).
The composed model has ``heads = len(DIRS)``: its scores are the mean of the heads' sampled
x_0, as a ``heads`` model trained from scratch computes them; its heads were trained apart
(each on its own batch order), which a ``heads`` model's are not. Validation and test
Recall/NDCG@10/20 of each model and of the composition are written to the JSON file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

from bspm_jax import GiffCF, evaluate, load_dataset, load_model
from bspm_jax.runtime.environment import environment_info


def compose(models: list[GiffCF]) -> GiffCF:
    """One GiffCF whose heads are the given one-head models' denoisers, in order."""
    first = models[0]
    if any(m.heads != 1 or m.config() != first.config() or m.fitted_on != first.fitted_on for m in models):
        raise SystemExit("every model must be a one-head GiffCF with the same settings and train matrix")
    extra = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[m.denoiser for m in models[1:]])
    return dataclasses.replace(first, heads=len(models), extra_heads=extra)


def figures(model: GiffCF, data) -> dict[str, dict[str, float]]:
    keep = ("recall", "ndcg")
    return {split: {k: v for k, v in evaluate(model, data, ks=(10, 20), split=split).metrics.items()
                    if k.split("@")[0] in keep} for split in ("valid", "test")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/ml-1m-diffrec")
    parser.add_argument("--models", nargs="+", required=True, type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    data = load_dataset(args.data)
    models = [load_model(path) for path in args.models]
    result = {"protocol": "A", "models": {str(p): figures(m, data) for p, m in zip(args.models, models)}}
    result["composed"] = figures(compose(models), data)
    result["environment"] = environment_info()
    for name, fig in [*result["models"].items(), ("composed", result["composed"])]:
        print(f"{name}: valid R@20 {fig['valid']['recall@20']:.4f}  test R@20 {fig['test']['recall@20']:.4f} "
              f"N@20 {fig['test']['ndcg@20']:.4f}")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
