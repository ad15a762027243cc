"""Figures 3, 7 and 8 of the S-Diff paper (Xia et al., WSDM 2025), computed and drawn.

- ``sdiff-fig3``: log SNR, log(alpha_t^2 / sigma_t^2), against t for S-Diff-VP at several
  graph frequencies of the data and for isotropic DDPM (no training);
- ``sdiff-fig7``: validation and test Recall@K against the number K of eigenvectors;
- ``sdiff-fig8``: validation and test Recall@K over an alpha_min x sigma_max grid.

Every point of Figs. 7 and 8 is a model trained and early-stopped on the validation split
(:func:`bspm_jax.evaluation.fit.fit_model`), then scored on validation (train items excluded)
and on test (train and validation items excluded). As in :mod:`bspm_jax.figures.bspm`,
``*_data`` computes plain JSON and ``plot_*`` draws it to ``<stem>.png`` / ``.svg``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..data import Dataset
from ..diffusion import SCHEDULES, log_snr
from ..errors import ConfigError
from ..evaluation.protocol import evaluate
from ..evaluation.fit import FitOptions, fit_model
from ..models import AbstractRecommender, SDiff
from .base import Figure, FigureData, draw, jsonable, matplotlib_figure, variant
from ..ranking import Progress, check_k
from ..spectral import spectrum
from ..training import TrainSettings

PAPER_RANKS = (50, 100, 200, 300, 400)
PAPER_ALPHA_MIN = (0.0, 0.1, 0.2)
PAPER_SIGMA_MAX = (0.3, 0.4, 0.5)


def _check_model(model: AbstractRecommender, figure: str) -> SDiff:
    if not isinstance(model, SDiff):
        raise ConfigError(f"{figure} studies S-Diff: give --model s-diff or an S-Diff preset, got {model.name!r}")
    return model


def _values(figure: str, setting: str, values: Sequence[Any], kind: type) -> list[Any]:
    values = list(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, kind) for v in values):
        raise ConfigError(f"{figure}: {setting} values must be {'integers' if kind is numbers.Integral else 'numbers'}, "
                          f"at least one, got {values!r}")
    return sorted({int(v) if kind is numbers.Integral else float(v) for v in values})


def _header(figure: str, model: SDiff, dataset: Dataset, k: int) -> FigureData:
    return {"figure": figure, "dataset": dataset.summary(), "k": k,
            "model": {"name": model.name, "config": jsonable(model.config())}}


def _trained_point(model: SDiff, dataset: Dataset, k: int, train: TrainSettings, batch_size: int) -> dict[str, Any]:
    """Train ``model`` early-stopped on validation; its validation and test metrics at ``k``, and the record."""
    fitted, record = fit_model(model, dataset, FitOptions(train=train, batch_size=batch_size))
    valid = evaluate(fitted, dataset, ks=(k,), batch_size=batch_size, split="valid").metrics
    test = evaluate(fitted, dataset, ks=(k,), batch_size=batch_size).metrics
    keep = ("epochs_run", "best_epoch", "seconds")
    return {"valid": {m: valid[f"{m}@{k}"] for m in ("recall", "ndcg")},
            "test": {m: test[f"{m}@{k}"] for m in ("recall", "ndcg")},
            "training": {key: record[key] for key in keep} if record else {}}


def _train_settings(train: TrainSettings | None) -> TrainSettings:
    return TrainSettings() if train is None else train


def fig3_data(
    model: AbstractRecommender, dataset: Dataset, k: int = 20, batch_size: int = 1024, progress: Progress | None = None,
    fits: Any = None, train: TrainSettings | None = None, n_times: int = 101,
) -> FigureData:
    """log SNR against t in (0, tau] for VP at the 5th, 25th, 50th, 75th and 100th percentile frequency, and DDPM."""
    model = _check_model(model, "sdiff-fig3")
    spec = spectrum(dataset.train, model.rank)
    d = np.clip(1.0 - spec.values**2, 0.0, 1.0)
    t = np.linspace(model.tau / n_times, model.tau, n_times)
    picks = {f"S-Diff-VP, d = {np.percentile(d, q):.3f} ({q}th pct.)": float(np.percentile(d, q))
             for q in (5, 25, 50, 75, 100)}
    curves: dict[str, list[float]] = {}
    vp = SCHEDULES["vp"](model.alpha_min, model.sigma_max, model.tau)
    for label, freq in picks.items():
        curves[label] = np.asarray(log_snr(vp, jnp.asarray(t), jnp.asarray([freq]))).ravel().tolist()
    ddpm = SCHEDULES["ddpm"](model.alpha_min, model.sigma_max, model.tau)
    curves["DDPM (isotropic)"] = np.asarray(log_snr(ddpm, jnp.asarray(t), jnp.asarray([1.0]))).ravel().tolist()
    return {**_header("sdiff-fig3", model, dataset, k), "t": t.tolist(), "log_snr": curves,
            "curve_frequency": {**picks, "DDPM (isotropic)": 1.0},
            "frequencies": {"min": float(d.min()), "median": float(np.median(d)), "max": float(d.max())}}


def fig7_data(
    model: AbstractRecommender, dataset: Dataset, k: int = 20, batch_size: int = 1024, progress: Progress | None = None,
    fits: Any = None, train: TrainSettings | None = None, rank_values: Sequence[int] = PAPER_RANKS,
) -> FigureData:
    """Validation and test metrics@k of S-Diff trained with each number of eigenvectors K."""
    model = _check_model(model, "sdiff-fig7")
    k = check_k(k, dataset.n_items)
    ranks = _values("sdiff-fig7", "rank", rank_values, numbers.Integral)
    models = [variant(model, "sdiff-fig7", rank=r) for r in ranks]
    points = [_trained_point(m, dataset, k, _train_settings(train), batch_size)
              for m in (progress(models, desc="sdiff-fig7", unit="model") if progress else models)]
    return {**_header("sdiff-fig7", model, dataset, k), "x": {"setting": "rank", "values": ranks}, "points": points}


def fig8_data(
    model: AbstractRecommender, dataset: Dataset, k: int = 20, batch_size: int = 1024, progress: Progress | None = None,
    fits: Any = None, train: TrainSettings | None = None, alpha_min_values: Sequence[float] = PAPER_ALPHA_MIN,
    sigma_max_values: Sequence[float] = PAPER_SIGMA_MAX,
) -> FigureData:
    """Validation and test metrics@k of S-Diff trained at each (alpha_min, sigma_max)."""
    model = _check_model(model, "sdiff-fig8")
    k = check_k(k, dataset.n_items)
    alphas = _values("sdiff-fig8", "alpha_min", alpha_min_values, numbers.Real)
    sigmas = _values("sdiff-fig8", "sigma_max", sigma_max_values, numbers.Real)
    grid = [variant(model, "sdiff-fig8", alpha_min=a, sigma_max=s) for a in alphas for s in sigmas]
    points = [_trained_point(m, dataset, k, _train_settings(train), batch_size)
              for m in (progress(grid, desc="sdiff-fig8", unit="model") if progress else grid)]
    return {**_header("sdiff-fig8", model, dataset, k), "alpha_min": alphas, "sigma_max": sigmas, "points": points}


def _caption(data: FigureData, omit: Sequence[str] = ()) -> str:
    """The dataset and the model's settings, those swept by the figure (``omit``) left out."""
    c = data["model"]["config"]
    ds = data["dataset"]
    parts = {"rank": f"K={c['rank']}", "steps": f"T={c['steps']}", "tau": f"τ={c['tau']:g}",
             "alpha_min": f"α_min={c['alpha_min']:g}", "sigma_max": f"σ_max={c['sigma_max']:g}",
             "fusion": c["fusion"], "guidance": f"guidance {c['guidance']:g}"}
    shown = ", ".join(v for key, v in parts.items() if key not in omit)
    return f"{ds['name']} ({ds['n_users']:,} users, {ds['n_items']:,} items) · S-Diff {c['schedule'].upper()}, {shown}"


