"""Run a comparison: every entry on one dataset under one protocol, each run kept in the results store.

Work in progress (issue 36): training-free models choose their settings on validation from
:data:`~bspm_jax.compare.spaces.SEARCH_SPACES` (a grid); trained models run as configured.
"""

from __future__ import annotations

import dataclasses
import datetime
import shlex
from collections.abc import Sequence
from pathlib import Path

from .._version import __version__
from ..config import Config, get_preset, preset_name
from ..data import Dataset
from ..data.sparse import matrix_digest
from ..errors import ConfigError
from ..evaluation.protocol import protocol_of
from ..experiment.run import run_experiment
from ..experiment.settings import RunSettings
from ..models import MODELS, AbstractTrainedRecommender, make_model
from ..tuning.grid import tune as grid_tune
from ..runtime.environment import environment_info, memory_info
from .spaces import SEARCH_SPACES
from .store import ResultsStore, RunRecord, run_key

DEFAULT_VALIDATION = 0.2
"""Share of each user's train items carved as validation when the data has no validation split."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One contender: its ``label`` in the leaderboard, its configuration, and how the command line names it."""

    label: str
    config: Config
    flag: str

    @property
    def trained(self) -> bool:
        return issubclass(type(RunSettings.of(self.config).model), AbstractTrainedRecommender)


def entries(models: Sequence[str] = (), presets: Sequence[str] = (), sets: Sequence[str] = ()) -> list[Entry]:
    """Entries from model names (their default settings) and shipped presets, in the order given, each with the
    ``key=value`` overrides ``sets`` (e.g. ``train.epochs=20``), which their commands repeat."""
    out = []
    extra = " ".join(f"--set {shlex.quote(s)}" for s in sets)
    for name in models:
        if name not in MODELS:
            raise ConfigError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
        out.append(Entry(name, Config({"model": {"name": name}}).with_overrides(sets), f"--model {name} {extra}"))
    for name in presets:
        out.append(Entry(preset_name(name), get_preset(name).with_overrides(sets),
                         f"--preset {preset_name(name)} {extra}"))
    labels = [e.label for e in out]
    if len(set(labels)) != len(labels) or not out:
        raise ConfigError("name each model or preset once, and at least one")
    return out


def compare(data: str | Path, contenders: Sequence[Entry], out: str | Path, seeds: Sequence[int] = (0,),
            progress=None, tune: bool = True) -> list[RunRecord]:
    """Run every entry (trained ones once per seed) on ``data`` under protocol A, skipping runs already stored in
    ``out/results.sqlite``; returns every stored run of these entries. With ``tune`` a training-free entry's
    settings are chosen on validation from its search space first."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(folder / "results.sqlite")
    done = []
    for entry in contenders:
        for seed in (seeds if entry.trained else [0]):
            config = entry.config.with_values({"data.path": str(data), "train.seed": seed})
            if "validation" not in config["data"]:
                config = config.with_values({"data.validation": DEFAULT_VALIDATION})
            run = RunSettings.of(config)
            dataset = run.dataset()
            protocol = protocol_of(dataset)
            space = SEARCH_SPACES.get(run.config.model_name, {}) if tune and not entry.trained else {}
            what = {"settings": run.model.config(), "space": space}
            key = run_key(entry.label, what, seed, protocol, matrix_digest(dataset.train))
            stored = store.get(key)
            if stored is None:
                stored = _run(entry, run, seed, dataset, protocol, data, progress, space)
                store.put(stored, key)
            done.append(stored)
    return done


def write_outputs(records: Sequence[RunRecord], out: str | Path) -> list[Path]:
    """``leaderboard.md``, ``leaderboard.csv`` and ``report.html`` in ``out``, written atomically."""
    from ..runtime.io import write_text_atomic
    from .leaderboard import leaderboard, to_csv, to_markdown
    from .report import report_html

    rows = leaderboard(records)
    protocols = {r.protocol["name"]: r.protocol for r in records}
    if len(protocols) != 1:
        raise ConfigError(f"runs of several protocols ({', '.join(sorted(protocols))}) never share one leaderboard")
    (protocol,) = protocols.values()
    text = f"{protocol['name']}: {protocol['description']}; {protocol.get('split', '')}"
    folder = Path(out)
    return [write_text_atomic(folder / "leaderboard.md", to_markdown(rows, text)),
            write_text_atomic(folder / "leaderboard.csv", to_csv(rows)),
            write_text_atomic(folder / "report.html", report_html(rows, text, records[0].dataset.get("name", "")))]


def _run(entry: Entry, run: RunSettings, seed: int, dataset: Dataset, protocol: dict, data: str | Path,
         progress, space: dict) -> RunRecord:
    chosen_by = "as configured"
    tuning_s = 0.0
    if space:
        found = grid_tune(run.config.model_name, run.config.model_settings, space, dataset, batch_size=run.batch_size,
                          spectra=run.spectra)
        run = dataclasses.replace(run, model=make_model(run.config.model_name, **found.best))
        chosen_by = f"grid on validation ({len(found.rows)} points: {', '.join(space)})"
        tuning_s = found.timings_s["search"]
    result = run_experiment(run.model, dataset, ks=(20,), batch_size=run.batch_size, progress=progress,
                            name=entry.label, fitting=run.fit_options(progress=progress))
    seconds = result["timings_s"]
    chosen = [a for k, v in run.model.config().items() if k in space for a in ("--set", f"{k}={v}")]
    command = " ".join(["bspm", "run", "--data", shlex.quote(str(data)), *shlex.split(entry.flag), *chosen,
                        *(["--set", f"train.seed={seed}"] if entry.trained else []),
                        "--set", f"data.validation={run.validation}", "--k", "20"])
    return RunRecord(
        label=entry.label, model=run.model.name, seed=seed, settings=run.model.config(), chosen_by=chosen_by,
        protocol=protocol, dataset={**dataset.summary(), "digest": matrix_digest(dataset.train)},
        validation=result.get("validation_metrics", {}), test=result["metrics"],
        fit_s=tuning_s + float(seconds.get("preprocess", 0.0)), score_s=float(seconds.get("inference", 0.0)),
        peak_mib=memory_info()["peak_rss_bytes"] / 2**20, machine=environment_info("auto"),
        version=__version__, command=command,
        finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
    )
