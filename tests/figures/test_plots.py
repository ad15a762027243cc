"""Paper figures: data against independent evaluations and a brute-force hit count; PNG/SVG output."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from bspm_jax import evaluate, make_model
from bspm_jax.models import FitCache
from bspm_jax.errors import ConfigError
from bspm_jax.figures.bspm import (
    BLUR_ONLY,
    BLUR_SHARPEN,
    FIGURES,
    fig5_data,
    fig6_data,
    fig8_data,
    fig10_data,
    make_figure,
    plot_fig5,
    plot_fig6,
    plot_fig8,
    plot_fig10,
)
from helpers import sample

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SETTINGS = {"rank": 32, "blur": "heat", "T_b": 1.0, "beta": 0.2, "sharpen_solver": "rk4", "T_s": 2.5, "K_s": 1}
PLOTS = {"fig5": plot_fig5, "fig6": plot_fig6, "fig8": plot_fig8, "fig10": plot_fig10}


@pytest.fixture(scope="module")
def dataset():
    return sample()


@pytest.fixture(scope="module")
def model():
    return make_model("bspm", **SETTINGS)


@pytest.fixture(scope="module")
def fits():
    return FitCache()


@pytest.fixture(scope="module")
def figures(model, dataset, fits):
    """The four figures' data on the sample, computed once (one shared fit)."""
    calls = []

    def progress(iterable, desc=None, unit=None):
        calls.append((desc, unit))
        return iterable

    out = {
        "fig5": fig5_data(model, dataset, [2.5, 1.5], progress=progress, fits=fits),
        "fig6": fig6_data(model, dataset, [2, 1], progress=progress, fits=fits),
        "fig8": fig8_data(model, dataset, progress=progress, fits=fits),
        "fig10": fig10_data(model, dataset, progress=progress, fits=fits),
    }
    out["progress_calls"] = calls
    return out


def fresh_metrics(dataset, **settings):
    return evaluate(make_model("bspm", **{**SETTINGS, **settings}).fit(dataset.train), dataset, ks=(20,)).metrics


def test_fits_shared_and_progress_called(figures, fits):
    assert len(fits) == 1  # every model of the four figures shares the one SVD of rank 32
    assert figures["progress_calls"] == [("T_s", "point"), ("K_s", "point"), ("fig8", "model"), ("fig10", "model")]


@pytest.mark.parametrize("figure,setting,values", [("fig5", "T_s", [1.5, 2.5]), ("fig6", "K_s", [1, 2])])
def test_sweeps_equal_fresh_evaluations(figures, dataset, figure, setting, values):
    data = figures[figure]
    assert data["x"] == {"setting": setting, "values": values}  # sorted
    for i, value in enumerate(values):
        expected = fresh_metrics(dataset, **{setting: value})
        assert set(data["metrics"]) == set(expected)
        for name, v in expected.items():
            assert data["metrics"][name][i] == pytest.approx(v, abs=1e-6), (name, value)


def test_fig8_blur_only_and_sharpened(figures, dataset):
    data = figures["fig8"]
    assert data["variants"] == [BLUR_ONLY, BLUR_SHARPEN]
    blur_only = fresh_metrics(dataset, sharpen=False)
    sharpened = figures["fig5"]["metrics"]  # T_s = 2.5 is the second point of fig5
    for name in ("recall@20", "ndcg@20", "novelty@20", "coverage@20"):
        assert data["metrics"][name][0] == pytest.approx(blur_only[name], abs=1e-6)
        assert data["metrics"][name][1] == pytest.approx(sharpened[name][1], abs=1e-6)
    assert data["metrics"]["recall@20"][0] != data["metrics"]["recall@20"][1]


def brute_force_hit_degrees(model, dataset):
    """Degrees of the top-20 items that are test items, user by user, from the train column sums."""
    ev = evaluate(model.fit(dataset.train), dataset, ks=(20,))
    degree = np.asarray(dataset.train.sum(axis=0)).ravel().astype(int)
    out = []
    for row, u in enumerate(ev.users):
        top = [int(i) for i, s in zip(ev.ranking.items[row], ev.ranking.scores[row]) if np.isfinite(s)]
        truth = set(dataset.test[u].indices.tolist())
        out += [degree[i] for i in set(top) & truth]
    return sorted(out)


def test_fig10_hit_degrees_brute_force(figures, dataset):
    data = figures["fig10"]
    for label, settings in ((BLUR_ONLY, {"sharpen": False}), (BLUR_SHARPEN, {})):
        h = data["hit_degrees"][label]
        got = sorted(np.repeat(h["degree"], h["hits"]).tolist())
        expected = brute_force_hit_degrees(make_model("bspm", **{**SETTINGS, **settings}), dataset)
        assert got == expected
        assert h["n_hits"] == len(expected) > 0
        assert h["median_degree"] == pytest.approx(np.median(expected))
    assert data["item_degrees"]["max"] == int(dataset.train.sum(axis=0).max())


