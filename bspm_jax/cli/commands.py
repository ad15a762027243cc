"""The ``bspm`` commands: each parses its options, calls one library function and prints what it returned."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from ..config import parse_grid, presets
from ..errors import ConfigError, DataError
from ..experiment import (FIGURES, fit_config, plot_config, recommend_config, response_config, run_config,
                          tune_config, tune_plan)
from ..figures.bspm import FIGURES as BSPM_FIGURES
from ..models import MODELS
from ..tuning.grid import grid_points
from ..runtime.io import check_writable, write_json_atomic, write_text_atomic
from .output import _cell, _numbers, _training_line, format_result
from .parser import _histories, _read_ids, flag_values, load_cli_config


def _progress(quiet: bool):
    if quiet:
        return None
    from tqdm.auto import tqdm

    def wrap(iterable, **kwargs):
        return tqdm(iterable, delay=1.0, file=sys.stderr, leave=False, **kwargs)

    return wrap


def cmd_run(args: argparse.Namespace) -> int:
    config = load_cli_config(args, args.load)
    lead = _join_processes(args)
    if args.json and lead:
        check_writable(args.json)
    result = run_config(config, progress=_progress(args.quiet or not lead), load=args.load,
                        train_dir=args.train_dir, resume=args.resume)
    if not lead:  # process 0 reports for all
        return 0
    print(format_result(result))
    if args.json:
        write_json_atomic(args.json, result)
        print(f"wrote    {args.json}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    result = fit_config(load_cli_config(args), save=args.save, progress=_progress(args.quiet),
                        train_dir=args.train_dir, resume=args.resume)
    ds = result["dataset"]
    print(f"model    {result['model']}")
    print(f"dataset  {ds['name']}: {ds['n_users']:,} users, {ds['n_items']:,} items, {ds['n_train']:,} train interactions")
    if "training" in result:
        print(_training_line(result["training"]))
    print("time (s) " + "  ".join(f"{k} {v:.2f}" for k, v in result["timings_s"].items()))
    print(f"saved    {args.save}  (use: bspm run --load {args.save}, bspm recommend --load {args.save})")
    return 0


def _join_processes(args: argparse.Namespace) -> bool:
    """Join a multi-process run when ``--coordinator`` is given; True for the reporting process (0)."""
    given = [args.coordinator is not None, args.num_processes is not None, args.process_id is not None]
    if not any(given):
        return True
    if not all(given):
        raise ConfigError("a multi-process run needs --coordinator, --num-processes and --process-id together")
    from ..runtime.distributed import initialize  # jax.distributed: only for a multi-process run

    initialize(args.coordinator, args.num_processes, args.process_id, timeout_s=args.join_timeout)
    return args.process_id == 0


def cmd_recommend(args: argparse.Namespace) -> int:
    if args.users and args.users_file:
        raise ConfigError("give the users with --users or --users-file, not both")
    if args.users_file and not Path(args.users_file).is_file():
        raise DataError(f"no such users file: {args.users_file}")
    users: list[str] | str = "all" if args.users == "all" else _read_ids(args.users_file or args.users) \
        if (args.users or args.users_file) else []
    histories = _histories(args)
    if not users and not histories:
        raise ConfigError("name the users: --users all|IDS, --users-file FILE, --history ITEMS or --history-file FILE")
    if args.out:
        check_writable(args.out)
    lead = _join_processes(args)
    if args.coordinator is not None and not args.out:
        raise ConfigError("a multi-process recommend writes files: give --out recs.parquet (or .csv)")
    done = recommend_config(load_cli_config(args, args.load), users, histories, args.top_k,
                            filter_seen=not args.keep_seen, include_test=args.include_test, load=args.load,
                            progress=_progress(args.quiet or not lead), out=args.out)
    if args.out:
        path, count = done
        print(f"wrote {path}: top-{args.top_k} items for {count:,} users")
    else:
        sys.stdout.write(done.csv())
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from ..data.fetch import DEFAULT_BASE_URL, fetch_dataset, verify_dataset

    bars: dict[str, Any] = {}

    def progress(url: str, done: int, total: int | None) -> None:
        from tqdm.auto import tqdm

        if url not in bars:
            bars[url] = tqdm(total=total, desc=url.rsplit("/", 1)[-1], unit="B", unit_scale=True, file=sys.stderr, leave=False)
        bars[url].update(done - bars[url].n)

    try:
        folder = fetch_dataset(args.name, args.dir, base_url=args.base_url or DEFAULT_BASE_URL, force=args.force,
                               timeout=args.timeout, progress=None if args.quiet else progress)
    finally:
        for bar in bars.values():
            bar.close()
    data = verify_dataset(folder, args.name)
    print(f"{args.name}: {data.n_users:,} users, {data.n_items:,} items, {data.n_train:,} train / "
          f"{data.n_test:,} test interactions, verified")
    print(f"in       {folder}  (use: bspm run --data {args.name if args.dir is None else folder})")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    config = load_cli_config(args).with_values(
        {f"tune.{k}": v for k, v in (("metric", args.metric), ("validation", args.validation), ("seed", args.tune_seed),
                                     *((k, getattr(args, f"tune_{k}")) for k in ("steps", "lr", "batch_users", "bands",
                                                                                  "eval_every", "eval_users", "width",
                                                                                  "frozen")))
         if v is not None}
    ).with_values({f"tune.grid.{k}": v for k, v in map(parse_grid, args.grid)})
    method, grid, settings = tune_plan(config, args.method)
    if method == "gradient" and args.grid:
        raise ConfigError("--grid is for the grid search; --method gradient tunes the chebycf model's coefficients, beta "
                          "and band gains, or an ensemble's weights")
    if grid is not None:
        print(f"grid     {len(grid_points(grid)):,} points: " + ", ".join(f"{k} {v}" for k, v in grid.items()))
    else:
        users = "all" if settings.eval_users is None else f"{settings.eval_users:,}"
        print(f"gradient {settings.steps} Adam steps (lr {settings.lr:g}) on {config.model_name}'s settings; checkpoints "
              f"every {settings.eval_every} steps on {users} validation users")
    done = tune_config(config, args.out, method, args.max_points, _progress(args.quiet))
    result = done.result
    if grid is not None:
        shown = done.columns[: len(grid)] + [result.metric, "seconds"]
        print(f"{'':>4}" + "".join(f"{c:>16}" for c in shown))
        for i, row in enumerate(result.rows[: args.show], 1):
            print(f"{i:>4}" + "".join(f"{_cell(row[c], c in grid):>16}" for c in shown))
        print(f"best     {', '.join(f'{k}={result.best[k]}' for k in grid)} "
              f"(validation {result.metric} {result.rows[0][result.metric]:.5f})")
    else:
        print(f"{'step':>6}{'surrogate':>12}{result.metric:>14}")
        for c in result.checkpoints:
            loss = "" if c["loss"] is None else f"{c['loss']:.5f}"
            print(f"{c['step']:>6}{loss:>12}{c[result.metric]:>14.5f}")
        start = result.checkpoints[0]["settings"]
        changed = ", ".join(f"{k}={_numbers(v)}" for k, v in result.best.items() if v != start.get(k))
        print(f"best     step {result.validation['best_step']}: {changed or 'the starting settings'}")
    test = "  ".join(f"{k} {v:.5f}" for k, v in result.test_metrics.items() if k.split("@")[0] in ("recall", "ndcg"))
    print(f"test     {test}")
    print(f"time (s) search {result.timings_s['search']:.1f}  test {result.timings_s['test']:.1f}  wall {done.seconds:.1f}")
    print(f"wrote    {', '.join(str(p) for p in done.files)}")
    return 0


SWEEP_FLAGS = {"T_s": "T_s_values", "K_s": "K_s_values", "ranks": "rank_values", "alpha_min": "alpha_min_values",
               "sigma_max": "sigma_max_values"}
"""``bspm plot`` flags and the sweep options of the figures they set."""


def cmd_plot(args: argparse.Namespace) -> int:
    names = list(BSPM_FIGURES) if "all" in args.figures else list(dict.fromkeys(args.figures))
    unknown = [n for n in names if n not in FIGURES and n != "response"]
    if unknown:
        raise ConfigError(f"unknown figure {', '.join(unknown)}; available: {', '.join(FIGURES)}, response, all")
    listed = args.model or []
    if len(listed) > 1 and names != ["response"]:
        raise ConfigError("several --model are for the response figure alone: plot the others one model at a time")
    args.model = listed[0] if len(listed) == 1 and listed[0] in MODELS else None  # a preset is no --model
    config = load_cli_config(args)
    if "response" in names:  # several models on one figure, not one of the model's figures
        names.remove("response")
        done = response_config(config, listed, args.out)
        for line in done.summary.splitlines():
            print(f"response {line}")
        print(f"{'':<8} wrote {', '.join(str(p) for p in done.paths)}")
    sweeps = {key: parse_grid(f"v={getattr(args, flag)}")[1] for flag, key in SWEEP_FLAGS.items() if getattr(args, flag)}
    for done in plot_config(config, names, args.out, args.top_k, sweeps, _progress(args.quiet)) if names else ():
        print(f"{done.name:<6} {done.summary}")
        print(f"{'':<6} wrote {', '.join(str(p) for p in done.paths)}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    """``bspm presets``: every shipped preset, its model, its earlier names and its description."""
    for entry in presets():
        was = f"; earlier name {', '.join(entry['aliases'])}" if entry["aliases"] else ""
        print(f"{entry['name']} (model {entry['model']}{was})")
        print(textwrap.fill(entry["description"], width=100, initial_indent="    ", subsequent_indent="    "))
    return 0




def cmd_compare(args: argparse.Namespace) -> int:
    """``bspm compare``: every entry on one dataset under one protocol, to a leaderboard and a report."""
    from ..compare.comparison import comparison

    seeds = [int(s) for s in _names(args.seeds)] if args.seeds else None
    done = comparison(args.data, args.out, _names(args.models), _names(args.presets), args.suite, seeds, args.set,
                      tune=not args.no_tune, budget=args.budget, validation=args.validation,
                      data_options={k.removeprefix("data."): v for k, v in flag_values(args).items()
                                    if k.startswith("data.") and k != "data.path"}, refit=args.refit,
                      gradient=args.gradient,
                      progress=_progress(args.quiet))
    for path in done.files:
        print(f"wrote    {path}")
    print((Path(args.out) / "leaderboard.md").read_text(), end="")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``bspm serve``: the HTTP API of a saved model, until interrupted."""
    try:
        from ..serve import Limits, serve
    except ImportError as err:
        raise ConfigError(f"bspm serve needs the serve extra (pip install 'bspm-jax[serve]'): {err}") from None

    def ready(served) -> None:
        print(f"serving {served.model.name} ({served.history.n_users:,} users, {served.history.n_items:,} items) "
              f"from {args.load} on http://{args.host}:{args.port} (API: /docs)", file=sys.stderr, flush=True)

    serve(args.load, args.host, args.port, args.token_file,
          Limits(max_k=args.max_k, max_users=args.max_users, max_body=args.max_body), args.max_wait_ms / 1000,
          ready=ready)
    return 0


def _names(text: str | None) -> list[str]:
    return [t for t in (text or "").split(",") if t]


COMMANDS = {"run": cmd_run, "recommend": cmd_recommend, "fit": cmd_fit, "fetch": cmd_fetch, "plot": cmd_plot,
            "tune": cmd_tune, "presets": cmd_presets,
            "compare": cmd_compare, "serve": cmd_serve}
"""Each ``bspm`` command's function."""
