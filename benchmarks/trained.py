"""The trained models of the field (LightGCN, Mult-VAE/DAE, NeuMF, MF-BPR) on one split, beside BSPM.

    python -m benchmarks.trained --data ../shared/data/gowalla --presets gowalla-lightgcn[,...]
        [--seeds 0] [--set KEY=VALUE ...] [--hours 2.5] [--refit] [--bspm gowalla-bspm-em] [--work DIR] [--out FILE]

Each (preset, seed) run trains with the preset's settings (``data.validation`` carves the
validation split from train when the data has none), early-stopped on validation, with
checkpoints and the learning curve in ``--work`` (default ``benchmarks/results/trained-work``),
and reports test Recall/NDCG@10/20 (train items excluded; with ``--refit`` also after the
refit on train + validation for the best epoch count, the DiffRec split's second protocol,
checkpointed and resumable like the training), the epochs, the time per
epoch (sampling and steps, the first epoch with its compilation left out) and the time to the
best epoch. All runs share a wall-clock budget of ``--hours``: a run still going when it is
spent stops at the end of an epoch, reports the figure it reached (``interrupted: true``),
and a rerun with the same ``--out`` and ``--work`` resumes it from its checkpoint. Finished
runs are skipped. ``--bspm`` times that preset's fit (the pre-processing of Table 5) and
scoring on the full train split. Results: ``--out`` (default
``benchmarks/results/trained-<host>-<date>.json``), rewritten after every run, and each run's
curve (and its pre-trained parts' curves, ``-gmf-``, ``-mlp-``) in the folder ``curves/`` beside
it (so a run written elsewhere leaves the repository's curves alone).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bspm_jax.config import get_preset
from bspm_jax.data import Dataset
from bspm_jax.evaluation import evaluate
from bspm_jax.evaluation.fit import FitOptions, fit_matrix, fit_model, refit_trained
from bspm_jax.experiment import dataset_from_config, model_from_config, train_settings

from . import machine, results_path, save_results

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
RESULTS = Path(__file__).parent / "results"


def _metrics(ev: Any) -> dict[str, float]:
    return {m: ev.metrics[m] for m in METRICS}


def _epoch_seconds(history: list[dict[str, Any]]) -> float | None:
    """Mean sampling + steps time per epoch, the first epoch of the run (compilation) left out when others exist."""
    times = [r["step_seconds"] for r in history if "step_seconds" in r]
    times = times[1:] if len(times) > 1 else times
    return statistics.fmean(times) if times else None


def _run(dataset: Dataset, config: Any, folder: Path, time_limit: float, refit: bool,
         batch_size: int | str) -> dict[str, Any]:
    model, settings = model_from_config(config), train_settings(config)
    deadline = time.monotonic() + time_limit
    options = FitOptions(train=settings, train_dir=folder, resume=True, batch_size=batch_size, time_limit=time_limit)
    t0 = time.perf_counter()
    fitted, record = fit_model(model, dataset, options)
    wall = time.perf_counter() - t0
    curve = json.loads((folder / "learning_curve.json").read_text())["history"]
    test = evaluate(fitted, dataset, ks=(10, 20), batch_size=batch_size)
    valid = evaluate(fitted, dataset, ks=(10, 20), batch_size=batch_size, split="valid")
    run = {
        "model": model.name, "settings": model.config(), "train": settings.to_dict(),
        "validation_split": dataset.stats.get("validation", "given"),
        "test": _metrics(test), "validation": _metrics(valid),
        "epochs_run": record["epochs_run"], "best_epoch": record["best_epoch"],
        "interrupted": record["interrupted"], "stopped_early": record["stopped_early"],
        "epoch_budget": settings.epochs,
        "seconds_per_epoch": _epoch_seconds(curve), "training_s": record["seconds"],
        "training_to_best_s": record["seconds_to_best"], "wall_this_session_s": wall,
        "inference_s": test.timings_s["inference"],
        "curve": [{k: r[k] for k in r if k in ("epoch", "loss", "seconds", "step_seconds", settings.metric)}
                  for r in curve],
    }
    if fitted.scores_new_users and dataset.valid is not None:
        # A model that scores from the history alone reads the whole train split at test time
        # (train + the validation carved from it), without refitting.
        run["test_full_history"] = _metrics(evaluate(fitted, dataset, ks=(10, 20), batch_size=batch_size,
                                                     history="train+valid"))
    if refit and not record["interrupted"]:
        # Checkpointed in <folder>/refit and bounded by what is left of the budget: a rerun resumes it.
        t1 = time.perf_counter()
        left = max(deadline - time.monotonic(), 1.0)
        refitted = refit_trained(fitted, dataset, settings, record["best_epoch"], folder / "refit", resume=True,
                                 time_limit=left)
        run["refit_s"] = time.perf_counter() - t1
        run["refit_epochs_run"] = refitted.epochs_run
        run["refit_training_s"] = refitted.seconds
        run["refit_interrupted"] = refitted.interrupted
        run["test_refit_train_valid"] = _metrics(evaluate(refitted.model, dataset, ks=(10, 20),
                                                          batch_size=batch_size, history="train+valid"))
    return run


def _bspm(preset: str, data: str, batch_size: int | str) -> dict[str, Any]:
    """The preset's fit (pre-processing) and scoring times and test figures on the full train split."""
    config = get_preset(preset).with_values({"data.path": data})
    dataset = dataset_from_config(config)
    model = model_from_config(config)
    t0 = time.perf_counter()
    fitted = model.fit(fit_matrix(dataset))
    fit_s = time.perf_counter() - t0
    test = evaluate(fitted, dataset, ks=(10, 20), batch_size=batch_size)
    return {"preset": preset, "fit_s": fit_s, "inference_s": test.timings_s["inference"], "test": _metrics(test)}


