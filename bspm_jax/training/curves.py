"""The learning curve of a run: CSV and JSON logs written as training goes (drawn by :mod:`bspm_jax.figures.curves`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..runtime.io import write_json_atomic, write_text_atomic

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


__all__ = ["CURVE", "FIXED", "curve_columns", "write_curves"]