def _figure(title: str, data: FigureData, size: tuple[float, float], omit: Sequence[str] = ()) -> Any:
    _, Figure = matplotlib_figure()
    fig = Figure(figsize=size, layout="constrained")
    fig.suptitle(title, fontweight="bold")
    fig.supxlabel(_caption(data, omit), fontsize=9, color="0.25")
    return fig


def plot_fig3(data: FigureData, stem: str | Path) -> list[Path]:
    def build() -> Any:
        fig = _figure("log SNR of the forward process (S-Diff Fig. 3)", data, (7.5, 4.8))
        ax = fig.subplots()
        for label, values in data["log_snr"].items():
            style = {"color": "black", "linestyle": "--"} if label.startswith("DDPM") else {}
            ax.plot(data["t"], values, label=label, **style)
        ax.set(xlabel="t", ylabel="log SNR = log(α_t² / σ_t²)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return fig

    return draw(stem, build)


def plot_fig7(data: FigureData, stem: str | Path) -> list[Path]:
    k, xs = data["k"], data["x"]["values"]

    def build() -> Any:
        fig = _figure("Recall against the number of eigenvectors K (S-Diff Fig. 7)", data, (7.5, 4.6), omit=("rank",))
        ax = fig.subplots()
        for split, color in (("test", "#1f77b4"), ("valid", "#ff7f0e")):
            ax.plot(xs, [p[split]["recall"] for p in data["points"]], marker="o", color=color, label=f"{split} Recall@{k}")
        ax.set(xlabel="K (eigenvectors kept)", ylabel=f"Recall@{k}")
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
        ax.legend()
        return fig

    return draw(stem, build)


def plot_fig8(data: FigureData, stem: str | Path) -> list[Path]:
    k, alphas, sigmas = data["k"], data["alpha_min"], data["sigma_max"]

    def build() -> Any:
        fig = _figure("Recall over α_min × σ_max (S-Diff Fig. 8)", data, (10.0, 4.4), omit=("alpha_min", "sigma_max"))
        axes = fig.subplots(1, 2)
        for ax, split in zip(axes, ("valid", "test")):
            grid = np.array([p[split]["recall"] for p in data["points"]]).reshape(len(alphas), len(sigmas))
            im = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
            middle = (grid.min() + grid.max()) / 2
            for i in range(len(alphas)):
                for j in range(len(sigmas)):
                    ax.text(j, i, f"{grid[i, j]:.4f}", ha="center", va="center", fontsize=8,
                            color="black" if grid[i, j] > middle else "white")
            ax.set_xticks(range(len(sigmas)), [f"{s:g}" for s in sigmas])
            ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
            ax.set(xlabel="σ_max", ylabel="α_min", title=f"{split} Recall@{k}")
            fig.colorbar(im, ax=ax)
        return fig

    return draw(stem, build)


def snr_summary(data: FigureData) -> str:
    """Figure 3: how many log-SNR curves, over which t and frequencies."""
    f = data["frequencies"]
    return (f"log SNR of {len(data['log_snr'])} curves over t in (0, {data['t'][-1]:g}]; "
            f"frequencies d from {f['min']:.3f} to {f['max']:.3f}")


def points_summary(data: FigureData) -> str:
    """Figures 7 and 8: validation and test recall at each point trained."""
    labels = ([f"K={r}" for r in data["x"]["values"]] if "x" in data else
              [f"α_min={a:g} σ_max={s:g}" for a in data["alpha_min"] for s in data["sigma_max"]])
    return "  ".join(f"{label}: valid R {p['valid']['recall']:.4f} test R {p['test']['recall']:.4f}"
                     for label, p in zip(labels, data["points"]))


FIGURES: dict[str, Figure] = {
    "sdiff-fig3": Figure(fig3_data, plot_fig3, snr_summary),
    "sdiff-fig7": Figure(fig7_data, plot_fig7, points_summary, sweeps=("rank_values",), trained=True),
    "sdiff-fig8": Figure(fig8_data, plot_fig8, points_summary, sweeps=("alpha_min_values", "sigma_max_values"),
                         trained=True),
}
"""S-Diff's figures by name."""


__all__ = ["FIGURES", "fig3_data", "fig7_data", "fig8_data", "plot_fig3", "plot_fig7", "plot_fig8"]
