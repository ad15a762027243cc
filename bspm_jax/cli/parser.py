"""The ``bspm`` command line's parser: commands and options, and the configuration and inputs they give."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import Config, resolve
from ..errors import ConfigError, DataError
from ..models import MODELS


def _devices(text: str) -> int | str:
    return "all" if text == "all" else int(text)


def _batch_size(text: str) -> int | str:
    return "auto" if text == "auto" else int(text)


def load_cli_config(args: argparse.Namespace, load: str | None = None) -> Config:
    """The config of a command: defaults, ``--config`` or ``--preset``, flags, then ``--set``.

    With ``load`` (a saved model) only the flags and ``--set`` are taken: the rest is the saved model's.
    """
    if load is not None and (args.config or args.preset):
        raise ConfigError("--load uses the saved model's configuration: give --data and --set, not --config or --preset")
    config = resolve(args.config, args.preset)
    if args.model and (args.config or args.preset) and args.model != config.model_name:
        where = f"preset {args.preset!r}" if args.preset else f"config {args.config}"
        raise ConfigError(f"{where} is for model {config.model_name!r}, not {args.model!r}")
    return config.with_values(flag_values(args)).with_overrides(args.set)


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the command's flags set (``data.user_col``, ``cache.spectra``, ...), with their values."""
    flags: dict[str, Any] = {}
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            if flag.endswith("_col") and value.isdigit():
                value = int(value)
            if flag in ("cut", "validation_share"):
                value = _number_or_text(value)
            flags[key] = value
    return flags


