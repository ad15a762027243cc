"""Figures 5, 6, 8 and 10 of the BSPM paper (Choi et al., SIGIR 2023), computed and drawn.

Computing and drawing are separate: ``figN_data(model, dataset, ...)`` fits and evaluates
and returns a JSON-serialisable dict; ``plot_figN(data, stem)`` draws it with matplotlib
and writes ``<stem>.png`` and ``<stem>.svg`` atomically. :func:`make_figure` does both.

- fig5: Recall@K and NDCG@K against the sharpening time ``T_s``;
- fig6: Recall@K and NDCG@K against the number of sharpening steps ``K_s``;
- fig8: Recall, NDCG, Novelty and Coverage @K of only blurring (``sharpen=False``) and of
  blurring + sharpening (the given model);
- fig10: the train degrees of the hits (top-K items that are test items) without and with
  sharpening, as histograms over log-spaced degree bins.

Models whose ``fit_key`` matches share one fit (normalisation and SVD): pass the same
``fits`` (a :class:`FitCache`) to several calls to share fits between figures too.
"""

from __future__ import annotations

import math
import numbers
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset
from ..errors import ConfigError
from ..evaluation.protocol import Evaluation, evaluate
from ..runtime.io import check_writable, write_json_atomic
from ..ranking.metrics import hit_matrix
from ..models import AbstractRecommender
from ..models import FitCache
from ..ranking import Progress, check_k, no_progress
from ..spectral import item_degrees as train_item_degrees
from .base import FORMATS, Figure, FigureData, draw, jsonable, matplotlib_figure, variant

BLUR_ONLY = "blurring only"
BLUR_SHARPEN = "blurring + sharpening"
PAPER_T_S = (1.0, 2.0, 3.0, 4.0, 5.0)
PAPER_K_S = (1, 2, 3, 4)
SYMBOLS = {"T_s": "$T_s$", "K_s": "$K_s$"}
COLORS = {BLUR_ONLY: "#8c8c8c", BLUR_SHARPEN: "#1f77b4"}
METRIC_LABELS = {
    "recall": "Recall@{k}",
    "ndcg": "NDCG@{k}",
    "precision": "Precision@{k}",
    "hit": "HitRate@{k}",
    "novelty": "Novelty@{k} (bits)",
    "coverage": "Coverage@{k} (share of items)",
}


# ---------------------------------------------------------------- computing


def _start_fits(model: AbstractRecommender, fits: FitCache | None) -> FitCache:
    """The fit cache, offered ``model`` itself when it is already fitted (reused for its own train matrix)."""
    fits = FitCache() if fits is None else fits
    if model.is_fitted:
        fits.add(model)
    return fits


def _check_sharpening(model: AbstractRecommender, figure: str) -> None:
    if "sharpen" not in model.setting_names():
        raise ConfigError(f"{figure} needs a BSPM model, got {model.name!r}")
    if not model.config()["sharpen"]:
        raise ConfigError(f"{figure} studies the sharpening process: the model has sharpen=false")


def _check_values(figure: str, setting: str, values: Iterable[Any], kind: type) -> list[Any]:
    """The sweep's distinct values, sorted; each must be a number of ``kind`` (real or integral)."""
    values = list(values)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, kind)]
    if bad or not values:
        raise ConfigError(f"{figure}: {setting} values must be {'integers' if kind is numbers.Integral else 'numbers'}, "
                          f"at least one, got {values!r}")
    return sorted(set(int(v) if kind is numbers.Integral else float(v) for v in values))


def _header(figure: str, model: AbstractRecommender, dataset: Dataset, k: int, ev: Evaluation) -> FigureData:
    """The fields every figure's data has: figure, dataset, model (name and settings), k."""
    return {
        "figure": figure,
        "dataset": {**dataset.summary(), "n_users_evaluated": ev.n_users},
        "model": {"name": model.name, "config": jsonable(model.config())},
        "k": k,
    }


