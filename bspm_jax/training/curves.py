"""The learning curve of a run: CSV and JSON logs written as training goes, and a PNG+SVG plot."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import check_writable, write_json_atomic, write_text_atomic

CURVE = "learning_curve"
"""Stem of the log files in the output folder: ``learning_curve.csv`` and ``.json``."""
FIXED = ("epoch", "loss", "seconds", "step_seconds")


def curve_columns(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """epoch, loss, seconds, step_seconds, then the validation metrics in order of first appearance."""
    extra: dict[str, None] = {}
    for row in history:
        extra.update((k, None) for k in row if k not in FIXED)
    return [*FIXED, *extra]


def write_curves(history: Sequence[Mapping[str, Any]], folder: str | Path, info: Mapping[str, Any] | None = None) -> list[Path]:
    """Write ``learning_curve.csv`` (empty cells for epochs without validation) and ``.json`` into ``folder``."""
    folder = Path(folder)
    columns = curve_columns(history)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for row in history:
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    csv_path = write_text_atomic(folder / f"{CURVE}.csv", text.getvalue())
    json_path = write_json_atomic(folder / f"{CURVE}.json", {**dict(info or {}), "history": [dict(r) for r in history]})
    return [csv_path, json_path]


def plot_curves(history: Sequence[Mapping[str, Any]], stem: str | Path, title: str = "Learning curve") -> list[Path]:
    """Training loss and validation metrics against the epoch, written to ``<stem>.png`` and ``<stem>.svg``."""
    from ..plots import FORMATS, STYLE, _matplotlib, save_figure

    if not history:
        raise ConfigError("no epochs to plot")
    matplotlib, Figure = _matplotlib()
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


__all__ = ["CURVE", "curve_columns", "plot_curves", "write_curves"]
