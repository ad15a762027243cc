"""Suites: a comparison written down once (its entries, seeds, whether to tune, the published figures it sets out to
reproduce), shipped in ``bspm_jax/compare/suites/NAME.toml`` or given as a file.

A suite file::

    description = "what it reproduces"
    reference = "where the published figures are from"   # optional
    seeds = [0, 1, 2]                                      # optional (default [0])
    tune = true                                            # optional (default true)

    [[entries]]
    preset = "ml1m-bspm"               # or model = "popularity"
    label = "BSPM"                     # optional: the leaderboard's name (default: the model or preset)
    set = ["sharpen_solver=euler"]     # optional overrides
    space = {"train.lr" = [1e-3]}      # optional: the search instead of the model's own
    budget = 2                         # optional: at most this many points
    gradient = true                    # optional: then gradient tuning from the best point (ChebyCF, ensembles)
    paper = {"recall@20" = 0.1740, "ndcg@20" = 0.1079}   # optional: the published figures
"""

from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .run import Entry, check_labels, entry

_KEYS = {"description", "reference", "seeds", "tune", "entries"}
_ENTRY_KEYS = {"model", "preset", "label", "set", "space", "budget", "gradient", "paper"}


@dataclasses.dataclass(frozen=True)
class Suite:
    """A loaded suite: its ``name``, ``entries``, ``seeds``, ``tune``, and the published figures by entry label."""

    name: str
    description: str
    reference: str
    seeds: list[int]
    tune: bool
    entries: list[Entry]
    paper: dict[str, dict[str, float]]


def suite_names() -> list[str]:
    """The suites shipped with the package."""
    folder = resources.files("bspm_jax.compare") / "suites"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_suite(name: str | Path) -> Suite:
    """A shipped suite by name, or a suite file by path."""
    path = Path(name)
    if path.suffix != ".toml":
        if str(name) not in suite_names():
            raise ConfigError(f"unknown suite {str(name)!r}: give a .toml file or one of {', '.join(suite_names())}")
        text, source = (resources.files("bspm_jax.compare") / "suites" / f"{name}.toml").read_text(), str(name)
    else:
        try:
            text, source = path.read_text(), str(path)
        except OSError as err:
            raise ConfigError(f"cannot read suite file {path}: {err.strerror}") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"suite {source} is not valid TOML: {err}") from None
    return _suite(path.stem if path.suffix == ".toml" else str(name), source, table)


def _suite(name: str, source: str, table: dict[str, Any]) -> Suite:
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(f"suite {source}: unknown key(s) {', '.join(sorted(unknown))}; keys: {', '.join(sorted(_KEYS))}")
    rows = table.get("entries")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"suite {source}: give its models as [[entries]] tables")
    seeds = table.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
        raise ConfigError(f"suite {source}: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    if not isinstance(table.get("tune", True), bool):
        raise ConfigError(f"suite {source}: tune must be true or false")
    out, paper = [], {}
    for n, row in enumerate(rows, 1):
        unknown = set(row) - _ENTRY_KEYS
        if unknown:
            raise ConfigError(f"suite {source}, entry {n}: unknown key(s) {', '.join(sorted(unknown))}; keys: "
                              f"{', '.join(sorted(_ENTRY_KEYS))}")
        try:
            found = entry(model=row.get("model"), preset=row.get("preset"), sets=row.get("set", []),
                          label=row.get("label"), space=row.get("space"), budget=row.get("budget"),
                          gradient=row.get("gradient", False))
        except ConfigError as err:
            raise ConfigError(f"suite {source}, entry {n}: {err}") from None
        out.append(found)
        if "paper" in row:
            paper[found.label] = {str(k): float(v) for k, v in row["paper"].items()}
    check_labels(out)
    return Suite(name, str(table.get("description", "")), str(table.get("reference", "")), seeds,
                 table.get("tune", True), out, paper)