def _sweep(
    figure: str,
    setting: str,
    values: Sequence[Any],
    model: AbstractRecommender,
    dataset: Dataset,
    k: int,
    batch_size: int,
    progress: Progress | None,
    fits: FitCache | None,
) -> FigureData:
    """Evaluate ``model`` with ``setting`` set to each of ``values``: metrics per value."""
    _check_sharpening(model, figure)
    k = check_k(k, dataset.n_items)
    models = [variant(model, figure, **{setting: v}) for v in values]  # validate all before fitting
    fits = _start_fits(model, fits)
    columns: dict[str, list[float]] = {}
    ev = None
    for m in (progress or no_progress)(models, desc=setting, unit="point"):
        ev = evaluate(fits.fit(m, dataset.train), dataset, ks=(k,), batch_size=batch_size)
        for name, value in ev.metrics.items():
            columns.setdefault(name, []).append(float(value))
    assert ev is not None
    return {**_header(figure, model, dataset, k, ev), "x": {"setting": setting, "values": values}, "metrics": columns}


def fig5_data(
    model: AbstractRecommender,
    dataset: Dataset,
    T_s_values: Sequence[float] | None = None,
    k: int = 20,
    batch_size: int = 1024,
    progress: Progress | None = None,
    fits: FitCache | None = None,
) -> FigureData:
    """Metrics@k of ``model`` for each sharpening time T_s (default 1..5 and the model's own)."""
    if T_s_values is None:
        T_s_values = [*PAPER_T_S, getattr(model, "T_s", PAPER_T_S[0])]
    values = _check_values("fig5", "T_s", T_s_values, numbers.Real)
    return _sweep("fig5", "T_s", values, model, dataset, k, batch_size, progress, fits)


def fig6_data(
    model: AbstractRecommender,
    dataset: Dataset,
    K_s_values: Sequence[int] | None = None,
    k: int = 20,
    batch_size: int = 1024,
    progress: Progress | None = None,
    fits: FitCache | None = None,
) -> FigureData:
    """Metrics@k of ``model`` for each number of sharpening steps K_s (default 1..4 and the model's own)."""
    if K_s_values is None:
        K_s_values = [*PAPER_K_S, getattr(model, "K_s", PAPER_K_S[0])]
    values = _check_values("fig6", "K_s", K_s_values, numbers.Integral)
    return _sweep("fig6", "K_s", values, model, dataset, k, batch_size, progress, fits)


def _with_and_without_sharpening(
    figure: str,
    model: AbstractRecommender,
    dataset: Dataset,
    k: int,
    batch_size: int,
    progress: Progress | None,
    fits: FitCache | None,
) -> tuple[dict[str, Evaluation], FigureData]:
    """Evaluations of only blurring (``sharpen=False``) and of ``model``, and the data header."""
    _check_sharpening(model, figure)
    k = check_k(k, dataset.n_items)
    models = {BLUR_ONLY: variant(model, figure, sharpen=False, residual=False), BLUR_SHARPEN: variant(model, figure)}
    # residual=False: the residual connection adds S(0), which needs sharpening
    fits = _start_fits(model, fits)
    evals = {
        label: evaluate(fits.fit(models[label], dataset.train), dataset, ks=(k,), batch_size=batch_size)
        for label in (progress or no_progress)(list(models), desc=figure, unit="model")
    }
    header = _header(figure, model, dataset, k, evals[BLUR_SHARPEN])
    changes = {"sharpen": False, "residual": False}
    return evals, {**header, "variants": [BLUR_ONLY, BLUR_SHARPEN], "blur_only_changes": changes}


def fig8_data(
    model: AbstractRecommender,
    dataset: Dataset,
    k: int = 20,
    batch_size: int = 1024,
    progress: Progress | None = None,
    fits: FitCache | None = None,
) -> FigureData:
    """Metrics@k of only blurring (``sharpen=False``) and of blurring + sharpening (``model``)."""
    evals, data = _with_and_without_sharpening("fig8", model, dataset, k, batch_size, progress, fits)
    names = list(evals[BLUR_SHARPEN].metrics)
    return {**data, "metrics": {n: [float(evals[v].metrics[n]) for v in data["variants"]] for n in names}}


def item_degrees(dataset: Dataset) -> np.ndarray:
    """Number of train interactions of every item (int64)."""
    return train_item_degrees(dataset.train).astype(np.int64)


