"""What the ``bspm`` commands print: a run's table, a training record, tuning and figure summaries."""

from __future__ import annotations

from typing import Any


def format_result(result: dict[str, Any]) -> str:
    """A readable table of a run's dataset, metrics and timings."""
    ds = result["dataset"]
    lines = [
        f"model    {result['model']}",
        f"dataset  {ds['name']}: {ds['n_users']:,} users, {ds['n_items']:,} items, {ds['n_train']:,} train / "
        + (f"{ds['n_valid']:,} valid / " if "n_valid" in ds else "") + f"{ds['n_test']:,} test interactions",
        *([f"protocol {result['protocol']['name']}: {result['protocol']['description']}"] if "protocol" in result else []),
        *([f"split    {result['protocol']['split']}"] if "split" in result.get("protocol", {}) else []),
        "",
    ]
    metrics = result["metrics"]
    ks = sorted({int(key.split("@")[1]) for key in metrics})
    names = list(dict.fromkeys(key.split("@")[0] for key in metrics))
    lines.append(f"{'metric':<12}" + "".join(f"{'@' + str(k):>10}" for k in ks))
    for name in names:
        lines.append(f"{name:<12}" + "".join(f"{metrics[f'{name}@{k}']:>10.4f}" for k in ks))
    if "training" in result:
        lines.append(_training_line(result["training"]))
    if "validation_metrics" in result:
        v = result["validation_metrics"]
        lines.append("validation " + "  ".join(f"{key} {v[key]:.4f}" for key in v if key.split("@")[0] in ("recall", "ndcg")))
    timings = "  ".join(f"{k} {v:.2f}" for k, v in result["timings_s"].items())
    env = result["environment"]
    peak = result["memory"]["peak_rss_bytes"] / 2**30
    lines += [
        "",
        f"time (s) {timings}",
        f"memory   peak RSS {peak:.2f} GiB",
        f"on       {env['backend']} ({env['device']}), jax {env['jax']}, {_kernel_line(env)}"
        + (f", {env['process_count']} processes" if env.get("process_count", 1) > 1 else ""),
    ]
    return "\n".join(lines)


def _training_line(record: dict[str, Any]) -> str:
    """Epochs run, the best epoch and its validation metric, the training time."""
    (metric, value), = record["best_validation"].items()
    best = "none" if value is None else f"{value:.4f}"
    how = "early-stopped" if record["stopped_early"] else "all epochs"
    resumed = f", resumed after epoch {record['resumed_from_epoch']}" if record["resumed_from_epoch"] else ""
    starts = record.get("restarts", [])
    chosen = next((t for t in starts if t["chosen"]), None)
    picked = (f"; start {chosen['start']} of {len(starts)} (seed {chosen['seed']}) chosen on validation after "
              f"{record['settings']['restart_epochs']} epochs each" if chosen else "")
    refit = record.get("refit_with_valid")
    again = f"; refitted on train + validation for {refit['epochs']} epochs, {refit['seconds']:.1f} s" if refit else ""
    return (f"training {record['epochs_run']} epochs ({how}{resumed}), best epoch {record['best_epoch']} "
            f"(validation {metric} {best}), {record['seconds']:.1f} s{picked}{again}")


def _kernel_line(env: dict[str, Any]) -> str:
    """The products' path, and why when the native kernel is not there."""
    note = env.get("kernel_note")
    return f"kernel {env.get('kernel', '?')}" + (f" ({note})" if note else "")


def _numbers(value: Any) -> str:
    """A number or a list of numbers, four decimals each."""
    return ",".join(f"{x:.4f}" for x in value) if isinstance(value, list) else f"{value:.4f}"


def _cell(value: Any, setting: bool) -> str:
    return f"{value:.5f}" if isinstance(value, float) and not setting else str(value)


