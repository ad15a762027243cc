"""Frequency responses of spectral filters side by side, over the eigenvalue density of the data.

``response_data`` fits each model on the train split and reads its response ``h(s^2)``
from its own scoring code on the diagonal graph
(:meth:`bspm_jax.models.AbstractSpectralFilter.response`) at a grid of ``s^2`` in [0, 1];
ranking ignores a positive factor, so each response is also shown divided by its largest
magnitude. Beneath, the density of the eigenvalues ``s^2`` of ``P~`` over the whole
catalogue, by the kernel polynomial method (Chebyshev moments of ``L~ = I - 2 P~`` from
seeded Rademacher probes, Jackson damping); dotted lines mark where each model's ideal
low-pass stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..filtering.chebyshev import chebyshev_moments, jackson_density
from ..data import Dataset
from ..errors import ConfigError
from ..models import AbstractRecommender, AbstractSpectralFilter, FitCache
from ..filtering.operators import Identity
from .base import FORMATS, FigureData, draw, matplotlib_figure
from ..spectral import SpectrumCache

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def eigenvalue_density(model: AbstractSpectralFilter, grid: np.ndarray, order: int = 256, probes: int = 32,
                       seed: int = 0) -> np.ndarray:
    """Density of the eigenvalues ``s^2`` of the fitted ``P~`` at ``grid`` (KPM on ``L~``, ``probes`` Rademacher rows)."""
    gram = model.graph.gram
    n = model.fitted_on.n_items
    z = jax.random.rademacher(jax.random.PRNGKey(seed), (probes, n), jnp.float32)
    moments = chebyshev_moments(Identity() - 2.0 * gram, z, order)
    return 2.0 * jackson_density(moments, 1.0 - 2.0 * np.asarray(grid))  # x = 1 - 2 s^2: dx/ds^2 = -2


def response_data(
    models: Sequence[tuple[str, AbstractRecommender]], dataset: Dataset, points: int = 401, order: int = 256,
    probes: int = 32, seed: int = 0, fits: FitCache | None = None, spectra: SpectrumCache | None = None,
) -> FigureData:
    """Each labelled model's response on a grid of ``points`` values of ``s^2`` in [0, 1], and the data's eigenvalue density."""
    if not models:
        raise ConfigError("the response figure needs at least one model")
    for label, model in models:
        if not isinstance(model, AbstractSpectralFilter):
            raise ConfigError(f"{label}: the {model.name} model is not a linear filter of P~, it has no frequency response; "
                              "spectral filters: bspm, gf-cf, blur-*, lgcn-ide, chebycf")
    fits = FitCache(spectra) if fits is None else fits
    grid = np.linspace(0.0, 1.0, points)
    curves = []
    for label, model in models:
        fitted = fits.fit(model, dataset.train)
        h = np.asarray(fitted.response(grid), np.float64)
        peak = float(np.abs(h).max()) or 1.0
        curves.append({"label": label, "model": fitted.name, "config": fitted.config(), "response": h.tolist(),
                       "normalized": (h / peak).tolist(), "peak": peak, "ideal_cutoff": fitted.ideal_cutoff()})
    middles = 0.5 * (grid[1:] + grid[:-1])  # the density's 1 / sqrt(1 - x^2) factor is infinite at the ends
    density = eigenvalue_density(fits.fit(models[0][1], dataset.train), middles, order, probes, seed)
    return {
        "figure": "response", "dataset": dataset.summary(), "s2": grid.tolist(), "curves": curves,
        "density": {"s2": middles.tolist(), "values": density.tolist(), "method": f"KPM, {order} Chebyshev moments, {probes} probes, seed {seed}"},
    }


def plot_response(data: FigureData, stem: str | Path) -> list[Path]:
    """Normalised responses against ``s^2`` (top), the eigenvalue density on a log scale (bottom)."""
    _, Figure = matplotlib_figure()

    def build() -> Any:
        fig = Figure(figsize=(7.5, 6.0), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1.0))
        x = np.asarray(data["s2"])
        for i, curve in enumerate(data["curves"]):
            color = COLORS[i % len(COLORS)]
            top.plot(x, curve["normalized"], color=color, lw=1.8, label=curve["label"])
            if curve["ideal_cutoff"] is not None:  # where the ideal low-pass stops
                top.axvline(curve["ideal_cutoff"], color=color, lw=0.8, ls=":")
        top.axhline(0.0, color="0.6", lw=0.8)
        top.set_ylabel("response h(σ²) / max |h|")
        top.legend(loc="best", fontsize=9)
        ds = data["dataset"]
        top.set_title(f"Frequency responses on {ds['name']} ({ds['n_users']:,} users, {ds['n_items']:,} items)",
                      fontweight="bold")
        density = np.asarray(data["density"]["values"])
        bottom.fill_between(data["density"]["s2"], np.maximum(density, 1e-6), 1e-6, color="0.75",
                            label="all eigenvalues (KPM)")
        bottom.set_yscale("log")
        bottom.set_ylim(1e-6, max(float(density.max()) * 2, 1e-3))
        bottom.set_xlabel("σ² (eigenvalue of P̃ = R̃ᵀR̃; 1 = lowest frequency)")
        bottom.set_ylabel("density")
        bottom.legend(loc="upper right", fontsize=8)
        bottom.set_xlim(0.0, 1.0)
        return fig

    return draw(stem, build)


__all__ = ["FORMATS", "eigenvalue_density", "plot_response", "response_data"]
