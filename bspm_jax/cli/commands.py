"""The ``bspm`` command line: ``bspm run`` fits and evaluates a model."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import Config, presets
from ..errors import BSPMError, ConfigError, DataError


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
        f"dataset  {ds['name']}: {ds['n_users']:,} users, {ds['n_items']:,} items, {ds['n_train']:,} train / "
        + (f"{ds['n_valid']:,} valid / " if "n_valid" in ds else "") + f"{ds['n_test']:,} test interactions",
        *([f"protocol {result['protocol']['name']}: {result['protocol']['description']}"] if "protocol" in result else []),
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
    refit = record.get("refit_with_valid")
    again = f"; refitted on train + validation for {refit['epochs']} epochs, {refit['seconds']:.1f} s" if refit else ""
    return (f"training {record['epochs_run']} epochs ({how}{resumed}), best epoch {record['best_epoch']} "
            f"(validation {metric} {best}), {record['seconds']:.1f} s{again}")


def _kernel_line(env: dict[str, Any]) -> str:
    """The products' path, and why when the native kernel is not there."""
    note = env.get("kernel_note")
    return f"kernel {env.get('kernel', '?')}" + (f" ({note})" if note else "")


def _devices(text: str) -> int | str:
    return "all" if text == "all" else int(text)


def _batch_size(text: str) -> int | str:
    return "auto" if text == "auto" else int(text)


def load_cli_config(args: argparse.Namespace, load: str | None = None) -> Config:
    """The config of a command: defaults, ``--config`` or ``--preset``, flags, then ``--set``.

    With ``load`` (a saved model) only the flags and ``--set`` are taken: the rest is the saved model's.
    """
    from ..config import resolve

    if load is not None and (args.config or args.preset):
        raise ConfigError("--load uses the saved model's configuration: give --data and --set, not --config or --preset")
    config = resolve(args.config, args.preset)
    if args.model and (args.config or args.preset) and args.model != config.model_name:
        where = f"preset {args.preset!r}" if args.preset else f"config {args.config}"
        raise ConfigError(f"{where} is for model {config.model_name!r}, not {args.model!r}")
    flags: dict[str, Any] = {}
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            if flag.endswith("_col") and value.isdigit():
                value = int(value)
            flags[key] = value
    return config.with_values(flags).with_overrides(args.set)


