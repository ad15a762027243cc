"""The public API: what ``bspm_jax.__all__`` holds, and the package docstring's example run as written."""

from __future__ import annotations

import os
import re

import jax.numpy as jnp
import numpy as np

import bspm_jax


def test_public_names_exist_and_building_blocks_stay_in_their_packages():
    assert len(set(bspm_jax.__all__)) == len(bspm_jax.__all__)
    for name in bspm_jax.__all__:
        assert hasattr(bspm_jax, name), name
    for internal in ("Gram", "Dense", "LowRank", "SparseMatrix", "HeatBlur", "AbstractOperator", "RK4", "rank_rows"):
        assert internal not in bspm_jax.__all__
    from bspm_jax.filtering.filters import HeatBlur  # noqa: F401
    from bspm_jax.filtering.operators import Dense, Gram, LowRank, SparseMatrix  # noqa: F401
    from bspm_jax.filtering.solvers import RK4, Dopri5, Euler  # noqa: F401
    from bspm_jax.ranking import rank_rows  # noqa: F401
    from bspm_jax.spectral import truncated_svd  # noqa: F401


def test_package_docstring_example_runs_as_written(tmp_path):
    code = "\n".join(line[4:] for line in bspm_jax.__doc__.split("::")[1].split("\n\n")[1].splitlines())
    code = code.replace("BSPM(rank=256)", "BSPM(rank=32)")  # the same steps, a smaller SVD
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        exec(compile(code, "bspm_jax.__doc__", "exec"), scope)
    finally:
        os.chdir(here)
    items, scores = np.asarray(scope["items"]), np.asarray(scope["scores"])
    model, data = scope["model"], scope["data"]
    rows = data.train[[0, 1, 2]].toarray()
    full = np.array(model.score(jnp.asarray(rows)))  # brute force: every item's score, seen ones out
    full[rows > 0] = -np.inf
    np.testing.assert_allclose(scores, -np.sort(-full, axis=1)[:, :20], rtol=1e-5)  # the 20 best, best first
    np.testing.assert_allclose(np.take_along_axis(full, items, axis=1), scores, rtol=1e-5)
    assert not (rows[np.arange(3)[:, None], items] > 0).any()
    again = bspm_jax.load_model(tmp_path / "bspm-sample")
    items2, _ = bspm_jax.ranking.recommend_indices(again, data.train, users=[0, 1, 2], k=20)
    assert np.array_equal(np.asarray(items2), items)
    assert re.search(r"from bspm_jax import .*recommend", code)


def test_every_model_setting_is_documented_one_line_each_in_its_docstring():
    import inspect

    from bspm_jax.models import MODELS

    for cls in {c for c, _ in MODELS.values()}:
        doc = inspect.getdoc(cls) or ""
        names = cls.setting_names()
        section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
        entries = [line.split(":", 1) for line in section.splitlines()
                   if line.startswith("    ") and not line.startswith("     ") and ":" in line]
        documented = [key.strip() for key, text in entries if key.strip().isidentifier()]
        assert documented == names, (cls.__name__, documented, names)  # every setting, in field order, once
        assert all(text.strip() for key, text in entries), cls.__name__  # each says what it does
