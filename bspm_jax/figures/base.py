"""What every figure shares: its data's type, the style, the formats, matplotlib imported on first use, and
atomic writes of ``<stem>.png`` and ``<stem>.svg``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..models import AbstractRecommender
from ..runtime.io import atomic_files, check_writable

FigureData = dict[str, Any]
"""A figure's data: plain JSON (figure name, dataset, model config, K and the values drawn)."""



@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure of a paper: how its data is computed (``data(model, dataset, **options)``) and drawn
    (``plot(data, stem)``), its one-line ``summary``, the ``sweeps`` (keyword options of ``data``: values of
    a swept setting) it takes, and whether it trains a model per point (``trained``: ``data`` takes ``train``,
    the run's :class:`~bspm_jax.training.TrainSettings`)."""

    data: Callable[..., FigureData]
    plot: Callable[[FigureData, str | Path], list[Path]]
    summary: Callable[[FigureData], str]
    sweeps: tuple[str, ...] = ()
    trained: bool = False


FORMATS = ("png", "svg")
DPI = 150
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "figure.titlesize": 13,
    "svg.hashsalt": "bspm-jax",
}


def matplotlib_figure() -> tuple[Any, Any]:
    """The matplotlib module and its Figure class, imported on first use."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'bspm-jax[plot]'") from None
    return matplotlib, Figure


def variant(model: AbstractRecommender, figure: str, **changes: Any) -> AbstractRecommender:
    """An unfitted copy of ``model`` with some settings changed (validated like ``make_model``)."""
    missing = sorted(set(changes) - set(model.setting_names()))
    if missing:
        raise ConfigError(f"{figure} needs a BSPM model: model {model.name!r} has no setting {', '.join(missing)}")
    try:
        return type(model)(**{**model.config(), **changes})
    except ConfigError as err:
        raise ConfigError(f"{figure}: {', '.join(f'{k}={v!r}' for k, v in changes.items())}: {err}") from None


def jsonable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in config.items()}


def save_figure(fig: Any, stem: str | Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.svg`` atomically (both replaced only if both render)."""
    paths = [Path(f"{stem}.{fmt}") for fmt in FORMATS]
    with atomic_files(*paths) as files:
        for f, fmt in zip(files, FORMATS):
            fig.savefig(f, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else {})
    return paths


def draw(stem: str | Path, build: Callable[[], Any]) -> list[Path]:
    """Build a figure with the module's style and save it (the folder is checked first)."""
    matplotlib, _ = matplotlib_figure()
    for fmt in FORMATS:
        check_writable(f"{stem}.{fmt}")
    with matplotlib.rc_context(STYLE):
        return save_figure(build(), stem)
