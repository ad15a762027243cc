"""Run a comparison: every entry on one dataset under one protocol, each run kept in the results store.

For each entry, its settings are chosen on validation from a search: the configured point,
then the grid of the model's own :meth:`~bspm_jax.models.AbstractRecommender.search_space`
(or the entry's), at most ``budget`` points, each a *trial* fitted (trained models: on the
first seed, early-stopped on validation) and scored on validation only. The best trial's
settings then run once per seed (training-free models once) as *final* runs, scored on
validation and on test. Every run is stored when it ends; a run already stored is never redone,
and a trained run killed midway resumes from its checkpoint in ``out/checkpoints``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import shlex
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import Config, get_preset, preset_name
from ..data import Dataset
from ..data.sparse import matrix_digest
from ..errors import ConfigError
from ..evaluation.fit import FitOptions, fit_model, fitting_matrix
from ..evaluation.protocol import evaluate, protocol_of
from ..experiment.settings import RunSettings
from ..models import MODELS, AbstractTrainedRecommender, FitCache
from ..ranking import Progress, no_progress
from ..runtime.environment import environment_info, reset_peak_rss, window_peak_rss_bytes
from ..training import CURVE
from ..tuning.gradient import TUNINGS, tune_gradient
from ..tuning.grid import grid_points
from .store import ResultsStore, RunRecord, identity, run_key

DEFAULT_VALIDATION = 0.2
"""Share of each user's train items carved as validation when the data has no validation split."""
KS = (10, 20)
"""The cut-offs every run is scored at."""
METRIC = "recall@20"
"""The validation metric that chooses settings."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One contender: its ``label`` in the leaderboard, its configuration, how the command line names it
    (``flag``), and its search (``space``: None for the model's own; ``budget``: at most that many points;
    ``gradient``: then tune the best point's continuous settings by gradient, for the models that have it)."""

    label: str
    config: Config
    flag: str
    space: Mapping[str, Sequence[Any]] | None = None
    budget: int | None = None
    gradient: bool = False

    @property
    def settings(self) -> RunSettings:
        return RunSettings.of(self.config)

    @property
    def trained(self) -> bool:
        return isinstance(self.settings.model, AbstractTrainedRecommender)

    def points(self, tune: bool) -> list[dict[str, Any]]:
        """The settings tried on validation: the configured point first, then the grid's others (just the configured
        point without ``tune``), at most ``budget``."""
        run = self.settings
        space = dict(run.model.search_space() if self.space is None else self.space) if tune else {}
        configured = {key: _current(run, key) for key in space}
        points = [configured] + [p for p in grid_points(space) if p != configured]
        return points[: self.budget] if self.budget else points


def _current(run: RunSettings, key: str) -> Any:
    """The configured value of a search key: a model setting, or ``train.NAME``."""
    table, _, name = key.rpartition(".")
    settings = run.model.config() if table in ("", "model") else run.train.to_dict() if table == "train" else {}
    if name not in settings:
        raise ConfigError(f"search key {key!r} is not a setting of the {run.model.name} model or of [train]")
    return settings[name]


def entries(models: Sequence[str] = (), presets: Sequence[str] = (), sets: Sequence[str] = ()) -> list[Entry]:
    """Entries from model names (their default settings) and shipped presets, in the order given, each with the
    ``key=value`` overrides ``sets`` (e.g. ``train.epochs=20``), which their commands repeat."""
    out = [entry(model=name, sets=sets) for name in models] + [entry(preset=name, sets=sets) for name in presets]
    check_labels(out)
    return out


def entry(model: str | None = None, preset: str | None = None, sets: Sequence[str] = (), label: str | None = None,
          space: Mapping[str, Sequence[Any]] | None = None, budget: int | None = None,
          gradient: bool = False) -> Entry:
    """One entry: a model by name (its defaults) or a shipped preset, with overrides ``sets``."""
    if (model is None) == (preset is None):
        raise ConfigError("an entry names a model or a preset, not both or neither")
    if budget is not None and not (isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1):
        raise ConfigError(f"budget must be an integer >= 1, got {budget!r}")
    extra = [f"--set {shlex.quote(s)}" for s in sets]
    if model is not None:
        if model not in MODELS:
            raise ConfigError(f"unknown model {model!r}; available: {', '.join(MODELS)}")
        base, flag = Config({"model": {"name": model}}), f"--model {model}"
    else:
        base, flag = get_preset(preset), f"--preset {preset_name(preset)}"
    found = Entry(label or model or preset_name(preset), base.with_overrides(sets), " ".join([flag, *extra]),
                  None if space is None else {k: tuple(v) for k, v in space.items()}, budget, bool(gradient))
    found.points(tune=True)  # a bad search key fails here, before anything runs
    if gradient and type(found.settings.model) not in TUNINGS:
        raise ConfigError(f"gradient tuning tunes the {', '.join(sorted(c.name for c in TUNINGS))} models, not the "
                          f"{found.settings.model.name} model")
    return found


