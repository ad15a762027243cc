"""The self-contained HTML report of a comparison: the protocol, the leaderboard, and accuracy against time.

No script, font or image is fetched at view time: the plot is inline SVG drawn here.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from .leaderboard import Row

_W, _H, _PAD = 640, 360, 56


def accuracy_time_svg(rows: Sequence[Row]) -> str:
    """Test Recall@20 against fit + scoring seconds (log scale), one labelled point per entry."""
    points = [(max(r.fit_s + r.score_s, 1e-3), r.test["recall@20"], r.model) for r in rows]
    lo_t = math.floor(math.log10(min(p[0] for p in points)))
    hi_t = math.ceil(math.log10(max(p[0] for p in points)))
    hi_t = hi_t if hi_t > lo_t else lo_t + 1
    hi_y = max(p[1] for p in points) * 1.1 or 1.0

    def x(t: float) -> float:
        return _PAD + (math.log10(t) - lo_t) / (hi_t - lo_t) * (_W - 2 * _PAD)

    def y(v: float) -> float:
        return _H - _PAD - v / hi_y * (_H - 2 * _PAD)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
             f'aria-label="test Recall@20 against seconds">',
             f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="black"/>',
             f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="black"/>']
    for e in range(lo_t, hi_t + 1):
        parts.append(f'<text x="{x(10.0 ** e):.1f}" y="{_H - _PAD + 18}" font-size="11" text-anchor="middle">'
                     f'{10.0 ** e:g} s</text>')
    for k in range(5):
        v = hi_y * k / 4
        parts.append(f'<text x="{_PAD - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:.3f}</text>')
    parts.append(f'<text x="{_W / 2}" y="{_H - 12}" font-size="12" text-anchor="middle">fit + scoring seconds (log)</text>')
    parts.append(f'<text x="14" y="{_H / 2}" font-size="12" transform="rotate(-90 14 {_H / 2})" '
                 'text-anchor="middle">test Recall@20</text>')
    for t, v, label in points:
        parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="4" fill="#3367d6"><title>{html.escape(label)}: '
                     f'{v:.4f}, {t:.1f} s</title></circle>')
        parts.append(f'<text x="{x(t) + 6:.1f}" y="{y(v) - 6:.1f}" font-size="11">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def report_html(rows: Sequence[Row], protocol: str, dataset: str) -> str:
    """The whole report as one HTML page."""
    head = ("<tr><th>model</th><th>R@20</th><th>N@20</th><th>validation R@20</th><th>runs</th><th>fit s</th>"
            "<th>scoring s</th><th>peak MiB</th></tr>")
    body = []
    for r in rows:
        def cell(m: str) -> str:
            return f"{r.test[m]:.4f}" + (f" &plusmn; {r.test_sd[m]:.4f}" if r.runs > 1 else "")

        body.append(f"<tr><td>{html.escape(r.model)}</td><td>{cell('recall@20')}</td><td>{cell('ndcg@20')}</td>"
                    f"<td>{r.validation['recall@20']:.4f}</td><td>{r.runs}</td><td>{r.fit_s:.1f}</td>"
                    f"<td>{r.score_s:.1f}</td><td>{r.peak_mib:.0f}</td></tr>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>bspm compare</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
            "</head><body>\n"
            f"<h1>bspm compare: {html.escape(dataset)}</h1>\n<p><b>Protocol</b> {html.escape(protocol)}</p>\n"
            f"<table>{head}{''.join(body)}</table>\n<h2>Accuracy against time</h2>\n{accuracy_time_svg(rows)}\n"
            "</body></html>\n")
