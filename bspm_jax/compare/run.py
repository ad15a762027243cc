"""Run a comparison: every entry on one dataset under one protocol, each run kept in the results store.

Work in progress (issue 36): entries run as configured (``--no-tune``); the per-model search
spaces chosen on validation are not built yet.
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
from ..models import MODELS, AbstractTrainedRecommender
from ..runtime.environment import environment_info, memory_info
from .store import ResultsStore, RunRecord

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


def entries(models: Sequence[str] = (), presets: Sequence[str] = ()) -> list[Entry]:
    """Entries from model names (their default settings) and shipped presets, in the order given."""
    out = []
    for name in models:
        if name not in MODELS:
            raise ConfigError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
        out.append(Entry(name, Config({"model": {"name": name}}), f"--model {name}"))
    for name in presets:
        out.append(Entry(preset_name(name), get_preset(name), f"--preset {preset_name(name)}"))
    labels = [e.label for e in out]
    if len(set(labels)) != len(labels) or not out:
        raise ConfigError("name each model or preset once, and at least one")
    return out


def compare(data: str | Path, contenders: Sequence[Entry], out: str | Path, seeds: Sequence[int] = (0,),
            progress=None) -> list[RunRecord]:
    """Run every entry (trained ones once per seed) on ``data`` under protocol A, skipping runs already stored in
    ``out/results.sqlite``; returns every stored run of these entries."""
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
            stored = store.get(_key(entry, run, seed, protocol, dataset))
            if stored is None:
                stored = _run(entry, run, seed, dataset, protocol, data, progress)
                store.put(stored)
            done.append(stored)
    return done


def write_outputs(records: Sequence[RunRecord], out: str | Path) -> list[Path]:
    """``leaderboard.md`` and ``leaderboard.csv`` in ``out``, written atomically."""
    from ..runtime.io import write_text_atomic
    from .leaderboard import leaderboard, to_csv, to_markdown

    rows = leaderboard(records)
    protocols = {r.protocol["name"]: r.protocol for r in records}
    if len(protocols) != 1:
        raise ConfigError(f"runs of several protocols ({', '.join(sorted(protocols))}) never share one leaderboard")
    (protocol,) = protocols.values()
    text = f"{protocol['name']}: {protocol['description']}; {protocol.get('split', '')}"
    folder = Path(out)
    return [write_text_atomic(folder / "leaderboard.md", to_markdown(rows, text)),
            write_text_atomic(folder / "leaderboard.csv", to_csv(rows))]


def _key(entry: Entry, run: RunSettings, seed: int, protocol: dict, dataset: Dataset) -> str:
    from .store import run_key

    return run_key(entry.label, run.model.config(), seed, protocol, matrix_digest(dataset.train))


def _run(entry: Entry, run: RunSettings, seed: int, dataset: Dataset, protocol: dict, data: str | Path,
         progress) -> RunRecord:
    result = run_experiment(run.model, dataset, ks=(20,), batch_size=run.batch_size, progress=progress,
                            name=entry.label, fitting=run.fit_options(progress=progress))
    seconds = result["timings_s"]
    command = " ".join(["bspm", "run", "--data", shlex.quote(str(data)), *entry.flag.split(),
                        *(["--set", f"train.seed={seed}"] if entry.trained else []),
                        "--set", f"data.validation={run.validation}", "--k", "20"])
    return RunRecord(
        label=entry.label, model=run.model.name, seed=seed, settings=run.model.config(), chosen_by="as configured",
        protocol=protocol, dataset={**dataset.summary(), "digest": matrix_digest(dataset.train)},
        validation=result.get("validation_metrics", {}), test=result["metrics"],
        fit_s=float(seconds.get("preprocess", 0.0)), score_s=float(seconds.get("inference", 0.0)),
        peak_mib=memory_info()["peak_rss_bytes"] / 2**20, machine=environment_info("auto"),
        version=__version__, command=command,
        finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
    )