def check_labels(contenders: Sequence[Entry]) -> None:
    labels = [e.label for e in contenders]
    if len(set(labels)) != len(labels) or not labels:
        raise ConfigError("name each model or preset once, and at least one")


def compare(data: str | Path, contenders: Sequence[Entry], out: str | Path, seeds: Sequence[int] = (0,),
            progress: Progress | None = None, tune: bool = True, validation: float | None = None,
            data_options: Mapping[str, Any] | None = None, refit: bool = False) -> list[RunRecord]:
    """Run every entry on ``data`` under protocol A, skipping runs already stored in ``out/results.sqlite``; returns
    the final runs of these entries, in order. ``progress`` (e.g. tqdm) shows one bar over the runs and one inside
    each. ``data_options``: how ``data`` is read and split when it is an interactions file (``[data]`` keys such as
    ``user_col``, ``split``, ``time_col``), the same for every entry.

    One split for all: where a run needs validation (a search, or a trained model) and the data has no validation
    split, every entry's is held out the same way, whatever its own configuration says: ``validation`` of each
    user's train items (default 0.2; seed 0), held out as test is (an interactions file split by time takes the
    latest; split by each user's last N, ``validation`` is a count, by default that N); otherwise every model is
    fitted on the whole train split.

    ``refit`` (the refit protocol, never in one table with A): after the search, each final run is fitted again on
    train + validation (a trained model for its best epoch count on validation) and test is scored from that
    history; its validation figure is the one that chose it (a model fitted on train).
    """
    check_labels(contenders)
    seeds = list(seeds) or [0]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(folder / "results.sqlite")
    plans = [(e, e.points(tune), seeds if e.trained else [0]) for e in contenders]
    needs = refit or any(e.trained or len(points) > 1 for e, points, _ in plans)
    if validation is None:
        validation = (data_options or {}).get("last_n", 1) if (data_options or {}).get("split") == "last" \
            else DEFAULT_VALIDATION
    gradients = {e.label: tune and e.gradient for e, _, _ in plans}
    needs = needs or any(gradients.values())
    total = sum((len(points) if len(points) > 1 or gradients[e.label] else 0) + gradients[e.label] + len(runs)
                for e, points, runs in plans)
    jobs = _Jobs(store, folder, str(data), dict(data_options or {}), validation if needs else None, refit, progress)
    bar = (progress or no_progress)(iter(range(total)), total=total, desc="compare", unit="run")
    ticks = iter(bar)
    finals = []
    for e, points, runs in plans:
        finals += jobs.entry(e, points, runs, ticks, gradients[e.label])
    for _ in ticks:  # close the bar
        pass
    return finals