def test_data_is_json_and_labelled(figures):
    for name in FIGURES:
        data = figures[name]
        assert json.loads(json.dumps(data)) == data
        assert data["figure"] == name and data["k"] == 20
        assert data["dataset"]["name"] == "gowalla-sample"
        assert data["model"]["config"]["T_s"] == 2.5


def check_outputs(paths, stem):
    assert [p.name for p in paths] == [f"{stem.name}.png", f"{stem.name}.svg"]
    png, svg = paths
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 10_000
    text = svg.read_text()
    assert "<svg" in text
    assert ET.fromstring(text).tag.endswith("svg")


@pytest.mark.parametrize("name", list(PLOTS))
def test_plot_writes_png_and_svg(figures, tmp_path, name):
    stem = tmp_path / name
    paths = PLOTS[name](figures[name], stem)
    check_outputs(paths, stem)
    assert "gowalla-sample" in paths[1].read_text()  # the caption names the dataset
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.png", f"{name}.svg"]  # no temporaries left
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in paths)  # not mkstemp's private 0600


def test_missing_folder_creates_nothing(figures, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        plot_fig8(figures["fig8"], tmp_path / "missing" / "fig8")
    assert not (tmp_path / "missing").exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_render_keeps_existing_files(figures, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    stem = tmp_path / "fig8"
    old = {ext: f"old {ext}".encode() for ext in ("png", "svg")}
    for ext, content in old.items():
        (tmp_path / f"fig8.{ext}").write_bytes(content)
        (tmp_path / f"fig8.{ext}").chmod(0o640)

    real_savefig = Figure.savefig

    def failing_svg(self, fname, *args, format=None, **kw):
        if format == "svg":
            raise RuntimeError("render failed")
        return real_savefig(self, fname, *args, format=format, **kw)

    monkeypatch.setattr(Figure, "savefig", failing_svg)
    with pytest.raises(RuntimeError, match="render failed"):
        plot_fig8(figures["fig8"], stem)
    # the PNG rendered fine but neither file is replaced, and no temporary file is left
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {f"fig8.{e}": c for e, c in old.items()}
    monkeypatch.undo()
    paths = plot_fig8(figures["fig8"], stem)
    check_outputs(paths, stem)
    assert all(p.stat().st_mode & 0o777 == 0o640 for p in paths)  # the replaced files' mode is kept


def test_missing_matplotlib_is_a_config_error(figures, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ConfigError, match=r"pip install 'bspm-jax\[plot\]'"):
        plot_fig5(figures["fig5"], tmp_path / "fig5")
    assert list(tmp_path.iterdir()) == []


def test_make_figure(model, dataset, fits, tmp_path):
    data, paths = make_figure("fig8", model, dataset, tmp_path, fits=fits)
    assert [p.name for p in paths] == ["fig8.png", "fig8.svg", "fig8.json"]
    assert json.loads(paths[2].read_text()) == data
    check_outputs(paths[:2], tmp_path / "fig8")


def test_make_figure_errors_before_computing(model, dataset, tmp_path, monkeypatch):
    unfittable = make_model("bspm", **SETTINGS)
    monkeypatch.setattr(type(unfittable), "fit", lambda *a: pytest.fail("fitted before checking"))
    with pytest.raises(ConfigError, match="unknown figure 'fig7'; available: fig5, fig6, fig8, fig10"):
        make_figure("fig7", unfittable, dataset, tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        make_figure("fig5", unfittable, dataset, tmp_path / "missing")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m, d: fig5_data(m, d, []), "at least one"),
        (lambda m, d: fig5_data(m, d, ["2"]), "must be numbers"),
        (lambda m, d: fig6_data(m, d, [1.5]), "must be integers"),
        (lambda m, d: fig6_data(m, d, [0]), "K_s=0"),
        (lambda m, d: fig5_data(m, d, [2.0], k=0), "k must be"),
        (lambda m, d: fig8_data(make_model("popularity"), d), "needs a BSPM model"),
        (lambda m, d: fig10_data(make_model("bspm", **{**SETTINGS, "sharpen": False}), d), "sharpen=false"),
    ],
)
def test_bad_settings_fail_before_fitting(model, dataset, call, match, monkeypatch):
    monkeypatch.setattr(type(model), "fit", lambda *a: pytest.fail("fitted before validating"))
    with pytest.raises(ConfigError, match=match):
        call(model, dataset)