def _number_or_text(text: str) -> int | float | str:
    """A flag's value as a number when it reads as one (a numeric time cut, a share, a count), else as text (a date)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


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


FLAG_KEYS = {
    "data": "data.path", "model": "model.name", "k": "evaluation.k", "batch_size": "evaluation.batch_size",
    "devices": "evaluation.devices", "refit_with_valid": "evaluation.refit_with_valid",
    "user_col": "data.user_col", "item_col": "data.item_col", "time_col": "data.time_col",
    "weight_col": "data.weight_col", "min_weight": "data.min_weight", "sep": "data.sep", "test": "data.test",
    "split": "data.split", "holdout": "data.holdout", "seed": "data.seed", "cut": "data.cut", "last_n": "data.last_n",
    "validation_share": "data.validation", "cache": "cache.spectra",
}
"""Command-line flags and the config keys they set."""


def _add_config_options(p: argparse.ArgumentParser, k: bool = True, train: bool = False, models: bool = False) -> None:
    p.add_argument("--config", help="TOML config file ([model], [data], [evaluation], [tune] tables)")
    p.add_argument("--preset", help="a shipped config, e.g. gowalla-bspm-em, ml1m-giffcf (bspm presets lists them)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value: table.key=value (a bare key is a model setting)")
    p.add_argument("--data", help="LightGCN folder (train.txt, test.txt, optional valid.txt), DiffRec folder "
                                  "(train_list.npy, valid_list.npy, test_list.npy) or pairs CSV/TSV; default: shipped sample")
    if models:
        p.add_argument("--model", action="append", help=f"model name: {', '.join(list(MODELS))} (default bspm); "
                                                         "the response figure takes several, presets too")
    else:
        p.add_argument("--model", help=f"model name: {', '.join(list(MODELS))} (default bspm)")
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
    _add_interactions_options(p)


def _add_interactions_options(p: argparse.ArgumentParser, validation: bool = True) -> None:
    pairs = p.add_argument_group("interactions files (CSV, TSV, Parquet)")
    pairs.add_argument("--user-col", help="user column: 0-based position or header name (default 0)")
    pairs.add_argument("--item-col", help="item column: 0-based position or header name (default 1)")
    pairs.add_argument("--time-col", help="time column (dates or numbers), for --split time and last")
    pairs.add_argument("--weight-col", help="weight column (numbers; with --min-weight)")
    pairs.add_argument("--min-weight", type=float, help="keep only rows whose weight is at least this (e.g. ratings >= 4)")
    pairs.add_argument("--sep", help="field separator (default: by extension, else sniffed)")
    pairs.add_argument("--split", choices=["none", "random", "time", "last"],
                       help="test split: none (fit on everything), random (--holdout of each user's items; default), "
                            "time (at --cut, or the latest --holdout share), last (each user's --last-n latest)")
    pairs.add_argument("--test", help="explicit test file in the same columns (instead of --split)")
    pairs.add_argument("--holdout", type=float, help="share held out for test by --split random or time (default 0.2)")
    pairs.add_argument("--seed", type=int, help="seed of the random split (default 0)")
    pairs.add_argument("--cut", help="--split time: the first time in test (a date such as 2012-06-01, or a number)")
    pairs.add_argument("--last-n", type=int, help="--split last: each user's latest N interactions held out (default 1)")
    if validation:
        pairs.add_argument("--validation-holdout", dest="validation_share",
                           help="hold out validation from train the way test is (a share; a count for --split last)")


def _add_process_options(p: argparse.ArgumentParser, role: str) -> None:
    multi = p.add_argument_group("several processes (jax.distributed; every process gets the same options)")
    multi.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0, which serves the coordinator")
    multi.add_argument("--num-processes", type=int, help="number of processes taking part")
    multi.add_argument("--process-id", type=int, help=f"this process's id, 0..N-1 ({role})")
    multi.add_argument("--join-timeout", type=int, default=300, help="seconds to wait for all processes (default 300)")


def _suite_names() -> list[str]:
    from ..compare.suite import suite_names

    return suite_names()


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
    _add_process_options(run, "process 0 prints and writes --json")

    rec = sub.add_parser("recommend", help="top-k items for known users or new users given as histories")
    _add_config_options(rec, k=False)
    rec.add_argument("--users", help="all, or user ids (in the data's own ids): id,id,... or a file of ids")
    rec.add_argument("--users-file", metavar="FILE", help="a file of user ids (separated by commas, spaces or lines)")
    rec.add_argument("--history", action="append", default=[], metavar="ITEMS",
                     help="a new user's items (item ids, comma-separated); repeat for more users")
    rec.add_argument("--history-file", help="new users, one per line: label item item ...")
    rec.add_argument("--k", dest="top_k", type=int, default=20, help="items per user (default 20)")
    rec.add_argument("--out", help="file to write, .parquet or .csv (columns user, rank, item, score), streamed in chunks "
                                   "of users; default: CSV on standard output")
    rec.add_argument("--keep-seen", action="store_true", help="do not filter out the user's own items")
    rec.add_argument("--include-test", action="store_true", help="fit on train + test (default: train only)")
    rec.add_argument("--load", metavar="DIR", help="use the model saved in DIR (by bspm fit --save) instead of fitting")
    _add_process_options(rec, "each writes its share of the users to --out's NAME-0000p-of-0000n file")

    fit = sub.add_parser("fit", help="fit a model on the train split and save it (bspm run/recommend --load)")
    _add_config_options(fit, train=True)
    fit.add_argument("--save", required=True, metavar="DIR", help="folder to save the fitted model to")

    fetch = sub.add_parser("fetch", help="download and verify a LightGCN benchmark split into the cache")
    fetch.add_argument("name", help="gowalla, yelp2018 or amazon-book")
    fetch.add_argument("--dir", help="cache folder (default: $BSPM_DATA_DIR, else ~/.cache/bspm_jax)")
    fetch.add_argument("--base-url", help="download from this base URL instead ({base}/{name}/train.txt)")
    fetch.add_argument("--force", action="store_true", help="download again and replace a verified entry")
    fetch.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server (default 60)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")

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

    sub.add_parser("presets", help="list the shipped presets (--preset NAME) with their descriptions")

    srv = sub.add_parser("serve", help="recommendations over HTTP (JSON) from a saved model (the [serve] extra)")
    srv.add_argument("--load", required=True, help="folder of a model saved with bspm fit --save (with its ids)")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    srv.add_argument("--token-file", help="file holding a bearer token every endpoint but /v1/health requires "
                                          "(and that enables POST /v1/reload)")
    srv.add_argument("--max-k", type=int, default=100, help="largest k a request may ask (default 100)")
    srv.add_argument("--max-users", type=int, default=1000,
                     help="most users and histories in one request (default 1000)")
    srv.add_argument("--max-body", type=int, default=1_000_000, help="largest request body in bytes (default 1 MB)")
    srv.add_argument("--max-wait-ms", type=float, default=2.0,
                     help="how long a history waits for others to be scored with it (default 2 ms)")

    cmp_ = sub.add_parser("compare", help="models, presets or a suite on one dataset under one protocol, settings "
                                          "chosen on validation, to a leaderboard and a report")
    cmp_.add_argument("--data", required=True, help="the dataset (any --data the library reads)")
    cmp_.add_argument("--models", help="model names, comma-separated (their default settings)")
    cmp_.add_argument("--presets", help="shipped presets, comma-separated")
    cmp_.add_argument("--suite", help="a shipped suite (" + ", ".join(_suite_names()) + ") or a suite .toml file")
    cmp_.add_argument("--seeds", help="seeds of trained models, comma-separated (default: the suite's, else 0)")
    cmp_.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="an override for every model and preset, e.g. train.epochs=20 (repeated in each command)")
    cmp_.add_argument("--no-tune", action="store_true", help="run every entry as configured (default: its settings "
                                                             "are chosen on validation from its search space)")
    cmp_.add_argument("--gradient", action="store_true",
                      help="then tune the best point of the models that have gradient tuning (ChebyCF, ensembles) by it")
    cmp_.add_argument("--budget", type=int, help="at most this many points per search (the configured point first)")
    cmp_.add_argument("--validation", type=_number_or_text,
                      help="validation held out of train when the data has none and a run needs it: a share of each "
                           "user's items (default 0.2), a count with --split last (default --last-n)")
    cmp_.add_argument("--refit", action="store_true",
                      help="the refit protocol: each chosen model fitted again on train + validation, test scored from "
                           "that history (a table of its own; default protocol A)")
    cmp_.add_argument("--out", required=True, help="folder for results.sqlite, leaderboard.md, leaderboard.csv and "
                                                   "report.html (a finished run in its store is never redone)")
    _add_interactions_options(cmp_, validation=False)
    cmp_.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


