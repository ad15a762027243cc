"""Two processes on 127.0.0.1 (JAX's coordinator and Gloo collectives), two CPU devices each,
score the shipped sample together: the merged top-k equals one process's, bit for bit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from bspm_jax import ConfigError, evaluate, make_model
from bspm_jax.cli import main
from bspm_jax.runtime.distributed import check_address
from bspm_jax.ranking import rank_rows

from guarantee import assert_bit_identical
from helpers import sample

TIMEOUT_S = 300
SETTINGS = {"rank": 48}

SCRIPT = r"""
import json, sys
import numpy as np
from bspm_jax.runtime import distributed
distributed.initialize(sys.argv[1], 2, int(sys.argv[2]), timeout_s=120)
import jax
from bspm_jax import load_sample, make_model
from bspm_jax.ranking import rank_rows
data = load_sample()
model = make_model("bspm", **json.loads(sys.argv[4])).fit(data.train)
r = rank_rows(model, data.train, 20, 500, devices=2)
np.savez(sys.argv[3], items=r.items, scores=r.scores, processes=jax.process_count(),
         devices=jax.device_count(), local=jax.local_device_count())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_processes(commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Start every command at once (2 CPU devices each), wait up to TIMEOUT_S, kill what is left."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for c in commands]
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT_S)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return done


def test_two_processes_merge_to_one_process_top_k(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    outs = [tmp_path / f"p{i}.npz" for i in range(2)]
    done = _run_processes([[sys.executable, "-c", SCRIPT, address, str(i), str(outs[i]), json.dumps(SETTINGS)]
                           for i in range(2)])
    for d in done:
        assert d.returncode == 0, d.stderr[-3000:]
    data = sample()
    one = rank_rows(make_model("bspm", **SETTINGS).fit(data.train), data.train, 20, 500)
    for out in outs:  # every process holds the whole merged ranking
        got = np.load(out)
        assert (int(got["processes"]), int(got["devices"]), int(got["local"])) == (2, 4, 2)
        assert_bit_identical(got["items"], got["scores"], one.items, one.scores, msg=str(out))


def test_cli_run_across_two_processes(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    jsons = [tmp_path / f"r{i}.json" for i in range(2)]
    cli = [sys.executable, "-m", "bspm_jax", "run", "--model", "bspm", "--set", "rank=48", "--devices", "2",
           "--batch-size", "500", "--quiet", "--coordinator", address, "--num-processes", "2"]
    done = _run_processes([[*cli, "--process-id", str(i), "--json", str(jsons[i])] for i in range(2)])
    for d in done:
        assert d.returncode == 0, d.stderr[-3000:]
    assert "recall" in done[0].stdout and done[1].stdout == ""  # process 0 reports for both
    assert not jsons[1].exists()
    result = json.loads(jsons[0].read_text())
    assert result["environment"]["process_count"] == 2 and result["environment"]["device_count"] == 4
    data = sample()
    want = evaluate(make_model("bspm", rank=48).fit(data.train), data, ks=(10, 20), batch_size=500)
    assert result["metrics"] == want.metrics


@pytest.mark.parametrize("address", ["localhost", "host:0", "host:70000", ":80", "a b:1"])
def test_bad_coordinator_address(address):
    with pytest.raises(ConfigError, match="HOST:PORT"):
        check_address(address)


def test_cli_multi_process_errors(capsys):
    assert main(["run", "--coordinator", "127.0.0.1:1234", "--quiet"]) == 2
    assert "--coordinator, --num-processes and --process-id together" in capsys.readouterr().err
    assert main(["run", "--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"]) == 2
    assert "process_id must be in 0..1" in capsys.readouterr().err
    port = _free_port()  # nobody serves it: process 1 gives up after the join timeout, with one line
    assert main(["run", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "1",
                 "--join-timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bspm: error: no coordinator answered") and err.count("\n") == 1


def test_recommend_export_across_two_processes(tmp_path):
    """Each process writes its share of every user's top-k from one saved model; together they are one process's."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u:03d}", f"i{i:02d}") for u in range(90) for i in rng.choice(40, rng.integers(3, 10), replace=False)]
    (tmp_path / "plays.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    saved = tmp_path / "model"
    assert main(["fit", "--data", str(tmp_path / "plays.csv"), "--user-col", "user", "--item-col", "item",
                 "--split", "none", "--set", "rank=8", "--save", str(saved), "--quiet"]) == 0
    one = tmp_path / "one.parquet"
    new = ["--history", "i01,i02", "--history", "i03"]  # new users: last in the one file, so in the last share
    assert main(["recommend", "--load", str(saved), "--users", "all", *new, "--k", "5", "--out", str(one), "--quiet"]) == 0
    address = f"127.0.0.1:{_free_port()}"
    done = _run_processes([[sys.executable, "-m", "bspm_jax", "recommend", "--load", str(saved), "--users", "all",
                            *new, "--k", "5", "--out", str(tmp_path / "recs.parquet"), "--quiet", "--coordinator", address,
                            "--num-processes", "2", "--process-id", str(i)] for i in range(2)])
    for d in done:
        assert d.returncode == 0, d.stderr[-3000:]
    import pandas as pd

    parts = [pd.read_parquet(tmp_path / f"recs-0000{i}-of-00002.parquet") for i in range(2)]
    assert [p.user.nunique() for p in parts] == [45, 47] and not set(parts[0].user) & set(parts[1].user)
    assert parts[1].user.tolist()[-10:] == ["new1"] * 5 + ["new2"] * 5
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), pd.read_parquet(one))
    for i, d in enumerate(done):  # each process names the file it wrote
        users = 45 + 2 * i
        assert d.stdout.startswith(f"wrote {tmp_path / f'recs-0000{i}-of-00002.parquet'}: top-5 items for {users} users")