def hit_degrees(ev: Evaluation, dataset: Dataset, degrees: np.ndarray | None = None) -> np.ndarray:
    """Train degree of every hit (a ranked item with a finite score that is a test item of the user)."""
    if ev.ranking is None or ev.users is None:
        raise ConfigError("the evaluation has no ranking")
    items = ev.ranking.items
    hits = hit_matrix(items, np.isfinite(ev.ranking.scores), dataset.test[ev.users])
    return (item_degrees(dataset) if degrees is None else degrees)[items[hits]]


def fig10_data(
    model: AbstractRecommender,
    dataset: Dataset,
    k: int = 20,
    batch_size: int = 1024,
    progress: Progress | None = None,
    fits: FitCache | None = None,
) -> FigureData:
    """Train degrees of the top-k hits without and with sharpening, as (degree, number of hits) pairs."""
    evals, data = _with_and_without_sharpening("fig10", model, dataset, k, batch_size, progress, fits)
    degrees = item_degrees(dataset)
    hits: dict[str, Any] = {}
    for label in data["variants"]:
        d = hit_degrees(evals[label], dataset, degrees)
        values, counts = np.unique(d, return_counts=True)
        hits[label] = {
            "degree": values.tolist(),
            "hits": counts.tolist(),
            "n_hits": int(d.size),
            "mean_degree": float(d.mean()) if d.size else None,
            "median_degree": float(np.median(d)) if d.size else None,
        }
    item = {"max": int(degrees.max(initial=0)), "median": float(np.median(degrees)), "mean": float(degrees.mean())}
    return {**data, "hit_degrees": hits, "item_degrees": item}


# ---------------------------------------------------------------- drawing


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def caption(data: FigureData, omit: Iterable[str] = ()) -> str:
    """One line with the dataset and the model's essential settings (those in ``omit`` left out)."""
    c = {key: v for key, v in data["model"]["config"].items() if key not in set(omit)}
    parts = []
    if "blur" in c:
        parts.append(f"{c['blur']} blur T_b={_num(c.get('T_b', ''))}" + (f" K_b={c['K_b']}" if "K_b" in c else ""))
    if "beta" in c:
        parts.append(f"β={_num(c['beta'])}")
    sharp = [f"{k}={_num(c[k])}" for k in ("T_s", "K_s") if k in c]
    if "sharpen_solver" in c or sharp:
        parts.append(" ".join([str(c.get("sharpen_solver", "")).upper() + " sharpening", *sharp]).strip())
    if "merge" in c:
        parts.append(f"{c['merge']} merge")
    if "rank" in c:
        parts.append(f"rank {c['rank']}")
    if not parts:
        parts = [f"{k}={_num(v)}" for k, v in c.items()]
    ds = data["dataset"]
    users = f"{ds['n_users_evaluated']:,} test users, {ds['n_items']:,} items"
    return f"{ds['name']} ({users}) · {data['model']['name']}: " + ", ".join(parts)


def _new_figure(data: FigureData, title: str, size: tuple[float, float], omit: Iterable[str] = ()) -> Any:
    """A constrained-layout Figure with a title and the caption line under it."""
    _, Figure = matplotlib_figure()
    fig = Figure(figsize=size, layout="constrained")
    fig.suptitle(title, fontweight="bold")
    fig.supxlabel(textwrap.fill(caption(data, omit), width=int(size[0] * 13)), fontsize=9.5, color="0.25")
    return fig


def _label(metric: str) -> str:
    name, _, k = metric.partition("@")
    return METRIC_LABELS.get(name, name).format(k=k)


def _plot_sweep(data: FigureData, stem: str | Path, title: str, xlabel: str) -> list[Path]:
    """One panel per accuracy metric against the swept setting, the model's own value marked."""
    setting, xs = data["x"]["setting"], data["x"]["values"]
    metrics = [f"recall@{data['k']}", f"ndcg@{data['k']}"]
    configured = data["model"]["config"].get(setting)
    symbol = SYMBOLS.get(setting, setting)

    def build() -> Any:
        fig = _new_figure(data, title, (10.0, 4.4), omit=(setting,))
        axes = fig.subplots(1, len(metrics))
        for ax, metric, color in zip(axes, metrics, ("#1f77b4", "#d62728")):
            ys = data["metrics"][metric]
            ax.plot(xs, ys, marker="o", color=color, linewidth=2, label=_label(metric).split(" (")[0])
            best = int(np.argmax(ys))
            ax.plot([xs[best]], [ys[best]], marker="*", markersize=15, color="#ff7f0e", linestyle="none",
                    label=f"best: {symbol} = {_num(xs[best])} ({ys[best]:.4f})", zorder=3)
            if configured is not None:
                ax.axvline(configured, color="0.4", linestyle="--", linewidth=1,
                           label=f"model's {symbol} = {_num(configured)}")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(_label(metric))
            ax.set_title(_label(metric).split(" (")[0])
            if setting == "K_s":
                ax.set_xticks(xs)
            ax.margins(y=0.15)
            ax.grid(True, alpha=0.3)
            ax.legend(loc="best")
        return fig

    return draw(stem, build)


