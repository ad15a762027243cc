"""The ``bspm`` command line: ``bspm run`` fits and evaluates a model."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import BSPMError, ConfigError


def _parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` with value read as JSON when it parses (numbers, booleans), else text."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in ("user_col", "item_col", "sep", "test", "holdout", "seed"):
        value = getattr(args, name)
        if value is not None:
            key = "test_path" if name == "test" else name
            options[key] = int(value) if name.endswith("_col") and value.isdigit() else value
    return options


def _progress(quiet: bool):
    if quiet:
        return None
    from tqdm.auto import tqdm

    def wrap(iterable, **kwargs):
        return tqdm(iterable, delay=1.0, file=sys.stderr, leave=False, **kwargs)

    return wrap


def format_result(result: dict[str, Any]) -> str:
    """A readable table of a run's dataset, metrics and timings."""
    ds = result["dataset"]
    lines = [
        f"model    {result['model']}",
        f"dataset  {ds['name']}: {ds['n_users']:,} users, {ds['n_items']:,} items, "
        f"{ds['n_train']:,} train / {ds['n_test']:,} test interactions",
        "",
    ]
    metrics = result["metrics"]
    ks = sorted({int(key.split("@")[1]) for key in metrics})
    names = list(dict.fromkeys(key.split("@")[0] for key in metrics))
    lines.append(f"{'metric':<12}" + "".join(f"{'@' + str(k):>10}" for k in ks))
    for name in names:
        lines.append(f"{name:<12}" + "".join(f"{metrics[f'{name}@{k}']:>10.4f}" for k in ks))
    timings = "  ".join(f"{k} {v:.2f}" for k, v in result["timings_s"].items())
    env = result["environment"]
    peak = result["memory"]["peak_rss_bytes"] / 2**30
    lines += [
        "",
        f"time (s) {timings}",
        f"memory   peak RSS {peak:.2f} GiB",
        f"on       {env['backend']} ({env['device']}), jax {env['jax']}",
    ]
    return "\n".join(lines)


def resolve_model(model: str | None, preset: str | None, overrides: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Model name and settings from an optional preset, then ``key=value`` overrides."""
    from .presets import get_preset

    settings: dict[str, Any] = {}
    if preset:
        entry = get_preset(preset)
        if model and model != entry["model"]:
            raise ConfigError(f"preset {preset!r} is for model {entry['model']!r}, not {model!r}")
        model, settings = entry["model"], dict(entry["settings"])
    settings.update(_parse_setting(s) for s in overrides)
    return model or "popularity", settings


def cmd_run(args: argparse.Namespace) -> int:
    from .experiment import run_experiment
    from .io import check_writable, write_json_atomic
    from .models import make_model

    if args.json:
        check_writable(args.json)
    name, settings = resolve_model(args.model, args.preset, args.set)
    model = make_model(name, **settings)
    result = run_experiment(
        model,
        name=name,
        data=args.data,
        ks=args.k,
        batch_size=args.batch_size,
        progress=_progress(args.quiet),
        data_options=_data_options(args),
    )
    print(format_result(result))
    if args.json:
        write_json_atomic(args.json, result)
        print(f"wrote    {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bspm", description="Training-free graph-filter collaborative filtering (BSPM) in JAX."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fit a model on the train split and evaluate it on the test split")
    run.add_argument("--data", help="LightGCN folder (train.txt, test.txt) or pairs CSV/TSV; default: shipped sample")
    run.add_argument("--model", help="model name: popularity, bspm, gf-cf, lgcn-ide, blur-heat, blur-ideal, blur-gfcf (default: popularity, or the preset's)")
    run.add_argument("--preset", help="a named paper configuration, e.g. gowalla-em, gowalla-lm, gf-cf")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a model setting")
    run.add_argument("--k", type=int, nargs="+", default=[10, 20], help="cut-offs K (default: 10 20)")
    run.add_argument("--batch-size", type=int, default=1024, help="users scored per batch (default: 1024)")
    run.add_argument("--json", help="also write the result as one JSON object to this file")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    pairs = run.add_argument_group("pairs files (CSV/TSV)")
    pairs.add_argument("--user-col", help="user column: 0-based position or header name (default 0)")
    pairs.add_argument("--item-col", help="item column: 0-based position or header name (default 1)")
    pairs.add_argument("--sep", help="field separator (default: by extension, else sniffed)")
    pairs.add_argument("--test", help="explicit test pairs file (default: per-user holdout of --data)")
    pairs.add_argument("--holdout", type=float, help="share of each user's items held out for test (default 0.2)")
    pairs.add_argument("--seed", type=int, help="seed of the holdout split (default 0)")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bspm`` command; user errors print one line and return 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BSPMError as err:
        print(f"bspm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bspm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
