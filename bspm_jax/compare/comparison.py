"""``bspm compare`` as one call: the entries (models, presets, a suite), the runs, then the leaderboard and report."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..ranking import Progress
from ..tuning.gradient import TUNINGS
from .run import compare, entries, write_outputs
from .store import ResultsStore, RunRecord, read_store
from .suite import load_suite


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A finished comparison: its final runs and the files written."""

    records: list[RunRecord]
    files: list[Path]


def comparison(data: str | Path, out: str | Path, models: Sequence[str] = (), presets: Sequence[str] = (),
               suite: str | Path | None = None, seeds: Sequence[int] | None = None, sets: Sequence[str] = (),
               tune: bool = True, budget: int | None = None, validation: float | None = None,
               data_options: Mapping[str, Any] | None = None, refit: bool = False, gradient: bool = False,
               progress: Progress | None = None) -> Comparison:
    """Compare ``models`` and ``presets`` (with overrides ``sets``), or a ``suite`` (shipped name or file), on
    ``data``; ``seeds`` (default: the suite's, else 0) for trained models; ``tune`` False runs every entry as
    configured (a suite may say so too); ``budget``: at most that many points per search where the entry sets none;
    ``gradient``: entries whose model has gradient tuning (ChebyCF, ensembles) tune from their best point by it;
    ``validation``, ``data_options`` and ``refit`` as in :func:`~bspm_jax.compare.run.compare`.
    Writes ``results.sqlite``, ``leaderboard.md``, ``leaderboard.csv`` and ``report.html`` into ``out``."""
    if suite is not None and (models or presets):
        raise ConfigError("give --suite, or --models/--presets, not both")
    if budget is not None and not (isinstance(budget, int) and budget >= 1):
        raise ConfigError(f"budget must be an integer >= 1, got {budget!r}")
    paper, reference = {}, ""
    if suite is not None:
        found = load_suite(suite)
        if sets:
            raise ConfigError("--set applies to --models and --presets; a suite file sets each entry's own")
        contenders, paper, reference = found.entries, found.paper, found.reference
        seeds = found.seeds if seeds is None else seeds
        tune = tune and found.tune
    else:
        contenders = entries(models, presets, sets)
    if gradient:
        contenders = [dataclasses.replace(e, gradient=True) if type(e.settings.model) in TUNINGS else e
                      for e in contenders]
    if budget is not None:
        contenders = [e if e.budget is not None else dataclasses.replace(e, budget=budget) for e in contenders]
    records = compare(data, contenders, out, seeds or [0], progress, tune, validation, data_options, refit)
    if paper or reference:  # kept beside the runs, for pages made from the store later
        store = ResultsStore(Path(out) / "results.sqlite")
        store.set_meta("paper", json.dumps(paper, sort_keys=True))
        store.set_meta("reference", reference)
    return Comparison(records, write_outputs(records, out, paper, reference))


def render(store: str | Path, out: str | Path, protocol: str | None = None) -> list[Path]:
    """The leaderboards and report of the final runs in a store (a copy kept with results: read-only), into ``out``
    (created); ``protocol`` names which runs where the store holds several protocols' (e.g. ``A``, ``refit``)."""
    meta, records = read_store(store)
    found = sorted({r.protocol["name"] for r in records if r.kind == "final"})
    if protocol is None and len(found) == 1:
        protocol = found[0]
    if protocol not in found:
        raise ConfigError(f"{store} holds final runs of protocol(s) {', '.join(found) or 'none'}: name one")
    Path(out).mkdir(parents=True, exist_ok=True)
    chosen = [r for r in records if r.protocol["name"] == protocol]
    return write_outputs(chosen, out, json.loads(meta.get("paper", "{}")), meta.get("reference", ""))