def _batch_size(text: str) -> int | str:
    return text if text == "auto" else int(text)


def _summary(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    out = {}
    for m in METRICS:
        values = [r[key][m] for r in runs if key in r]
        if values:
            out[m] = {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                      "n": len(values)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--presets", required=True, help="comma-separated preset names")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for every run (e.g. train.lr=0.005); part of the run's name")
    parser.add_argument("--hours", type=float, default=2.5, help="wall-clock budget of all training runs")
    parser.add_argument("--refit", action="store_true", help="also refit on train + validation (DiffRec's protocol)")
    parser.add_argument("--bspm", help="a BSPM preset whose fit and scoring are timed on the same data")
    parser.add_argument("--batch-size", type=_batch_size, default="auto",
                        help="users per batch in evaluation (default: auto, planned from free memory)")
    parser.add_argument("--work", default=str(RESULTS / "trained-work"), help="checkpoints and curves (resumable)")
    parser.add_argument("--out", help="JSON file (default: benchmarks/results/trained-<host>-<date>.json)")
    args = parser.parse_args(argv)
    path = results_path("trained", args.out)
    result: dict[str, Any] = {"data": args.data, "runs": {}}
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("data") == args.data:
            result = old
    deadline = time.monotonic() + 3600 * args.hours
    datasets: dict[str, Dataset] = {}
    for preset in (p.strip() for p in args.presets.split(",") if p.strip()):
        for seed in (int(s) for s in args.seeds.split(",") if s.strip()):
            tag = "".join(f",{o}" for o in args.set)
            name = f"{preset}{tag}/seed{seed}"
            done = result["runs"].get(name)
            if done is not None and not done["interrupted"] and not (args.refit and done.get("refit_interrupted", True)):
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"{name}: no time left in the --hours budget", flush=True)
                continue
            config = get_preset(preset).with_overrides(args.set).with_values({"data.path": args.data, "train.seed": seed})
            data_key = json.dumps(config["data"], sort_keys=True)
            if data_key not in datasets:
                datasets[data_key] = dataset_from_config(config)
            folder = Path(args.work) / f"{preset}{tag}" / f"seed{seed}"
            run = _run(datasets[data_key], config, folder, left, args.refit, args.batch_size)
            run["overrides"] = list(args.set)
            result["runs"][name] = run
            curves = path.parent / "curves"
            curves.mkdir(parents=True, exist_ok=True)
            stem = f"{preset}{tag.replace('=', '-')}"
            shutil.copyfile(folder / "learning_curve.csv", curves / f"{stem}-seed{seed}.csv")
            for part in sorted(folder.glob("*/learning_curve.csv")):  # pre-trained parts (NeuMF's gmf/, mlp/)
                shutil.copyfile(part, curves / f"{stem}-{part.parent.name}-seed{seed}.csv")
            t = run["test"]
            state = "interrupted (resumable)" if run["interrupted"] else "finished"
            to_best = "-" if run["training_to_best_s"] is None else f"{run['training_to_best_s']:.0f} s"
            print(f"{name:<28} test R@20 {t['recall@20']:.4f} N@20 {t['ndcg@20']:.4f} | epochs {run['epochs_run']} "
                  f"of {run['epoch_budget']} ({state}), best {run['best_epoch']}, {run['seconds_per_epoch']:.2f} s/epoch, "
                  f"to best {to_best}", flush=True)
            if "test_full_history" in run:
                th = run["test_full_history"]
                print(f"{'':<28} scored from train + validation: R@20 {th['recall@20']:.4f} "
                      f"N@20 {th['ndcg@20']:.4f}", flush=True)
            if "test_refit_train_valid" in run:
                tv = run["test_refit_train_valid"]
                state = (f"interrupted at epoch {run['refit_epochs_run']} (resumable)" if run["refit_interrupted"]
                         else f"{run['refit_epochs_run']} epochs")
                print(f"{'':<28} refit train+valid ({state}): R@20 {tv['recall@20']:.4f} N@20 {tv['ndcg@20']:.4f}",
                      flush=True)
            result["machine"] = machine()
            save_results("trained", str(path), result)
    if args.bspm and result.get("bspm", {}).get("preset") != args.bspm:
        result["bspm"] = _bspm(args.bspm, args.data, args.batch_size)
    if "bspm" in result:
        b = result["bspm"]
        print(f"BSPM ({b['preset']}): fit (pre-processing) {b['fit_s']:.2f} s, inference {b['inference_s']:.2f} s, "
              f"test R@20 {b['test']['recall@20']:.4f} N@20 {b['test']['ndcg@20']:.4f}")
    by_preset: dict[str, list[dict[str, Any]]] = {}
    for name, run in result["runs"].items():
        by_preset.setdefault(name.split("/")[0], []).append(run)
    result["summary"] = {p: {k: _summary(runs, k) for k in ("test", "test_full_history", "test_refit_train_valid")} for p, runs in by_preset.items()}
    result["machine"] = machine()
    print(f"wrote {save_results('trained', str(path), result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
