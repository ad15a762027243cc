"""The leaderboard of a comparison: one row per entry, mean and spread over seeds, best first, as Markdown and CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import statistics
from collections.abc import Mapping, Sequence

from ..errors import ConfigError
from .store import RunRecord

METRICS = ("recall@20", "ndcg@20")


@dataclasses.dataclass(frozen=True)
class Row:
    """One entry: its runs' test metrics (mean, sd over seeds; sd 0 for one run), validation means, costs (means of
    fit and scoring seconds, the search's seconds, the largest peak memory), and the published figures if given."""

    model: str
    runs: int
    test: dict[str, float]
    test_sd: dict[str, float]
    validation: dict[str, float]
    fit_s: float
    score_s: float
    search_s: float
    peak_mib: float
    chosen_by: str
    paper: dict[str, float]


def protocol_text(records: Sequence[RunRecord]) -> str:
    """The one protocol of ``records``, stated once: its name, description and split; several are refused."""
    protocols = {r.protocol["name"]: r.protocol for r in records}
    if len(protocols) != 1:
        raise ConfigError(f"runs of several protocols ({', '.join(sorted(protocols)) or 'none'}) never share one "
                          "leaderboard")
    (protocol,) = protocols.values()
    split = protocol.get("split", "")
    return f"{protocol['name']}: {protocol['description']}" + (f"; {split}" if split else "")


def leaderboard(records: Sequence[RunRecord], paper: Mapping[str, Mapping[str, float]] | None = None) -> list[Row]:
    """Rows by entry label, best mean test Recall@20 first (ties by label); ``paper``: published figures by label."""
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
            validation={m: statistics.fmean(values("validation", m)) if values("validation", m) else math.nan
                        for m in METRICS},
            fit_s=statistics.fmean(r.fit_s for r in runs), score_s=statistics.fmean(r.score_s for r in runs),
            search_s=runs[0].search_s, peak_mib=max(r.peak_mib for r in runs), chosen_by=runs[0].chosen_by,
            paper=dict((paper or {}).get(label, {}))))
    return sorted(rows, key=lambda row: (-row.test["recall@20"], row.model))


def to_csv(rows: Sequence[Row]) -> str:
    """``model``, ``recall@20``, ``ndcg@20`` (test means), their ``_sd``, validation means, runs, costs, and the
    published figures (``paper_recall@20``, ``paper_ndcg@20``; empty where none)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", *METRICS, *(f"{m}_sd" for m in METRICS), *(f"valid_{m}" for m in METRICS), "runs",
                     "fit_s", "score_s", "search_s", "peak_mib", *(f"paper_{m}" for m in METRICS), "chosen_by"])
    for row in rows:
        writer.writerow([row.model, *(f"{row.test[m]:.6f}" for m in METRICS), *(f"{row.test_sd[m]:.6f}" for m in METRICS),
                         *(_number(row.validation[m], 6) for m in METRICS), row.runs, f"{row.fit_s:.2f}",
                         f"{row.score_s:.2f}", f"{row.search_s:.2f}", f"{row.peak_mib:.0f}",
                         *(f"{row.paper[m]:.4f}" if m in row.paper else "" for m in METRICS), row.chosen_by])
    return buffer.getvalue()


def _number(value: float, digits: int) -> str:
    """A figure with ``digits`` decimals; empty when there is none (no validation split)."""
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def valid_cell(row: Row) -> str:
    return _number(row.validation["recall@20"], 4) or "-"


def cell(row: Row, metric: str, plus_minus: str = "±") -> str:
    """A test mean, with its spread when there are several runs."""
    return f"{row.test[metric]:.4f}" + (f" {plus_minus} {row.test_sd[metric]:.4f}" if row.runs > 1 else "")


def paper_cell(row: Row) -> str:
    return " / ".join(f"{row.paper[m]:.4f}" for m in METRICS if m in row.paper) or "-"


def to_markdown(rows: Sequence[Row], protocol: str, reference: str = "") -> str:
    """The table, the protocol stated once above it; a column of published figures when ``reference`` names them."""
    lines = [f"Protocol: {protocol}", ""]
    head = "| model | R@20 | N@20 | validation R@20 | runs | fit s | scoring s | search s | peak MiB |"
    if reference:
        lines += [f"Published figures: {reference}.", ""]
        head += " published R@20 / N@20 |"
    lines += [head, "|" + "---|" * head.count(" |")]
    for row in rows:
        line = (f"| {row.model} | {cell(row, 'recall@20')} | {cell(row, 'ndcg@20')} | "
                f"{valid_cell(row)} | {row.runs} | {row.fit_s:.1f} | {row.score_s:.1f} | "
                f"{row.search_s:.1f} | {row.peak_mib:.0f} |")
        lines.append(line + (f" {paper_cell(row)} |" if reference else ""))
    return "\n".join(lines) + "\n"