def plot_fig5(data: FigureData, stem: str | Path) -> list[Path]:
    """Draw fig5 (accuracy against the sharpening time T_s) as ``<stem>.png`` and ``<stem>.svg``."""
    return _plot_sweep(data, stem, "Fig. 5 — accuracy vs sharpening time $T_s$", "sharpening time $T_s$ (ODE time units)")


def plot_fig6(data: FigureData, stem: str | Path) -> list[Path]:
    """Draw fig6 (accuracy against the number of sharpening steps K_s) as PNG and SVG."""
    return _plot_sweep(data, stem, "Fig. 6 — accuracy vs number of sharpening steps $K_s$",
                       "sharpening steps $K_s$ (solver steps over $[0, T_s]$)")


def plot_fig8(data: FigureData, stem: str | Path) -> list[Path]:
    """Draw fig8 (only blurring vs blurring + sharpening, one panel per metric) as PNG and SVG."""
    k = data["k"]
    metrics = [f"{m}@{k}" for m in ("recall", "ndcg", "novelty", "coverage")]
    variants = data["variants"]

    def build() -> Any:
        fig = _new_figure(data, "Fig. 8 — only blurring vs blurring + sharpening", (12.0, 4.4))
        axes = fig.subplots(1, len(metrics))
        for ax, metric in zip(axes, metrics):
            values = data["metrics"][metric]
            bars = ax.bar(range(len(variants)), values, width=0.6, color=[COLORS[v] for v in variants], label=variants)
            ax.bar_label(bars, labels=[f"{v:.4f}" if v < 1 else f"{v:.3f}" for v in values], padding=2, fontsize=10)
            change = (values[1] - values[0]) / values[0] * 100 if values[0] else math.nan
            ax.set_title(f"{_label(metric).split(' (')[0]}  ({change:+.1f}%)")
            ax.set_ylabel(_label(metric))
            ax.set_xticks(range(len(variants)), ["blur", "blur +\nsharpen"])
            ax.set_ylim(0, max(values) * 1.45 if max(values) > 0 else 1)
            ax.grid(True, axis="y", alpha=0.3)
        axes[0].legend(axes[0].patches, variants, loc="upper left")
        return fig

    return draw(stem, build)


def log_bins(low: int, high: int, n_bins: int = 24) -> np.ndarray:
    """Integer bin edges spaced evenly in log scale from ``low`` (at least 1) to just above ``high``."""
    low = max(int(low), 1)
    high = max(int(high), low)
    edges = np.unique(np.floor(np.logspace(math.log10(low), math.log10(high + 1), n_bins + 1)))
    return edges if edges.size >= 2 else np.array([low, low + 1.0])


