"""User batches sharded across devices, and determinism across runs, batch sizes and device counts.

Multi-device runs use XLA's host-platform device count, which must be set before JAX starts,
so they run in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bspm_jax import load_sample, make_model
from bspm_jax.models.base import rank_rows

SCRIPT = r"""
import json, sys
import numpy as np
from bspm_jax import evaluate, get_preset, load_sample, make_model
from bspm_jax.models.base import rank_rows
data = load_sample()
settings = {**get_preset("gowalla-em").model_settings, "rank": 48}
model = make_model("bspm", **settings).fit(data.train)
out = {}
for devices, batch in [(None, 512), (2, 512), (4, 512), (3, 1000), (4, 100)]:
    r = rank_rows(model, data.train, 20, batch, devices=devices)
    out[f"{devices}-{batch}"] = {"items": r.items.tolist(), "scores": r.scores.tolist()}
ev = evaluate(model, data, ks=(20,), batch_size=512, devices=4)
out["metrics4"] = ev.metrics
out["metrics1"] = evaluate(model, data, ks=(20,), batch_size=512).metrics
json.dump(out, sys.stdout)
"""


def test_sharded_scores_equal_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    ref = out.pop("None-512")
    m1, m4 = out.pop("metrics1"), out.pop("metrics4")
    assert m1 == m4
    for key, got in out.items():  # bit-identical top-k lists and scores on 2-4 devices and other batch sizes
        np.testing.assert_array_equal(got["items"], ref["items"], err_msg=key)
        assert got["scores"] == ref["scores"], key


def test_device_count_errors():
    from bspm_jax import ConfigError

    data = load_sample()
    model = make_model("popularity").fit(data.train)
    with pytest.raises(ConfigError, match="devices must be in 1.."):
        rank_rows(model, data.train[:10], 5, devices=99)


def test_top_k_is_deterministic_across_runs_and_batch_sizes():
    """The same input gives bit-identical top-k lists and scores in 3 runs and at 5 batch sizes (BSPM-EM, RK4)."""
    data = load_sample()
    model = make_model("bspm", rank=48).fit(data.train)
    runs = [rank_rows(model, data.train, 20, 1024) for _ in range(3)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r.items, runs[0].items)
        np.testing.assert_array_equal(r.scores, runs[0].scores)
    for batch in (1, 64, 333, 1000, 7183):
        r = rank_rows(model, data.train[:2000] if batch == 1 else data.train, 20, batch)
        np.testing.assert_array_equal(r.items, runs[0].items[: len(r.items)])
        np.testing.assert_array_equal(r.scores, runs[0].scores[: len(r.scores)])
    refit = make_model("bspm", rank=48).fit(data.train)  # the SVD is seeded: the same fit again
    np.testing.assert_array_equal(rank_rows(refit, data.train, 20, 1024).items, runs[0].items)


def test_cli_devices_and_auto_batch(tmp_path):
    """`bspm run --devices 2 --batch-size auto` reports the same metrics as one device."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    results = []
    for extra in (["--devices", "2", "--batch-size", "auto"], ["--batch-size", "1000"]):
        out = tmp_path / f"r{len(results)}.json"
        proc = subprocess.run([sys.executable, "-m", "bspm_jax", "run", "--model", "bspm", "--set", "rank=16", *extra,
                               "--json", str(out), "--quiet"], capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(out.read_text()))
    assert results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["config"]["evaluation"]["devices"] == 2 and results[0]["environment"]["device_count"] == 2
    proc = subprocess.run([sys.executable, "-m", "bspm_jax", "run", "--devices", "3", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 2 and "devices must be in 1..2" in proc.stderr