def cmd_run(args: argparse.Namespace) -> int:
    from ..experiment import run_config
    from ..runtime.io import check_writable, write_json_atomic

    lead = _join_processes(args)
    if args.json and lead:
        check_writable(args.json)
    result = run_config(load_cli_config(args, args.load), progress=_progress(args.quiet or not lead), load=args.load,
                        train_dir=args.train_dir, resume=args.resume)
    if not lead:  # process 0 reports for all
        return 0
    print(format_result(result))
    if args.json:
        write_json_atomic(args.json, result)
        print(f"wrote    {args.json}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from ..experiment import fit_config

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
    from ..runtime.distributed import initialize

    initialize(args.coordinator, args.num_processes, args.process_id, timeout_s=args.join_timeout)
    return args.process_id == 0


def _read_ids(text: str) -> list[str]:
    """Ids from ``a,b,c`` or from a file of ids separated by commas, spaces or new lines."""
    path = Path(text)
    try:
        is_file = path.is_file()
    except OSError:  # e.g. a long id list is no valid file name
        is_file = False
    if is_file:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(f"{path} is not a UTF-8 text file of ids") from None
    ids = [t for t in text.replace(",", " ").split() if t]
    if not ids:
        raise ConfigError(f"no ids given in {text!r}")
    return ids


def _histories(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """New users as (label, item ids): ``--history a,b,c`` and lines ``label item item ...``."""
    out = [(f"new{i + 1}", _read_ids(h)) for i, h in enumerate(args.history)]
    if args.history_file:
        path = Path(args.history_file)
        if not path.is_file():
            raise DataError(f"no such history file: {path}")
        for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
            fields = line.replace(",", " ").split()
            if not fields:
                continue
            if len(fields) < 2:
                raise DataError(f"{path}, line {n}: expected 'label item item ...', got {line!r}")
            out.append((fields[0], fields[1:]))
    return out


def cmd_recommend(args: argparse.Namespace) -> int:
    from ..experiment import recommend_config
    from ..runtime.io import check_writable, write_text_atomic

    if not args.users and not args.history and not args.history_file:
        raise ConfigError("name the users: --users IDS|FILE, --history ITEMS or --history-file FILE")
    if args.out:
        check_writable(args.out)
    recs = recommend_config(load_cli_config(args, args.load), _read_ids(args.users) if args.users else [],
                            _histories(args), args.top_k, filter_seen=not args.keep_seen,
                            include_test=args.include_test, load=args.load, progress=_progress(args.quiet))
    text = recs.csv()
    if args.out:
        write_text_atomic(args.out, text)
        print(f"wrote {args.out}: top-{args.top_k} items for {len(recs.labels)} users "
              f"({recs.n_known} known, {recs.n_new} new)")
    else:
        sys.stdout.write(text)
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
    from ..config import DEFAULTS, parse_grid
    from ..experiment import dataset_from_config, evaluation_settings, spectrum_cache
    from ..tuning.grid import PAPER_GRID, grid_points, tune, write_tune_results

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    config = load_cli_config(args).with_values(
        {f"tune.{k}": v for k, v in (("metric", args.metric), ("validation", args.validation), ("seed", args.tune_seed),
                                     *((k, getattr(args, f"tune_{k}")) for k in ("steps", "lr", "batch_users", "bands",
                                                                                  "eval_every", "eval_users", "width",
                                                                                  "frozen")))
         if v is not None}
    ).with_values({f"tune.grid.{k}": v for k, v in map(parse_grid, args.grid)})
    opts = {**DEFAULTS["tune"], **config["tune"]}
    if args.method is not None:
        opts["method"] = args.method
    if opts["method"] == "gradient":
        if args.grid:
            raise ConfigError("--grid is for the grid search; --method gradient tunes the chebycf model's coefficients, beta "
                              "and band gains, or an ensemble's weights")
        return _tune_gradient(args, config, opts, out)
    if opts["method"] != "grid":
        raise ConfigError(f"tune.method must be grid or gradient, got {opts['method']!r}")
    grid = {k: v if isinstance(v, list) else [v] for k, v in (opts["grid"] or PAPER_GRID).items()}
    ks, batch_size = evaluation_settings(config)
    print(f"grid     {len(grid_points(grid)):,} points: " + ", ".join(f"{k} {v}" for k, v in grid.items()))
    t0 = time.perf_counter()
    dataset = dataset_from_config(config)
    result = tune(config.model_name, config.model_settings, grid, dataset, opts["metric"], opts["validation"],
                  opts["seed"], ks, batch_size, args.max_points, _progress(args.quiet), spectrum_cache(config))
    wall = time.perf_counter() - t0
    columns = write_tune_results(out, config, dataset, result, grid, wall)
    shown = columns[: len(grid)] + [result.metric, "seconds"]
    print(f"{'':>4}" + "".join(f"{c:>16}" for c in shown))
    for i, row in enumerate(result.rows[: args.show], 1):
        print(f"{i:>4}" + "".join(f"{_cell(row[c], c in grid):>16}" for c in shown))
    print(f"best     {', '.join(f'{k}={result.best[k]}' for k in grid)} (validation {result.metric} {result.rows[0][result.metric]:.5f})")
    test = "  ".join(f"{k} {v:.5f}" for k, v in result.test_metrics.items() if k.split("@")[0] in ("recall", "ndcg"))
    print(f"test     {test}")
    print(f"time (s) search {result.timings_s['search']:.1f}  test {result.timings_s['test']:.1f}  wall {wall:.1f}")
    print(f"wrote    {out / 'results.csv'}, {out / 'results.json'}, {out / 'best.toml'}")
    return 0


def _tune_gradient(args: argparse.Namespace, config: Any, opts: dict[str, Any], out: Path) -> int:
    from ..experiment import dataset_from_config, evaluation_settings, model_from_config, spectrum_cache
    from ..tuning.gradient import GradientSettings, tune_gradient, write_gradient_results

    fields = ("steps", "lr", "batch_users", "bands", "eval_every", "eval_users", "width")
    frozen = opts.get("frozen", [])
    if not (isinstance(frozen, list) and all(isinstance(name, str) for name in frozen)):
        raise ConfigError(f"tune.frozen must be a list of parameter names, got {frozen!r}")
    settings = GradientSettings(**{k: opts[k] for k in fields if k in opts}, seed=opts["seed"], frozen=tuple(frozen))
    ks, batch_size = evaluation_settings(config)
    model = model_from_config(config)
    users = "all" if settings.eval_users is None else f"{settings.eval_users:,}"
    print(f"gradient {settings.steps} Adam steps (lr {settings.lr:g}) on {config.model_name}'s settings; checkpoints "
          f"every {settings.eval_every} steps on {users} validation users")
    t0 = time.perf_counter()
    dataset = dataset_from_config(config)
    result = tune_gradient(model, dataset, opts["metric"], opts["validation"], opts["seed"], ks, batch_size, settings,
                           _progress(args.quiet), spectrum_cache(config))
    wall = time.perf_counter() - t0
    write_gradient_results(out, config, dataset, result, wall)
    print(f"{'step':>6}{'surrogate':>12}{result.metric:>14}")
    for c in result.checkpoints:
        loss = "" if c["loss"] is None else f"{c['loss']:.5f}"
        print(f"{c['step']:>6}{loss:>12}{c[result.metric]:>14.5f}")
    start = result.checkpoints[0]["settings"]
    changed = ", ".join(f"{k}={_numbers(v)}" for k, v in result.best.items() if v != start.get(k))
    print(f"best     step {result.validation['best_step']}: {changed or 'the starting settings'}")
    test = "  ".join(f"{k} {v:.5f}" for k, v in result.test_metrics.items() if k.split("@")[0] in ("recall", "ndcg"))
    print(f"test     {test}")
    print(f"time (s) search {result.timings_s['search']:.1f}  test {result.timings_s['test']:.1f}  wall {wall:.1f}")
    print(f"wrote    {out / 'results.json'}, {out / 'best.toml'}")
    return 0


def _numbers(value: Any) -> str:
    """A number or a list of numbers, four decimals each."""
    return ",".join(f"{x:.4f}" for x in value) if isinstance(value, list) else f"{value:.4f}"


def _cell(value: Any, setting: bool) -> str:
    return f"{value:.5f}" if isinstance(value, float) and not setting else str(value)


def cmd_plot(args: argparse.Namespace) -> int:
    from ..config import parse_grid
    from ..experiment import dataset_from_config, evaluation_settings, model_from_config, spectrum_cache
    from ..models import FitCache
    from ..experiment import train_settings
    from ..figures.bspm import FIGURES, make_figure
    from ..figures.sdiff import FIGURES as SDIFF_FIGURES

    figures = {**FIGURES, **SDIFF_FIGURES, "response": None}
    names = list(FIGURES) if "all" in args.figures else list(dict.fromkeys(args.figures))
    unknown = [n for n in names if n not in figures]
    if unknown:
        raise ConfigError(f"unknown figure {', '.join(unknown)}; available: {', '.join(figures)}, all")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    listed = args.model or []
    if len(listed) > 1 and names != ["response"]:
        raise ConfigError("several --model are for the response figure alone: plot the others one model at a time")
    args.model = listed[0] if len(listed) == 1 and listed[0] in _model_names() else None
    config = load_cli_config(args)
    if "response" in names:
        names.remove("response")
        _plot_response(args, config, listed, out)
        if not names:
            return 0
    model = model_from_config(config)
    _, batch_size = evaluation_settings(config)
    sweeps = {"fig5": ("T_s_values", args.T_s), "fig6": ("K_s_values", args.K_s), "sdiff-fig7": ("rank_values", args.ranks)}
    grids = {"alpha_min_values": args.alpha_min, "sigma_max_values": args.sigma_max}
    out.mkdir(parents=True, exist_ok=True)
    dataset = dataset_from_config(config)
    fits = FitCache(spectrum_cache(config))
    for name in names:
        kw = {"k": args.top_k, "batch_size": batch_size, "progress": _progress(args.quiet), "fits": fits}
        if name in sweeps and sweeps[name][1]:
            kw[sweeps[name][0]] = parse_grid(f"v={sweeps[name][1]}")[1]
        if name in SDIFF_FIGURES:
            kw["train"] = train_settings(config)
        if name == "sdiff-fig8":
            kw.update({key: parse_grid(f"v={text}")[1] for key, text in grids.items() if text})
        data, paths = make_figure(name, model, dataset, out, figures, **kw)
        print(f"{name:<6} {_figure_summary(data)}")
        print(f"{'':<6} wrote {', '.join(str(p) for p in paths)}")
    return 0


def _plot_response(args: argparse.Namespace, config: Any, listed: list[str], out: Path) -> None:
    """``bspm plot response``: each ``--model`` (a model or a preset name; default the config's model) side by side."""
    from ..config import get_preset
    from ..experiment import dataset_from_config, model_from_config, spectrum_cache
    from ..models import make_model
    from ..figures.base import matplotlib_figure
    from ..runtime.io import check_writable, write_json_atomic
    from ..figures.response import plot_response, response_data

    matplotlib_figure()
    stem = out / "response"
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg", "json"):
        check_writable(f"{stem}.{ext}")
    models = []
    for entry in listed:
        if entry in _model_names():
            models.append((entry, make_model(entry)))
        else:
            preset = get_preset(entry)
            models.append((entry, make_model(preset.model_name, **preset.model_settings)))
    if not models:
        models = [(config.model_name, model_from_config(config))]
    data = response_data(models, dataset_from_config(config), spectra=spectrum_cache(config))
    paths = [*plot_response(data, stem), write_json_atomic(f"{stem}.json", data)]
    for curve in data["curves"]:
        h = curve["response"]
        cut = "" if curve["ideal_cutoff"] is None else f", ideal low-pass down to s^2 = {curve['ideal_cutoff']:.4f}"
        print(f"response {curve['label']}: h(0) = {h[0]:.4f}, h(0.5) = {h[len(h) // 2]:.4f}, h(1) = {h[-1]:.4f}{cut}")
    print(f"{'':<8} wrote {', '.join(str(p) for p in paths)}")


def _figure_summary(data: dict[str, Any]) -> str:
    """One line of a figure's numbers."""
    k = data["k"]
    if "log_snr" in data:
        f = data["frequencies"]
        return f"log SNR of {len(data['log_snr'])} curves over t in (0, {data['t'][-1]:g}]; frequencies d from {f['min']:.3f} to {f['max']:.3f}"
    if "points" in data:
        labels = ([f"K={r}" for r in data["x"]["values"]] if "x" in data else
                  [f"α_min={a:g} σ_max={s:g}" for a in data["alpha_min"] for s in data["sigma_max"]])
        return "  ".join(f"{lab}: valid R {p['valid']['recall']:.4f} test R {p['test']['recall']:.4f}"
                         for lab, p in zip(labels, data["points"]))
    if "x" in data:
        m, setting = data["metrics"], data["x"]["setting"]
        return "  ".join(f"{setting}={x:g}: R {m[f'recall@{k}'][i]:.4f} N {m[f'ndcg@{k}'][i]:.4f}"
                         for i, x in enumerate(data["x"]["values"]))
    if "hit_degrees" in data:
        return "; ".join(f"{v}: {h['n_hits']:,} hits, median degree {h['median_degree']:g}, mean {h['mean_degree']:.1f}"
                         for v, h in data["hit_degrees"].items())
    m = data["metrics"]
    return "; ".join(f"{v}: " + ", ".join(f"{name} {m[name][i]:.4f}" for name in m if name.split("@")[0] in
                                          ("recall", "ndcg", "novelty", "coverage"))
                     for i, v in enumerate(data["variants"]))


def cmd_presets(args: argparse.Namespace) -> int:
    """``bspm presets``: every shipped preset, its model, its earlier names and its description."""
    for entry in presets():
        was = f"; earlier name {', '.join(entry['aliases'])}" if entry["aliases"] else ""
        print(f"{entry['name']} (model {entry['model']}{was})")
        print(textwrap.fill(entry["description"], width=100, initial_indent="    ", subsequent_indent="    "))
    return 0


FLAG_KEYS = {
    "data": "data.path", "model": "model.name", "k": "evaluation.k", "batch_size": "evaluation.batch_size",
    "devices": "evaluation.devices", "refit_with_valid": "evaluation.refit_with_valid",
    "user_col": "data.user_col", "item_col": "data.item_col", "sep": "data.sep", "test": "data.test",
    "holdout": "data.holdout", "seed": "data.seed", "cache": "cache.spectra",
}
"""Command-line flags and the config keys they set."""


def _model_names() -> list[str]:
    from ..models import MODELS

    return list(MODELS)


def _add_config_options(p: argparse.ArgumentParser, k: bool = True, train: bool = False, models: bool = False) -> None:
    p.add_argument("--config", help="TOML config file ([model], [data], [evaluation], [tune] tables)")
    p.add_argument("--preset", help="a shipped config, e.g. gowalla-bspm-em, ml1m-giffcf (bspm presets lists them)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value: table.key=value (a bare key is a model setting)")
    p.add_argument("--data", help="LightGCN folder (train.txt, test.txt, optional valid.txt), DiffRec folder "
                                  "(train_list.npy, valid_list.npy, test_list.npy) or pairs CSV/TSV; default: shipped sample")
    if models:
        p.add_argument("--model", action="append", help=f"model name: {', '.join(_model_names())} (default bspm); "
                                                         "the response figure takes several, presets too")
    else:
        p.add_argument("--model", help=f"model name: {', '.join(_model_names())} (default bspm)")
    if k:
        p.add_argument("--k", type=int, nargs="+", help="cut-offs K (default: 10 20)")
    p.add_argument("--batch-size", type=_batch_size, help="users scored per batch, or auto (planned from free memory; default 1024)")
    p.add_argument("--devices", type=_devices, help="split user batches across this many local devices, or all (default 1)")
    p.add_argument("--refit-with-valid", action="store_const", const=True, default=None,
                   help="fit on train + validation, then rank test from that history (data with a validation split)")
    p.add_argument("--no-cache", dest="cache", action="store_const", const=False, default=None,
                   help="compute the SVD afresh: neither read nor write the spectrum cache ($BSPM_CACHE_DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if train:
        trained = p.add_argument_group("trained models ([train] table)")
        trained.add_argument("--train-dir", metavar="DIR", help="folder for checkpoints and learning curves (CSV, JSON, plot)")
        trained.add_argument("--resume", action="store_true", help="continue the training checkpointed in --train-dir")
    pairs = p.add_argument_group("pairs files (CSV/TSV)")
    pairs.add_argument("--user-col", help="user column: 0-based position or header name (default 0)")
    pairs.add_argument("--item-col", help="item column: 0-based position or header name (default 1)")
    pairs.add_argument("--sep", help="field separator (default: by extension, else sniffed)")
    pairs.add_argument("--test", help="explicit test pairs file (default: per-user holdout of --data)")
    pairs.add_argument("--holdout", type=float, help="share of each user's items held out for test (default 0.2)")
    pairs.add_argument("--seed", type=int, help="seed of the holdout split (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bspm", description="Training-free graph-filter collaborative filtering (BSPM) in JAX."
    )
    parser.add_argument("--version", action="version", version=f"bspm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fit a model on the train split and evaluate it on the test split")
    _add_config_options(run, train=True)
    run.add_argument("--json", help="also write the result as one JSON object to this file")
    run.add_argument("--load", metavar="DIR", help="evaluate the model saved in DIR (by bspm fit --save) without refitting")
    multi = run.add_argument_group("several processes (jax.distributed; every process gets the same options)")
    multi.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0, which serves the coordinator")
    multi.add_argument("--num-processes", type=int, help="number of processes taking part")
    multi.add_argument("--process-id", type=int, help="this process's id, 0..N-1 (process 0 prints and writes --json)")
    multi.add_argument("--join-timeout", type=int, default=300, help="seconds to wait for all processes (default 300)")
    run.set_defaults(func=cmd_run)

    rec = sub.add_parser("recommend", help="top-k items for known users or new users given as histories")
    _add_config_options(rec, k=False)
    rec.add_argument("--users", help="user ids (in the data's own ids): id,id,... or a file of ids")
    rec.add_argument("--history", action="append", default=[], metavar="ITEMS",
                     help="a new user's items (item ids, comma-separated); repeat for more users")
    rec.add_argument("--history-file", help="new users, one per line: label item item ...")
    rec.add_argument("--k", dest="top_k", type=int, default=20, help="items per user (default 20)")
    rec.add_argument("--out", help="CSV file to write (user,rank,item,score); default: standard output")
    rec.add_argument("--keep-seen", action="store_true", help="do not filter out the user's own items")
    rec.add_argument("--include-test", action="store_true", help="fit on train + test (default: train only)")
    rec.add_argument("--load", metavar="DIR", help="use the model saved in DIR (by bspm fit --save) instead of fitting")
    rec.set_defaults(func=cmd_recommend)

    fit = sub.add_parser("fit", help="fit a model on the train split and save it (bspm run/recommend --load)")
    _add_config_options(fit, train=True)
    fit.add_argument("--save", required=True, metavar="DIR", help="folder to save the fitted model to")
    fit.set_defaults(func=cmd_fit)

    fetch = sub.add_parser("fetch", help="download and verify a LightGCN benchmark split into the cache")
    fetch.add_argument("name", help="gowalla, yelp2018 or amazon-book")
    fetch.add_argument("--dir", help="cache folder (default: $BSPM_DATA_DIR, else ~/.cache/bspm_jax)")
    fetch.add_argument("--base-url", help="download from this base URL instead ({base}/{name}/train.txt)")
    fetch.add_argument("--force", action="store_true", help="download again and replace a verified entry")
    fetch.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server (default 60)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    fetch.set_defaults(func=cmd_fetch)

    plot = sub.add_parser("plot", help="the BSPM paper's figures 5, 6, 8, 10 and S-Diff's 3, 7, 8 as PNG and SVG (needs matplotlib)")
    plot.add_argument("figures", nargs="+", metavar="FIGURE",
                      help="fig5, fig6, fig8, fig10 or all (BSPM); sdiff-fig3, sdiff-fig7, sdiff-fig8 (S-Diff, trained per point); "
                           "response (frequency responses of every --model over the data's eigenvalue density)")
    _add_config_options(plot, k=False, models=True)
    plot.add_argument("--out", default="figures", help="folder for <figure>.png, .svg and .json (default: figures)")
    plot.add_argument("--k", dest="top_k", type=int, default=20, help="cut-off K of the metrics (default 20)")
    plot.add_argument("--T-s", dest="T_s", metavar="V1,V2,...", help="fig5: sharpening times (default 1..5 and the model's)")
    plot.add_argument("--K-s", dest="K_s", metavar="V1,V2,...", help="fig6: sharpening steps (default 1..4 and the model's)")
    plot.add_argument("--ranks", metavar="V1,V2,...", help="sdiff-fig7: eigenvector counts K (default 50,100,200,300,400)")
    plot.add_argument("--alpha-min", dest="alpha_min", metavar="V1,V2,...", help="sdiff-fig8: alpha_min values (default 0,0.1,0.2)")
    plot.add_argument("--sigma-max", dest="sigma_max", metavar="V1,V2,...", help="sdiff-fig8: sigma_max values (default 0.3,0.4,0.5)")
    plot.set_defaults(func=cmd_plot)

    tun = sub.add_parser("tune", help="grid search on a validation split of train, then the best config on test")
    _add_config_options(tun)
    tun.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                     help="values of a model setting to search, e.g. T_s=1.5,2.0 or sharpen_solver=euler,rk4 "
                          "(default: [tune.grid] of the config, else the paper's space)")
    tun.add_argument("--method", choices=["grid", "gradient"],
                     help="grid search (default), or Adam on a smooth Recall@K over the validation split (chebycf, ensemble)")
    tun.add_argument("--metric", help="selection metric (default recall@20)")
    tun.add_argument("--validation", type=float, help="share of each user's train items held out (default 0.2)")
    tun.add_argument("--tune-seed", type=int, help="seed of the validation split (default 0)")
    grad = tun.add_argument_group("gradient tuning ([tune] table)")
    for flag, kind, text in (("steps", int, "Adam steps (default 60)"), ("lr", float, "Adam learning rate (default 0.02)"),
                             ("batch-users", int, "validation users per step (default 512)"),
                             ("bands", int, "bands of the ideal add-on's eigenvectors, one gain each (default 8)"),
                             ("eval-every", int, "steps between validation checkpoints (default 20)"),
                             ("eval-users", int, "a seeded sample of validation users for each checkpoint (default all)"),
                             ("width", float, "sigmoid width of the smooth Recall@K, as a share of the top-2K spread (default 0.02)")):
        grad.add_argument(f"--{flag}", dest=f"tune_{flag.replace('-', '_')}", type=kind, help=text,
                          metavar="N" if kind is int else "X")
    grad.add_argument("--freeze", dest="tune_frozen", action="append", metavar="NAME",
                      help="hold a parameter at its starting value (repeatable): coefficients, beta, gains, weights")
    tun.add_argument("--max-points", type=int, default=1000, help="refuse grids larger than this (default 1000)")
    tun.add_argument("--out", default="tune-results", help="folder for results.csv, results.json, best.toml")
    tun.add_argument("--show", type=int, default=10, help="rows of the results table to print (default 10)")
    tun.set_defaults(func=cmd_tune)

    pre = sub.add_parser("presets", help="list the shipped presets (--preset NAME) with their descriptions")
    pre.set_defaults(func=cmd_presets)
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
    except BrokenPipeError:  # the reader (e.g. head) stopped reading: end quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