def plot_fig10(data: FigureData, stem: str | Path) -> list[Path]:
    """Draw fig10 (histograms of the hits' item degrees without and with sharpening) as PNG and SVG."""
    hits = data["hit_degrees"]
    variants = data["variants"]
    edges = log_bins(min([min(hits[v]["degree"], default=1) for v in variants]),
                     max([max(hits[v]["degree"], default=1) for v in variants]))
    zero = sum(h for v in variants for d, h in zip(hits[v]["degree"], hits[v]["hits"]) if d == 0)

    def build() -> Any:
        fig = _new_figure(data, f"Fig. 10 — item degrees of the top-{data['k']} hits", (8.5, 5.2))
        ax = fig.subplots()
        for v, filled in zip(variants, (True, False)):
            h = hits[v]
            degrees = np.maximum(np.asarray(h["degree"], dtype=float), 1.0)
            label = f"{v}: {h['n_hits']:,} hits, median degree {_num(h['median_degree'])}"
            kw = {"histtype": "stepfilled", "alpha": 0.35} if filled else {"histtype": "step", "linewidth": 2.2}
            ax.hist(degrees, bins=edges, weights=h["hits"], color=COLORS[v], label=label, **kw)
            if h["n_hits"]:
                ax.axvline(max(h["median_degree"], 1.0), color=COLORS[v], linestyle="--", linewidth=1.3)
        ax.set_xscale("log")
        ax.set_xlabel("item degree (train interactions)")
        ax.set_ylabel("number of hits (per log-spaced degree bin)")
        ax.grid(True, alpha=0.3)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.4)  # headroom: the legend stays clear of the bars
        ax.legend(loc="upper left", title="dashed lines: medians")
        if zero:
            ax.annotate(f"{zero} hits on items without train interactions counted at degree 1",
                        (0.99, 0.01), xycoords="axes fraction", ha="right", va="bottom", fontsize=9)
        return fig

    return draw(stem, build)


# ---------------------------------------------------------------- both

def sweep_summary(data: FigureData) -> str:
    """Figures 5 and 6: Recall and NDCG at each value of the swept setting."""
    k, m, setting = data["k"], data["metrics"], data["x"]["setting"]
    return "  ".join(f"{setting}={x:g}: R {m[f'recall@{k}'][i]:.4f} N {m[f'ndcg@{k}'][i]:.4f}"
                     for i, x in enumerate(data["x"]["values"]))


def variants_summary(data: FigureData) -> str:
    """Figure 8: Recall, NDCG, novelty and coverage of each variant."""
    m = data["metrics"]
    return "; ".join(f"{v}: " + ", ".join(f"{name} {m[name][i]:.4f}" for name in m
                                          if name.split("@")[0] in ("recall", "ndcg", "novelty", "coverage"))
                     for i, v in enumerate(data["variants"]))


def degrees_summary(data: FigureData) -> str:
    """Figure 10: the hits and their median and mean train degree, per variant."""
    return "; ".join(f"{v}: {h['n_hits']:,} hits, median degree {h['median_degree']:g}, mean {h['mean_degree']:.1f}"
                     for v, h in data["hit_degrees"].items())


FIGURES: dict[str, Figure] = {
    "fig5": Figure(fig5_data, plot_fig5, sweep_summary, sweeps=("T_s_values",)),
    "fig6": Figure(fig6_data, plot_fig6, sweep_summary, sweeps=("K_s_values",)),
    "fig8": Figure(fig8_data, plot_fig8, variants_summary),
    "fig10": Figure(fig10_data, plot_fig10, degrees_summary),
}
"""The BSPM paper's figures by name."""


def make_figure(
    name: str, model: AbstractRecommender, dataset: Dataset, out_dir: str | Path,
    figures: dict[str, tuple[Callable[..., FigureData], Callable[[FigureData, str | Path], list[Path]]]] | None = None,
    **kw: Any,
) -> tuple[FigureData, list[Path]]:
    """Compute figure ``name`` of ``figures`` (default :data:`FIGURES`; keywords go to its data function) and
    write ``<out_dir>/<name>.{png,svg,json}``."""
    figures = FIGURES if figures is None else figures
    try:
        figure = figures[name]
    except KeyError:
        raise ConfigError(f"unknown figure {name!r}; available: {', '.join(figures)}") from None
    matplotlib_figure()
    stem = Path(out_dir) / name
    for ext in (*FORMATS, "json"):
        check_writable(f"{stem}.{ext}")
    data = figure.data(model, dataset, **kw)
    paths = figure.plot(data, stem)
    return data, [*paths, write_json_atomic(f"{stem}.json", data)]


__all__ = [
    "FIGURES",
    "FigureData",
    "caption",
    "fig5_data",
    "fig6_data",
    "fig8_data",
    "fig10_data",
    "hit_degrees",
    "item_degrees",
    "log_bins",
    "make_figure",
    "plot_fig5",
    "plot_fig6",
    "plot_fig8",
    "plot_fig10",
    "variant",
]