class _Jobs:
    """The runs of one comparison: datasets loaded once, records stored as each run ends."""

    def __init__(self, store: ResultsStore, folder: Path, data: str, options: dict[str, Any],
                 validation: float | None, refit: bool, progress: Progress | None):
        self.store, self.folder, self.data, self.progress = store, folder, data, progress
        self.options, self.validation, self.refit = options, validation, refit
        for key in ("path", "validation", "validation_seed"):
            if key in options:
                raise ConfigError(f"data option {key!r} is the comparison's own: give data and validation instead")
        self.datasets: dict[str, Dataset] = {}

    def dataset(self, run: RunSettings) -> Dataset:
        key = json.dumps(run.data_table(saved=False), sort_keys=True, default=str)
        if key not in self.datasets:
            self.datasets[key] = run.dataset()
        return self.datasets[key]

    def settings(self, e: Entry, point: Mapping[str, Any], seed: int) -> RunSettings:
        """The entry's run at ``point`` and ``seed`` under the comparison's one split (a refit is the run's choice)."""
        tables = {name: dict(table) for name, table in e.config.tables.items()}
        tables["data"] = {"path": self.data, **self.options,  # the comparison's data, not the entry's own [data]
                          **({} if self.validation is None else {"validation": self.validation, "validation_seed": 0})}
        tables["evaluation"] = {**tables.get("evaluation", {}), "refit_with_valid": False}  # the trials' and A's
        config = Config(tables, e.config.description).with_values({**point, **({"train.seed": seed} if e.trained else {})})
        return RunSettings.of(config)

    def entry(self, e: Entry, points: list[dict[str, Any]], seeds: list[int], ticks: Iterator[Any],
              gradient: bool = False) -> list[RunRecord]:
        fits = FitCache()
        chosen, chosen_by, search_s = points[0], "as configured", 0.0
        if len(points) > 1 or gradient:
            trials = []
            for point in points:
                next(ticks, None)
                trials.append(self.run(e, point, seeds[0], "trial", "search", 0.0, fits))
            values = {k: sorted({p[k] for p in points}, key=str) for k in points[0]}
            chosen_by = (f"best validation {METRIC} of {len(points)} points (seed {seeds[0]}): "
                         + "; ".join(f"{k} in {', '.join(map(str, v))}" for k, v in values.items()))
            if gradient:  # from the grid's best point, its continuous settings by gradient on validation
                next(ticks, None)
                start = points[max(range(len(trials)), key=lambda i: (_finite(trials[i].validation.get(METRIC)), -i))]
                tuned, seconds = self.gradient(e, start, seeds[0])
                points = [*points, tuned]
                trials.append(self.run(e, tuned, seeds[0], "trial", "search", seconds, fits))
                chosen_by += "; and gradient tuning from the best of them"
            best = max(range(len(trials)), key=lambda i: (_finite(trials[i].validation.get(METRIC)), -i))
            chosen, search_s = points[best], sum(t.fit_s + t.search_s for t in trials)
        finals = []
        for seed in seeds:
            next(ticks, None)
            finals.append(self.run(e, chosen, seed, "final", chosen_by, search_s, fits))
        return finals

    def gradient(self, e: Entry, start: Mapping[str, Any], seed: int) -> tuple[dict[str, Any], float]:
        """The point gradient tuning reaches from ``start`` on validation (kept in the store: never searched twice),
        and its seconds."""
        run = self.settings(e, start, seed)
        dataset = self.dataset(run)
        base = run.model.config()
        key = run_key(e.label, identity("gradient", base, {}, ""), seed, protocol_of(dataset), matrix_digest(dataset.train))
        stored = self.store.get(key)
        if stored is None:
            reset_peak_rss()
            t0 = time.perf_counter()
            found = tune_gradient(run.model, dataset, metric=METRIC, ks=KS, batch_size=run.batch_size,
                                  progress=self.progress)
            self.store.put(self.record(e, run, dataset, "gradient", seed, found.best, "gradient tuning", {}, {},
                                       time.perf_counter() - t0, 0.0, 0.0, {}, [], dict(start)), key)
            stored = self.store.get(key)
        tuned = {k: v for k, v in stored.settings.items() if json.dumps(v) != json.dumps(base.get(k))}
        return {**start, **tuned}, stored.fit_s

    def record(self, e: Entry, run: RunSettings, dataset: Dataset, kind: str, seed: int, settings: dict[str, Any],
               chosen_by: str, validation: dict[str, float], test: dict[str, float], fit_s: float, score_s: float,
               search_s: float, training: dict[str, Any], curve: list[dict[str, Any]], point: Mapping[str, Any],
               protocol: dict[str, Any] | None = None) -> RunRecord:
        return RunRecord(
            label=e.label, model=run.model.name, kind=kind, seed=seed, settings=settings,
            train=run.train.to_dict() if e.trained else {}, chosen_by=chosen_by,
            protocol=protocol or protocol_of(dataset), dataset={**dataset.summary(), "digest": matrix_digest(dataset.train)},
            validation=validation, test=test, fit_s=fit_s, score_s=score_s, search_s=search_s,
            peak_mib=window_peak_rss_bytes() / 2**20, training=training, curve=curve,
            machine=environment_info("auto"), version=__version__, command=self.command(e, point, seed),
            finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"))

    def run(self, e: Entry, point: Mapping[str, Any], seed: int, kind: str, chosen_by: str, search_s: float,
            fits: FitCache) -> RunRecord:
        run = self.settings(e, point, seed)
        dataset = self.dataset(run)
        refit = self.refit and kind == "final"
        protocol, digest = protocol_of(dataset, refit), matrix_digest(dataset.train)
        train = run.train.to_dict() if e.trained else {}
        settings = run.model.config()
        key = run_key(e.label, identity(kind, settings, train, chosen_by), seed, protocol, digest)
        stored = self.store.get(key)
        if stored is not None:
            return stored
        reset_peak_rss()
        folder = self.folder / "checkpoints" / run_key(e.label, identity("train", settings, train, ""), seed,
                                                       protocol_of(dataset), digest)[:16]
        t0 = time.perf_counter()
        validation: dict[str, float] = {}
        if e.trained:
            fitted, record = fit_model(run.model, dataset, FitOptions(
                refit_with_valid=refit, train=run.train, train_dir=folder, resume=True, batch_size=run.batch_size,
                progress=self.progress))
            fit_s = float(record["seconds"]) + float(record.get("refit_with_valid", {}).get("seconds", 0.0))
            training = {k: record[k] for k in ("epochs_run", "best_epoch", "seconds_to_best", "stopped_early",
                                                "resumed_from_epoch")}
            curve = _curve(folder, run.train.metric)
            validation = dict(record["best_validation"]) if refit else {}  # the refitted model has seen validation
        else:
            # trials share fits (one SVD per rank); a final run fits afresh, so that its fit time is a user's
            fitted = fits.fit(run.model, dataset.train) if kind == "trial" else \
                run.model.fit(fitting_matrix(dataset, refit))
            fit_s, training, curve = time.perf_counter() - t0, {}, []
            if refit:  # validation scored by the model fitted on train (the trials' fit, when there were trials)
                validation = evaluate(fits.fit(run.model, dataset.train), dataset, ks=KS, batch_size=run.batch_size,
                                      split="valid").metrics
        t1 = time.perf_counter()
        if dataset.valid is not None and not refit:
            validation = evaluate(fitted, dataset, ks=KS, batch_size=run.batch_size, split="valid").metrics
        fit_s += time.perf_counter() - t1 if kind == "trial" else 0.0
        test, score_s = {}, 0.0
        if kind == "final":
            t2 = time.perf_counter()
            test = evaluate(fitted, dataset, ks=KS, batch_size=run.batch_size, progress=self.progress,
                            history="train+valid" if refit else "train").metrics
            score_s = time.perf_counter() - t2
        record = self.record(e, run, dataset, kind, seed, settings, chosen_by, validation, test, fit_s, score_s,
                             search_s, training, curve, point, protocol)
        self.store.put(record, key)
        return self.store.get(key)  # as stored (JSON: tuples come back as lists), like a run found in the store


    def command(self, e: Entry, point: Mapping[str, Any], seed: int) -> str:
        """The ``bspm run`` command that reproduces a final run alone."""
        given = e.config["data"]
        read = [a for k, v in self.options.items() for a in ("--set", f"data.{k}={_toml(v)}")]
        if self.validation is not None:
            carve = ["--set", f"data.validation={self.validation}", "--set", "data.validation_seed=0"]
        else:
            carve = ["--set", "data.validation=false"] if "validation" in given else []
        given_refit = bool(e.config["evaluation"].get("refit_with_valid"))
        refit = [] if given_refit == self.refit else ["--set", f"evaluation.refit_with_valid={str(self.refit).lower()}"]
        chosen = [a for k, v in point.items() for a in ("--set", f"{k}={_toml(v)}")]
        return " ".join(["bspm", "run", "--data", shlex.quote(self.data), *read, *shlex.split(e.flag), *chosen,
                         *(["--set", f"train.seed={seed}"] if e.trained else []), *carve, *refit,
                         "--k", *map(str, KS)])


def _finite(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else -math.inf


def _toml(value: Any) -> str:
    """A value as ``--set`` reads it back (TOML)."""
    return json.dumps(value) if isinstance(value, (str, list, tuple, bool)) else repr(value)


def _curve(folder: Path, metric: str) -> list[dict[str, Any]]:
    """A trained run's learning curve (epoch, loss, the validation metric where validated) from its folder."""
    path = folder / f"{CURVE}.json"
    if not path.is_file():
        return []
    history = json.loads(path.read_text())["history"]
    return [{"epoch": r["epoch"], "loss": r.get("loss"), metric: r.get(metric)} for r in history]


def write_outputs(records: Sequence[RunRecord], out: str | Path, paper: Mapping[str, Mapping[str, float]] | None = None,
                  reference: str = "") -> list[Path]:
    """``leaderboard.md``, ``leaderboard.csv`` and ``report.html`` of the final runs in ``records``, written
    atomically in ``out``; ``paper``: published figures by entry label (``reference`` names their source)."""
    from ..runtime.io import write_text_atomic
    from .leaderboard import leaderboard, protocol_text, to_csv, to_markdown
    from .report import report_html

    finals = [r for r in records if r.kind == "final"]
    text = protocol_text(finals)
    rows = leaderboard(finals, paper)
    folder = Path(out)
    return [write_text_atomic(folder / "leaderboard.md", to_markdown(rows, text, reference)),
            write_text_atomic(folder / "leaderboard.csv", to_csv(rows)),
            write_text_atomic(folder / "report.html",
                              report_html(rows, text, finals[0].dataset.get("name", ""), finals, reference))]
