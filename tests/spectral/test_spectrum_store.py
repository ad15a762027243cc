"""The spectrum cache on disk: hits, misses, refusals of damaged entries, concurrent writers, the size limit, the CLI."""

import multiprocessing
import os
import sys

import numpy as np
import pytest

from bspm_jax import spectral
from bspm_jax.data.sparse import matrix_digest
from bspm_jax.data.synthetic import power_law_interactions
from bspm_jax.spectral import SpectrumCache, SpectrumStore, svd


@pytest.fixture
def train():
    return power_law_interactions(400, 300, 3000, seed=5)


def _counting(monkeypatch):
    calls = []
    real = svd.truncated_svd

    def counted(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(sys.modules["bspm_jax.spectral.spectrum"], "truncated_svd", counted)
    return calls


def test_a_second_cache_on_the_same_folder_reads_the_spectrum_instead_of_computing_it(train, tmp_path, monkeypatch):
    calls = _counting(monkeypatch)
    first = SpectrumCache(SpectrumStore(tmp_path)).spectrum(train, 16)
    second = SpectrumCache(SpectrumStore(tmp_path)).spectrum(train, 16)
    assert calls == [16]
    for name in ("values", "vectors", "user_degree", "item_degree"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    expected = spectral.spectrum(train, 16)  # no store: computed afresh, same numbers
    np.testing.assert_array_equal(first.vectors, expected.vectors)
    # Another rank, solver or tolerance, or other content, is another entry.
    SpectrumCache(SpectrumStore(tmp_path)).spectrum(train, 8)
    SpectrumCache(SpectrumStore(tmp_path)).spectrum(train, 16, "arpack")
    SpectrumCache(SpectrumStore(tmp_path)).spectrum(train, 16, tol=1e-6)
    SpectrumCache(SpectrumStore(tmp_path)).spectrum(power_law_interactions(400, 300, 3000, seed=6), 16)
    assert calls == [16, 16, 8, 16, 16, 16] and len(SpectrumStore(tmp_path).entries()) == 5


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "other-key", "empty"])
def test_a_damaged_entry_is_refused_recomputed_and_replaced(train, tmp_path, monkeypatch, damage):
    store = SpectrumStore(tmp_path)
    good = SpectrumCache(store).spectrum(train, 16)
    key = store.key(matrix_digest(train), 16, "auto", svd.DEFAULT_TOL)
    path = store.path(key)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "other-key":  # a whole, valid entry of another key, under this key's name
        other = store.key(matrix_digest(train), 8, "auto", svd.DEFAULT_TOL)
        SpectrumCache(store).spectrum(train, 8)
        path.write_bytes(store.path(other).read_bytes())
    else:
        path.write_bytes(b"")
    assert store.load(key) is None
    calls = _counting(monkeypatch)
    again = SpectrumCache(store).spectrum(train, 16)
    assert calls == [16]
    np.testing.assert_array_equal(again.vectors, good.vectors)
    assert store.load(key) is not None  # replaced by a whole entry


def _write(folder, seed):
    train = power_law_interactions(400, 300, 3000, seed=5)
    store = SpectrumStore(folder)
    spec = spectral.spectrum(train, 16)
    for _ in range(20):
        store.save(store.key(matrix_digest(train), 16, "auto", svd.DEFAULT_TOL), spec)


def test_concurrent_writers_of_one_key_leave_one_whole_entry(train, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write, args=(tmp_path, s)) for s in range(3)]
    for p in procs:
        p.start()
    store = SpectrumStore(tmp_path)
    key = store.key(matrix_digest(train), 16, "auto", svd.DEFAULT_TOL)
    seen = 0
    while any(p.is_alive() for p in procs):
        if store.path(key).exists():
            assert store.load(key) is not None  # a reader never sees a partial file
            seen += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert store.load(key) is not None
    assert [p.name for p in tmp_path.iterdir()] == [store.path(key).name]  # no temporary file left behind


def test_the_folder_is_trimmed_to_its_size_limit_least_recently_used_first(train, tmp_path):
    store = SpectrumStore(tmp_path)
    SpectrumCache(store).spectrum(train, 16)
    one = store.entries()[0].stat().st_size
    small = SpectrumStore(tmp_path, max_bytes=int(2.5 * one))
    keys = [small.key(matrix_digest(train), 16, "auto", svd.DEFAULT_TOL)]
    for seed in (6, 7):
        other = power_law_interactions(400, 300, 3000, seed=seed)
        os.utime(small.path(keys[0]), (1, 1)) if seed == 7 else None  # make the first entry the least recently used
        SpectrumCache(small).spectrum(other, 16)
        keys.append(small.key(matrix_digest(other), 16, "auto", svd.DEFAULT_TOL))
    assert small.load(keys[0]) is None and small.load(keys[1]) is not None and small.load(keys[2]) is not None
    assert sum(p.stat().st_size for p in small.entries()) <= 2.5 * one
    tiny = SpectrumStore(tmp_path / "tiny", max_bytes=10)  # an entry larger than the limit is not stored
    SpectrumCache(tiny).spectrum(train, 16)
    assert tiny.entries() == []


def test_an_unwritable_folder_is_no_cache(train, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    spec = SpectrumCache(SpectrumStore(blocked / "spectra")).spectrum(train, 16)
    assert spec.rank == 16


def test_the_cli_keeps_spectra_unless_no_cache(tmp_path, monkeypatch, capsys):
    from bspm_jax.cli import main

    monkeypatch.setenv("BSPM_CACHE_DIR", str(tmp_path / "cache"))
    calls = _counting(monkeypatch)
    args = ["run", "--model", "bspm", "--set", "rank=32", "--quiet"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert calls == [32] and len(SpectrumStore(tmp_path / "cache").entries()) == 1
    assert main(args + ["--no-cache"]) == 0
    assert calls == [32, 32]
    metrics = lambda out: [line for line in out.splitlines() if line.startswith(("recall", "ndcg"))]  # noqa: E731
    assert metrics(capsys.readouterr().out.split("model")[1]) == metrics(first)
