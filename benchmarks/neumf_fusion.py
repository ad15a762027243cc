"""NeuMF's pre-trained fusion weight ``alpha`` chosen on validation, from the parts that pre-trained runs left behind.

    python -m benchmarks.neumf_fusion --data ../shared/data/gowalla --preset gowalla-neumf
        [--set model.pretrain=true --set model.alpha=0.9 ...] [--seeds 0,1,2] [--alphas 0.5,0.7,0.8,0.9,1.0]
        [--work DIR] [--out FILE]

For each seed, the GMF and MLP parts are the best models of the run ``benchmarks.trained``
leaves in ``<work>/<preset><,overrides>/seed<seed>/{gmf,mlp}`` (they are trained there
first when missing, checkpointed and resumable). Each ``alpha`` fuses them with
:func:`bspm_jax.models.neumf_from_parts` (through the loop's own start,
:func:`bspm_jax.training.pretrain.initial_model`, so with the run's part seeds), with no
training after the fusion, and scores validation and test (train items excluded, train
history). The ``alpha`` with the best mean validation Recall@20 over the seeds is the one to
use; the figures go to ``--out`` (default ``benchmarks/results/neumf-fusion-<host>-<date>.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path
from typing import Any

from bspm_jax.config import get_preset
from bspm_jax.evaluation import evaluate
from bspm_jax.experiment import dataset_from_config, model_from_config, train_settings
from bspm_jax.models import NeuMF
from bspm_jax.training.loop import init_key, train
from bspm_jax.training.pretrain import initial_model

from . import machine, save_results

RESULTS = Path(__file__).parent / "results"
METRICS = ("recall@20", "ndcg@20")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="overrides of the pre-trained runs (they name their folders)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--alphas", default="0.5,0.7,0.8,0.9,1.0")
    parser.add_argument("--work", default=str(RESULTS / "trained-work"))
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    tag = "".join(f",{o}" for o in args.set)
    result: dict[str, Any] = {"data": args.data, "preset": args.preset, "overrides": args.set, "runs": {}}
    dataset = None
    for seed in (int(s) for s in args.seeds.split(",") if s.strip()):
        config = get_preset(args.preset).with_overrides(args.set).with_values({"data.path": args.data, "train.seed": seed})
        model, settings = model_from_config(config), train_settings(config)
        if not (isinstance(model, NeuMF) and model.pretrain):
            parser.error(f"{args.preset} with {args.set} is not a pre-trained NeuMF (add --set model.pretrain=true)")
        dataset = dataset if dataset is not None else dataset_from_config(config)

        def validate(m: Any) -> dict[str, float]:
            return evaluate(m, dataset, ks=(20,), split="valid", batch_size="auto").metrics

        folder = Path(args.work) / f"{args.preset}{tag}" / f"seed{seed}"
        for alpha in alphas:
            fused = initial_model(dataclasses.replace(model, alpha=alpha), init_key(settings), dataset.train, settings,
                                  validate, folder, resume=True, run=train).with_train(dataset.train)
            valid, test = validate(fused), evaluate(fused, dataset, ks=(20,), batch_size="auto").metrics
            run = {"seed": seed, "alpha": alpha, "part_epochs": list(fused.part_epochs),
                   "validation": {m: valid[m] for m in METRICS}, "test": {m: test[m] for m in METRICS}}
            result["runs"][f"seed{seed}/alpha{alpha}"] = run
            print(f"seed {seed} alpha {alpha:<4} parts' epochs {fused.part_epochs}: validation R@20 "
                  f"{valid['recall@20']:.4f} N@20 {valid['ndcg@20']:.4f} | test R@20 {test['recall@20']:.4f} "
                  f"N@20 {test['ndcg@20']:.4f}", flush=True)
    summary = {}
    for alpha in alphas:
        runs = [r for r in result["runs"].values() if r["alpha"] == alpha]
        summary[str(alpha)] = {f"{split}_{m}": statistics.fmean(r[split][m] for r in runs)
                               for split in ("validation", "test") for m in METRICS}
        print(f"alpha {alpha:<4} mean over {len(runs)} seeds: validation R@20 "
              f"{summary[str(alpha)]['validation_recall@20']:.4f}", flush=True)
    result["summary"] = summary
    result["chosen_alpha"] = max(alphas, key=lambda a: summary[str(a)]["validation_recall@20"])
    result["machine"] = machine()
    print(f"chosen on validation: alpha {result['chosen_alpha']}")
    print(f"wrote {save_results('neumf-fusion', args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
