"""The papers' figures from a configuration: computed, drawn and written to a folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import Config, get_preset
from ..errors import ConfigError
from ..figures.base import Figure, FigureData, matplotlib_figure
from ..figures.bspm import FIGURES as BSPM_FIGURES
from ..figures.bspm import make_figure
from ..figures.response import plot_response, response_data
from ..figures.sdiff import FIGURES as SDIFF_FIGURES
from ..models import MODELS, AbstractRecommender, FitCache, make_model
from ..ranking import Progress
from ..runtime.io import check_writable, write_json_atomic
from .settings import RunSettings

FIGURES: dict[str, Figure] = {**BSPM_FIGURES, **SDIFF_FIGURES}
"""Every figure ``bspm plot`` draws from one model, by name (the BSPM paper's and S-Diff's)."""


@dataclasses.dataclass(frozen=True)
class Plotted:
    """A figure written: its name, its data (also in ``<name>.json``), the files and its one-line summary."""

    name: str
    data: FigureData
    paths: list[Path]
    summary: str


def _out_folder(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    return out


def plot_config(config: Config, names: Sequence[str], out: str | Path, k: int = 20,
                sweeps: Mapping[str, Sequence[Any]] | None = None, progress: Progress | None = None) -> list[Plotted]:
    """Figures ``names`` (of :data:`FIGURES`) of the model of ``config`` on its data, written to folder ``out``.

    ``sweeps``: values of swept settings (e.g. ``T_s_values``), each given to the figures that take it; the
    figures that train a model per point train it with ``config``'s ``[train]`` settings. Fits are shared
    between figures (one SVD per distinct setting)."""
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ConfigError(f"unknown figure {', '.join(unknown)}; available: {', '.join(FIGURES)}")
    out = _out_folder(out)
    sweeps = dict(sweeps or {})
    taken = {s for n in names for s in FIGURES[n].sweeps}
    stray = sorted(set(sweeps) - taken)
    if stray:
        raise ConfigError(f"{', '.join(stray)} is swept by none of {', '.join(names)}")
    run = RunSettings.of(config)
    out.mkdir(parents=True, exist_ok=True)
    dataset = run.dataset()
    fits = FitCache(run.spectra)
    done = []
    for name in names:
        figure = FIGURES[name]
        kw: dict[str, Any] = {"k": k, "batch_size": run.batch_size, "progress": progress, "fits": fits,
                              **{s: sweeps[s] for s in figure.sweeps if s in sweeps}}
        if figure.trained:
            kw["train"] = run.train
        data, paths = make_figure(name, run.model, dataset, out, FIGURES, **kw)
        done.append(Plotted(name, data, paths, figure.summary(data)))
    return done


def response_model(entry: str) -> tuple[str, AbstractRecommender]:
    """A model named on the command line: a model name (its defaults) or a preset name (its settings)."""
    if entry in MODELS:
        return entry, make_model(entry)
    preset = get_preset(entry)
    return entry, make_model(preset.model_name, **preset.model_settings)


def response_config(config: Config, models: Sequence[str], out: str | Path) -> Plotted:
    """The frequency responses of ``models`` (model or preset names; default: ``config``'s model) over the
    eigenvalue density of ``config``'s data, side by side, written to ``<out>/response.{png,svg,json}``."""
    matplotlib_figure()
    out = _out_folder(out)
    stem = out / "response"
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg", "json"):
        check_writable(f"{stem}.{ext}")
    run = RunSettings.of(config)
    listed = [response_model(entry) for entry in models] or [(config.model_name, run.model)]
    data = response_data(listed, run.dataset(), spectra=run.spectra)
    paths = [*plot_response(data, stem), write_json_atomic(f"{stem}.json", data)]
    lines = []
    for curve in data["curves"]:
        h = curve["response"]
        cut = "" if curve["ideal_cutoff"] is None else f", ideal low-pass down to s^2 = {curve['ideal_cutoff']:.4f}"
        lines.append(f"{curve['label']}: h(0) = {h[0]:.4f}, h(0.5) = {h[len(h) // 2]:.4f}, h(1) = {h[-1]:.4f}{cut}")
    return Plotted("response", data, paths, "\n".join(lines))
