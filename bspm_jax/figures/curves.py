"""A trained run's learning curve drawn: training loss and validation metrics against the epoch."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..runtime.io import check_writable
from ..training.curves import FIXED, curve_columns
from .base import FORMATS, STYLE, matplotlib_figure, save_figure


def plot_curves(history: Sequence[Mapping[str, Any]], stem: str | Path, title: str = "Learning curve") -> list[Path]:
    """Training loss and validation metrics against the epoch, written to ``<stem>.png`` and ``<stem>.svg``."""
    if not history:
        raise ConfigError("no epochs to plot")
    matplotlib, Figure = matplotlib_figure()
    for fmt in FORMATS:
        check_writable(f"{stem}.{fmt}")
    metrics = [c for c in curve_columns(history) if c not in FIXED]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(10.0 if metrics else 5.5, 4.0), layout="constrained")
        fig.suptitle(title, fontweight="bold")
        axes = fig.subplots(1, 2 if metrics else 1, squeeze=False)[0]
        trained = [row for row in history if "loss" in row]  # epoch 0 (a pre-trained start) has no loss
        axes[0].plot([row["epoch"] for row in trained], [row["loss"] for row in trained], color="#1f77b4")
        axes[0].set(xlabel="epoch", ylabel="training loss")
        axes[0].grid(alpha=0.3)
        if metrics:
            for name in metrics:
                points = [(row["epoch"], row[name]) for row in history
                          if isinstance(row.get(name), (int, float)) and math.isfinite(row[name])]
                if points:
                    axes[1].plot(*zip(*points), marker="o", markersize=3, label=name)
            axes[1].set(xlabel="epoch", ylabel="validation metric")
            axes[1].grid(alpha=0.3)
            axes[1].legend()
        return save_figure(fig, stem)
