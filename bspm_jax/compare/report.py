"""The self-contained HTML report of a comparison: the protocol, the leaderboard, accuracy against time, and the
learning curves of trained models.

No script, font or image is fetched at view time: the plots are inline SVG drawn here.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from .leaderboard import Row, cell, paper_cell, valid_cell
from .store import RunRecord

_W, _H, _PAD = 640, 360, 56
_COLOURS = ("#3367d6", "#d64933", "#2f9e44", "#a05cd6", "#e8a317", "#1098ad", "#c2255c", "#5c940d")


class _Axes:
    """A plot's frame: x (linear or log10) and y ranges mapped to the SVG's pixels."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float], log_x: bool):
        self.x_range, self.y_range, self.log_x = x_range, y_range, log_x

    def x(self, value: float) -> float:
        lo, hi = self.x_range
        v = math.log10(value) if self.log_x else value
        return _PAD + (v - lo) / (hi - lo) * (_W - 2 * _PAD)

    def y(self, value: float) -> float:
        lo, hi = self.y_range
        return _H - _PAD - (value - lo) / (hi - lo) * (_H - 2 * _PAD)

    def frame(self, label: str, x_label: str, y_label: str) -> list[str]:
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
                 f'aria-label="{html.escape(label)}">',
                 f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="black"/>',
                 f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="black"/>']
        lo, hi = self.x_range
        step = max(1, math.ceil((hi - lo) / 5))  # a linear axis counts epochs: whole numbers
        ticks = [10.0 ** e for e in range(int(lo), int(hi) + 1)] if self.log_x else \
            list(range(math.ceil(lo), math.floor(hi) + 1, step))
        for t in ticks:
            text = f"{t:g} s" if self.log_x else f"{t:.0f}"
            parts.append(f'<text x="{self.x(t):.1f}" y="{_H - _PAD + 18}" font-size="11" text-anchor="middle">{text}</text>')
        for k in range(5):
            v = self.y_range[0] + (self.y_range[1] - self.y_range[0]) * k / 4
            parts.append(f'<text x="{_PAD - 6}" y="{self.y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:.3f}</text>')
        parts.append(f'<text x="{_W / 2}" y="{_H - 12}" font-size="12" text-anchor="middle">{html.escape(x_label)}</text>')
        parts.append(f'<text x="14" y="{_H / 2}" font-size="12" transform="rotate(-90 14 {_H / 2})" '
                     f'text-anchor="middle">{html.escape(y_label)}</text>')
        return parts


def accuracy_time_svg(rows: Sequence[Row]) -> str:
    """Test Recall@20 against fit + scoring seconds (log scale), one labelled point per entry."""
    points = [(max(r.fit_s + r.score_s, 1e-3), r.test["recall@20"], r.model) for r in rows]
    lo_t = math.floor(math.log10(min(p[0] for p in points)))
    hi_t = max(math.ceil(math.log10(max(p[0] for p in points))), lo_t + 1)
    axes = _Axes((lo_t, hi_t), (0.0, max(p[1] for p in points) * 1.1 or 1.0), log_x=True)
    parts = axes.frame("test Recall@20 against seconds", "fit + scoring seconds (log)", "test Recall@20")
    for t, v, label in points:
        parts.append(f'<circle cx="{axes.x(t):.1f}" cy="{axes.y(v):.1f}" r="4" fill="{_COLOURS[0]}"><title>'
                     f'{html.escape(label)}: {v:.4f}, {t:.1f} s</title></circle>')
        parts.append(f'<text x="{axes.x(t) + 6:.1f}" y="{axes.y(v) - 6:.1f}" font-size="11">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def curves_svg(label: str, runs: Sequence[RunRecord]) -> str:
    """The validation metric against the epoch, one line per seed, for one trained entry."""
    metric = next((k for r in runs for row in r.curve for k in row if k not in ("epoch", "loss")), "recall@20")
    lines = [[(row["epoch"], row[metric]) for row in r.curve if row.get(metric) is not None] for r in runs]
    values = [v for line in lines for _, v in line]
    epochs = [e for line in lines for e, _ in line]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or 0.01
    axes = _Axes((min(epochs), max(max(epochs), min(epochs) + 1)), (lo - pad, hi + pad), log_x=False)
    parts = axes.frame(f"{label}: validation {metric} by epoch", "epoch", f"validation {metric}")
    for n, (r, line) in enumerate(zip(runs, lines)):
        colour = _COLOURS[n % len(_COLOURS)]
        coords = " ".join(f"{axes.x(e):.1f},{axes.y(v):.1f}" for e, v in line)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5">'
                     f'<title>seed {r.seed}</title></polyline>')
        parts.append(f'<text x="{_W - _PAD + 4}" y="{_PAD + 14 * n:.1f}" font-size="11" fill="{colour}">seed {r.seed}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _validated(record: RunRecord) -> bool:
    """Whether a run's curve has a validated epoch."""
    return any(v is not None for row in record.curve for k, v in row.items() if k not in ("epoch", "loss"))


def report_html(rows: Sequence[Row], protocol: str, dataset: str, records: Sequence[RunRecord] = (),
                reference: str = "") -> str:
    """The whole report as one HTML page: the leaderboard, accuracy against time, and ``records``' learning curves."""
    head = ("<tr><th>model</th><th>R@20</th><th>N@20</th><th>validation R@20</th><th>runs</th><th>fit s</th>"
            "<th>scoring s</th><th>search s</th><th>peak MiB</th>"
            + ("<th>published R@20 / N@20</th>" if reference else "") + "<th>settings chosen by</th></tr>")
    body = []
    for r in rows:
        body.append(f"<tr><td>{html.escape(r.model)}</td><td>{cell(r, 'recall@20', '&plusmn;')}</td>"
                    f"<td>{cell(r, 'ndcg@20', '&plusmn;')}</td><td>{valid_cell(r)}</td><td>{r.runs}</td>"
                    f"<td>{r.fit_s:.1f}</td><td>{r.score_s:.1f}</td><td>{r.search_s:.1f}</td><td>{r.peak_mib:.0f}</td>"
                    + (f"<td>{paper_cell(r)}</td>" if reference else "")
                    + f"<td class=\"text\">{html.escape(r.chosen_by)}</td></tr>")
    curves = []
    for row in rows:
        runs = [r for r in records if r.label == row.model and _validated(r)]
        if runs:
            curves.append(f"<h3>{html.escape(row.model)}</h3>\n{curves_svg(row.model, runs)}")
    source = f"<p>Published figures: {html.escape(reference)}.</p>\n" if reference else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>bspm compare</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,td.text{text-align:left}"
            "td.text{font-size:smaller}</style></head><body>\n"
            f"<h1>bspm compare: {html.escape(dataset)}</h1>\n<p><b>Protocol</b> {html.escape(protocol)}</p>\n{source}"
            f"<table>{head}{''.join(body)}</table>\n<h2>Accuracy against time</h2>\n{accuracy_time_svg(rows)}\n"
            + (f"<h2>Learning curves (validation)</h2>\n{''.join(curves)}\n" if curves else "")
            + "</body></html>\n")
