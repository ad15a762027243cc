"""The leaderboard of a comparison: one row per entry, mean and spread over seeds, best first, as Markdown and CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics
from collections.abc import Sequence

from .store import RunRecord

METRICS = ("recall@20", "ndcg@20")


@dataclasses.dataclass(frozen=True)
class Row:
    """One entry: its runs' test metrics (mean, sd over seeds; sd 0 for one run), validation means, and costs."""

    model: str
    runs: int
    test: dict[str, float]
    test_sd: dict[str, float]
    validation: dict[str, float]
    fit_s: float
    score_s: float
    peak_mib: float


def leaderboard(records: Sequence[RunRecord]) -> list[Row]:
    """Rows by entry label, best mean test Recall@20 first (ties by label)."""
    by_label: dict[str, list[RunRecord]] = {}
    for r in records:
        by_label.setdefault(r.label, []).append(r)
    rows = []
    for label, runs in by_label.items():
        def values(split: str, m: str) -> list[float]:
            return [float(getattr(r, split)[m]) for r in runs if m in getattr(r, split)]

        rows.append(Row(
            model=label, runs=len(runs),
            test={m: statistics.fmean(values("test", m)) for m in METRICS},
            test_sd={m: statistics.stdev(values("test", m)) if len(runs) > 1 else 0.0 for m in METRICS},
            validation={m: statistics.fmean(values("validation", m)) if values("validation", m) else float("nan")
                        for m in METRICS},
            fit_s=statistics.fmean(r.fit_s for r in runs), score_s=statistics.fmean(r.score_s for r in runs),
            peak_mib=max(r.peak_mib for r in runs)))
    return sorted(rows, key=lambda row: (-row.test["recall@20"], row.model))


def to_csv(rows: Sequence[Row]) -> str:
    """``model``, ``recall@20``, ``ndcg@20`` (test means), their ``_sd``, validation means, runs and costs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", *METRICS, *(f"{m}_sd" for m in METRICS), *(f"valid_{m}" for m in METRICS), "runs",
                     "fit_s", "score_s", "peak_mib"])
    for row in rows:
        writer.writerow([row.model, *(f"{row.test[m]:.6f}" for m in METRICS), *(f"{row.test_sd[m]:.6f}" for m in METRICS),
                         *(f"{row.validation[m]:.6f}" for m in METRICS), row.runs, f"{row.fit_s:.2f}",
                         f"{row.score_s:.2f}", f"{row.peak_mib:.0f}"])
    return buffer.getvalue()


def to_markdown(rows: Sequence[Row], protocol: str) -> str:
    """The table, the protocol stated once above it."""
    lines = [f"Protocol: {protocol}", "",
             "| model | R@20 | N@20 | validation R@20 | runs | fit s | scoring s | peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        def cell(m: str) -> str:
            return f"{row.test[m]:.4f}" + (f" ± {row.test_sd[m]:.4f}" if row.runs > 1 else "")

        lines.append(f"| {row.model} | {cell('recall@20')} | {cell('ndcg@20')} | {row.validation['recall@20']:.4f} | "
                     f"{row.runs} | {row.fit_s:.1f} | {row.score_s:.1f} | {row.peak_mib:.0f} |")
    return "\n".join(lines) + "\n"
