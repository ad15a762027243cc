"""Tests of bspm_jax.data.fetch: downloads from a local HTTP server, verification, the cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bspm_jax.data import fetch
from bspm_jax.data.fetch import (
    DATASETS, DEFAULT_BASE_URL, DatasetSpec, cached_dataset, dataset_urls, default_cache_dir,
    fetch_dataset, pairs_digest, verify_dataset,
)
from bspm_jax.errors import ConfigError, DataError
from helpers import SHARED_DATA

BY_HAND = "by hand"


def _shared_data() -> Path | None:
    """The shared data folder holding gowalla/, or None when it is not available."""
    candidates = [SHARED_DATA]
    if os.environ.get("BSPM_SHARED_DATA"):
        candidates.append(Path(os.environ["BSPM_SHARED_DATA"]))
    for c in candidates:
        if all((c / "gowalla" / f).is_file() for f in ("train.txt", "test.txt")):
            return c
    return None


SHARED = _shared_data()
needs_gowalla = pytest.mark.skipif(
    SHARED is None, reason="shared Gowalla data (../shared/data/gowalla) not found; "
    "the full-size download tests need it"
)

TINY_TRAIN = "0 0 1\n1 1 2\n2 0 2 3\n"
TINY_TEST = "0 2\n1 3\n2 1\n"
TINY_TRAIN_PAIRS = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 0), (2, 2), (2, 3)]
TINY_TEST_PAIRS = [(0, 2), (1, 3), (2, 1)]


@dataclasses.dataclass
class Server:
    """A running local HTTP server: base URL, GET paths served so far, and a stop()."""

    url: str
    requests: list[str]
    stop: Callable[[], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Path], Server]]:
    """Start HTTP servers for folders; every one is shut down after the test."""
    stops: list[Callable[[], None]] = []

    def start(directory: Path) -> Server:
        requests: list[str] = []

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(directory)))
        thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        stopped = threading.Event()

        def stop() -> None:
            if not stopped.is_set():
                stopped.set()
                httpd.shutdown()
                httpd.server_close()
                thread.join()

        stops.append(stop)
        return Server(f"http://127.0.0.1:{httpd.server_address[1]}", requests, stop)

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Register a tiny dataset "tiny"; the served folder holding tiny/train.txt and test.txt."""
    spec = DatasetSpec(
        name="tiny", n_users=3, n_items=4, n_train=7, n_test=3,
        train_digest=_reference_digest(TINY_TRAIN_PAIRS),
        test_digest=_reference_digest(TINY_TEST_PAIRS),
    )
    monkeypatch.setattr(fetch, "DATASETS", MappingProxyType({**DATASETS, "tiny": spec}))
    served = tmp_path / "served"
    _write(served / "tiny", TINY_TRAIN, TINY_TEST)
    return served


def _write(folder: Path, train: str | bytes, test: str | bytes) -> None:
    """Write a LightGCN folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for fname, content in (("train.txt", train), ("test.txt", test)):
        (folder / fname).write_bytes(content.encode() if isinstance(content, str) else content)


def _reference_digest(pairs: list[tuple[int, int]]) -> str:
    """sha256 of the sorted distinct pairs packed with struct (independent of pairs_digest)."""
    return hashlib.sha256(b"".join(struct.pack("<qq", u, i) for u, i in sorted(set(pairs)))
                          ).hexdigest()


def _csr(pairs: list[tuple[int, int]], shape: tuple[int, int]) -> sp.csr_matrix:
    """A CSR matrix with a 1 for every listed pair (duplicates summed)."""
    rows = np.array([u for u, _ in pairs], dtype=np.int64)
    cols = np.array([i for _, i in pairs], dtype=np.int64)
    return sp.coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=shape).tocsr()


def _closed_port() -> int:
    """A local port that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(cache: Path) -> list[str]:
    """Entries of the cache directory other than finished dataset folders."""
    return sorted(p.name for p in cache.iterdir() if p.name.startswith("."))


def _snapshot(folder: Path) -> dict[str, bytes]:
    """File name -> content for every file of a folder."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _corrupt_gowalla(dest: Path, how: str) -> None:
    """Copy the shared Gowalla split to dest/gowalla with one change.

    ``"test-item"``: user 0's first test item is replaced by an item user 0 has in
    neither file (counts unchanged, only the test digest differs). ``"train-line"``: one
    train line in the middle is dropped (fewer train interactions).
    """
    assert SHARED is not None
    src = SHARED / "gowalla"
    train = (src / "train.txt").read_text().splitlines(keepends=True)
    test = (src / "test.txt").read_text().splitlines(keepends=True)
    if how == "test-item":
        train0, test0 = train[0].split(), test[0].split()
        assert train0[0] == test0[0] == "0"
        used = {int(t) for t in train0[1:] + test0[1:]}
        test0[1] = str(next(i for i in range(40_981) if i not in used))
        test[0] = " ".join(test0) + "\n"
    else:
        del train[len(train) // 2]
    _write(dest / "gowalla", "".join(train), "".join(test))


# --- the full Gowalla split through a real HTTP server ---------------------------------------


@needs_gowalla
def test_fetch_gowalla_downloads_verifies_and_caches(serve, tmp_path: Path) -> None:
    server = serve(SHARED)
    cache = tmp_path / "cache"
    folder = fetch_dataset("gowalla", cache, base_url=server.url)
    assert folder == cache / "gowalla" and folder.is_dir()
    for fname in ("train.txt", "test.txt"):
        assert (folder / fname).read_bytes() == (SHARED / "gowalla" / fname).read_bytes()
    assert sorted(server.requests) == ["/gowalla/test.txt", "/gowalla/train.txt"]
    assert os.listdir(cache) == ["gowalla"]
    probe = tmp_path / "probe"
    probe.mkdir()  # the dataset folder gets the usual permissions, not mkdtemp's 0o700
    assert stat.S_IMODE(folder.stat().st_mode) == stat.S_IMODE(probe.stat().st_mode)
    data = verify_dataset(folder, "gowalla")
    assert data.summary() == {"name": "gowalla", "n_users": 29_858, "n_items": 40_981,
                              "n_train": 810_128, "n_test": 217_242}
    assert pairs_digest(data.train) == DATASETS["gowalla"].train_digest
    assert pairs_digest(data.test) == DATASETS["gowalla"].test_digest
    assert cached_dataset("gowalla", cache) == folder

    server.stop()  # a second fetch must not need the network
    assert fetch_dataset("gowalla", cache, base_url=server.url) == folder
    assert len(server.requests) == 2
    assert os.listdir(cache) == ["gowalla"]


@needs_gowalla
def test_corrupted_download_leaves_no_cache_entry(serve, tmp_path: Path) -> None:
    served = tmp_path / "served"
    _corrupt_gowalla(served, "test-item")
    server = serve(served)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="test pairs digest: expected dac95270") as info:
        fetch_dataset("gowalla", cache, base_url=server.url)
    message = str(info.value)
    assert f"{server.url}/gowalla/test.txt" in message
    assert "interactions" not in message  # the counts still match; only the digest differs
    assert os.listdir(cache) == []
    assert cached_dataset("gowalla", cache) is None


@needs_gowalla
def test_force_keeps_the_good_entry_when_the_new_download_is_bad(serve, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(SHARED / "gowalla", cache / "gowalla")
    before = _snapshot(cache / "gowalla")
    served = tmp_path / "served"
    _corrupt_gowalla(served, "train-line")
    server = serve(served)
    with pytest.raises(DataError, match="train interactions: expected 810,128, got"):
        fetch_dataset("gowalla", cache, base_url=server.url, force=True)
    assert _snapshot(cache / "gowalla") == before
    assert os.listdir(cache) == ["gowalla"]


# --- network failures --------------------------------------------------------------------------


def test_http_404_names_the_url_and_how_to_place_files(serve, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    server = serve(empty)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        fetch_dataset("gowalla", cache, base_url=server.url)
    message = str(info.value)
    train_url, test_url = f"{server.url}/gowalla/train.txt", f"{server.url}/gowalla/test.txt"
    assert message.startswith(f"could not download {train_url}: HTTP 404")
    assert BY_HAND in message and test_url in message and str(cache / "gowalla") in message
    assert os.listdir(cache) == []


def test_missing_test_file_names_the_test_url(serve, tmp_path: Path) -> None:
    served = tmp_path / "served"
    (served / "gowalla").mkdir(parents=True)
    (served / "gowalla" / "train.txt").write_text("0 1\n")
    server = serve(served)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="could not download .*/gowalla/test.txt: HTTP 404"):
        fetch_dataset("gowalla", cache, base_url=server.url)
    assert os.listdir(cache) == []


def test_offline_names_the_url_and_how_to_place_files(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{_closed_port()}/data"
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        fetch_dataset("yelp2018", cache, base_url=base, timeout=5)
    message = str(info.value)
    assert f"could not download {base}/yelp2018/train.txt" in message
    assert BY_HAND in message and f"{base}/yelp2018/test.txt" in message
    assert os.listdir(cache) == []


def test_a_silent_server_times_out(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(DataError, match=r"no answer within 0\.3 s.*by hand"):
            fetch_dataset("gowalla", tmp_path / "cache", base_url=base, timeout=0.3)
    assert os.listdir(tmp_path / "cache") == []


# --- the cache, on a tiny registered dataset -----------------------------------------------------


def test_tiny_fetch_then_force_replaces_atomically(serve, tiny: Path, tmp_path: Path) -> None:
    server = serve(tiny)
    cache = tmp_path / "cache"
    folder = fetch_dataset("tiny", cache, base_url=server.url + "/")
    assert _snapshot(folder) == {"test.txt": TINY_TEST.encode(), "train.txt": TINY_TRAIN.encode()}
    (folder / "notes.txt").write_text("mine")  # something only the old entry has
    calls: list[tuple[str, int, int | None]] = []
    assert fetch_dataset("tiny", cache, base_url=server.url, force=True,
                         progress=lambda *a: calls.append(a)) == folder
    assert sorted(os.listdir(folder)) == ["test.txt", "train.txt"]
    assert os.listdir(cache) == ["tiny"]
    assert calls[-1] == (f"{server.url}/tiny/test.txt", len(TINY_TEST), len(TINY_TEST))
    assert len(server.requests) == 4


def test_interrupted_download_leaves_nothing(serve, tiny: Path, tmp_path: Path) -> None:
    server = serve(tiny)
    cache = tmp_path / "cache"

    def interrupt(url: str, done: int, total: int | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch_dataset("tiny", cache, base_url=server.url, progress=interrupt)
    assert os.listdir(cache) == []
    fetch_dataset("tiny", cache, base_url=server.url)
    before = _snapshot(cache / "tiny")
    with pytest.raises(KeyboardInterrupt):
        fetch_dataset("tiny", cache, base_url=server.url, force=True, progress=interrupt)
    assert os.listdir(cache) == ["tiny"] and _snapshot(cache / "tiny") == before


def test_a_failed_swap_restores_the_old_entry(serve, tiny: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve(tiny)
    cache = tmp_path / "cache"
    fetch_dataset("tiny", cache, base_url=server.url)
    (cache / "tiny" / "notes.txt").write_text("mine")
    before = _snapshot(cache / "tiny")
    real_replace = os.replace

    def failing_replace(src: str | Path, dst: str | Path) -> None:
        if Path(src).name.startswith(".tiny.download-"):
            raise OSError("simulated rename failure")
        real_replace(src, dst)

    monkeypatch.setattr(fetch.os, "replace", failing_replace)
    with pytest.raises(DataError, match="could not move the verified tiny files.*simulated"):
        fetch_dataset("tiny", cache, base_url=server.url, force=True)
    monkeypatch.undo()
    assert _snapshot(cache / "tiny") == before
    assert os.listdir(cache) == ["tiny"]


def test_files_placed_by_hand_are_verified_not_downloaded(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(tiny / "tiny", cache / "tiny")
    offline = f"http://127.0.0.1:{_closed_port()}"
    assert fetch_dataset("tiny", cache, base_url=offline) == cache / "tiny"
    assert cached_dataset("tiny", cache) == cache / "tiny"


def test_a_bad_existing_entry_is_reported_and_left_alone(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _write(cache / "tiny", TINY_TRAIN, "0 3\n1 3\n2 1\n")  # one test item differs
    before = _snapshot(cache / "tiny")
    offline = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(DataError, match="test pairs digest.*force"):
        fetch_dataset("tiny", cache, base_url=offline)
    assert _snapshot(cache / "tiny") == before
    assert os.listdir(cache) == ["tiny"]


def test_an_incomplete_folder_is_not_overwritten_without_force(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "tiny").mkdir(parents=True)
    (cache / "tiny" / "train.txt").write_text("mine")
    with pytest.raises(DataError, match="does not hold both train.txt and test.txt"):
        fetch_dataset("tiny", cache, base_url="http://127.0.0.1:1")
    assert _snapshot(cache / "tiny") == {"train.txt": b"mine"}
    assert cached_dataset("tiny", cache) is None


def test_a_malformed_download_is_a_data_error_naming_the_url(serve, tiny: Path,
                                                            tmp_path: Path) -> None:
    _write(tiny / "tiny", "0 0 1\n1 x 2\n", TINY_TEST)
    server = serve(tiny)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"train\.txt line 2: 'x' is not an integer id"):
        fetch_dataset("tiny", cache, base_url=server.url)
    assert os.listdir(cache) == []


def test_count_only_specs_check_the_total(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny / "tiny"
    for total, ok in ((10, True), (11, False)):
        spec = DatasetSpec(name="tiny", n_users=3, n_items=4, n_total=total)
        monkeypatch.setattr(fetch, "DATASETS", MappingProxyType({"tiny": spec}))
        if ok:
            assert verify_dataset(folder, "tiny").n_train == 7
        else:
            with pytest.raises(DataError, match="total interactions: expected 11, got 10"):
                verify_dataset(folder, "tiny")
    spec = DatasetSpec(name="tiny", n_users=4, n_items=5)
    monkeypatch.setattr(fetch, "DATASETS", MappingProxyType({"tiny": spec}))
    with pytest.raises(DataError, match="users: expected 4, got 3; items: expected 5, got 4"):
        verify_dataset(folder, "tiny")


# --- registry, names, cache location -----------------------------------------------------------


def test_registry_figures() -> None:
    assert sorted(DATASETS) == ["amazon-book", "gowalla", "yelp2018"]
    for name, spec in DATASETS.items():
        assert spec.name == name
        assert spec.n_total is not None or None not in (spec.n_train, spec.n_test)
        for digest in (spec.train_digest, spec.test_digest):
            assert digest is None or (len(digest) == 64 and int(digest, 16) >= 0)
    assert DATASETS["yelp2018"].n_total == 1_561_406
    assert DATASETS["amazon-book"].n_total == 2_984_108
    with pytest.raises(TypeError):
        DATASETS["x"] = DATASETS["gowalla"]  # type: ignore[index]


def test_urls() -> None:
    assert dataset_urls("gowalla")["train.txt"] == (
        "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data/gowalla/train.txt"
    )
    assert DEFAULT_BASE_URL.startswith("https://")
    assert dataset_urls("amazon-book", "http://h/x/") == {
        "train.txt": "http://h/x/amazon-book/train.txt",
        "test.txt": "http://h/x/amazon-book/test.txt",
    }


@pytest.mark.parametrize("call", [
    lambda d: fetch_dataset("movielens", d),
    lambda d: cached_dataset("Gowalla", d),
    lambda d: verify_dataset(d, "yelp"),
    lambda d: dataset_urls("amazon_book"),
])
def test_unknown_name_is_a_config_error(call, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="available: amazon-book, gowalla, yelp2018"):
        call(tmp_path)
    assert os.listdir(tmp_path) == []


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BSPM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "data"
    monkeypatch.delenv("BSPM_DATA_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "bspm_jax"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "bspm_jax"
    monkeypatch.setenv("BSPM_DATA_DIR", str(tmp_path / "env"))
    assert cached_dataset("gowalla") is None
    _write(tmp_path / "env" / "gowalla", "0 1\n", "0 2\n")
    assert cached_dataset("gowalla") == tmp_path / "env" / "gowalla"


# --- pairs_digest ------------------------------------------------------------------------------

_PAIRS = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 14)), max_size=40)


@settings(max_examples=100, deadline=None)
@given(pairs=_PAIRS, seed=st.integers(0, 2**32 - 1), extra=st.integers(0, 10))
def test_pairs_digest_ignores_order_and_duplicates(pairs, seed, extra) -> None:
    rng = random.Random(seed)
    noisy = pairs + [rng.choice(pairs) for _ in range(extra)] if pairs else []
    rng.shuffle(noisy)
    expected = _reference_digest(pairs)
    assert pairs_digest(_csr(pairs, (10, 15))) == expected
    assert pairs_digest(_csr(noisy, (10, 15))) == expected
    assert pairs_digest(_csr(noisy, (10, 15)).tocoo()) == expected


@settings(max_examples=100, deadline=None)
@given(a=_PAIRS, b=_PAIRS)
def test_pairs_digest_tells_sets_apart(a, b) -> None:
    same = set(a) == set(b)
    assert (pairs_digest(_csr(a, (10, 15))) == pairs_digest(_csr(b, (10, 15)))) == same


def test_pairs_digest_layout_and_explicit_zeros() -> None:
    m = sp.csr_matrix((np.array([1.0, 0.0, 1.0]), np.array([3, 1, 0]), np.array([0, 2, 3])),
                      shape=(2, 4))  # unsorted indices and an explicit zero at (0, 1)
    assert pairs_digest(m) == hashlib.sha256(
        np.array([0, 3, 1, 0], dtype="<i8").tobytes()).hexdigest()
    assert m.indices.tolist() == [3, 1, 0] and m.nnz == 3  # the input is not modified
    assert pairs_digest(_csr(TINY_TRAIN_PAIRS, (3, 4))) == _reference_digest(TINY_TRAIN_PAIRS)


def _bspm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bspm_jax", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


@needs_gowalla
def test_cli_fetch_then_run_by_name(serve, tmp_path: Path) -> None:
    """`bspm fetch` against a local server, then `bspm run --data gowalla` reads the cache entry."""
    server = serve(SHARED)
    cache = tmp_path / "cache"
    env = {"BSPM_DATA_DIR": str(cache)}
    proc = _bspm("fetch", "gowalla", "--base-url", server.url, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "29,858 users, 40,981 items, 810,128 train / 217,242 test interactions, verified" in proc.stdout
    assert os.listdir(cache) == ["gowalla"]
    out = tmp_path / "pop.json"
    proc = _bspm("run", "--model", "popularity", "--data", "gowalla", "--k", "20", "--json", str(out), "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["dataset"]["n_train"] == 810_128 and result["dataset"]["name"] == "gowalla"


def test_cli_fetch_offline_exit_2(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    base = f"http://127.0.0.1:{_closed_port()}"
    proc = _bspm("fetch", "gowalla", "--dir", str(cache), "--base-url", base, "--timeout", "5")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{base}/gowalla/train.txt" in proc.stderr and BY_HAND in proc.stderr
    assert not (cache / "gowalla").exists()
    proc = _bspm("run", "--data", "gowalla", "--quiet", env={"BSPM_DATA_DIR": str(cache)})
    assert proc.returncode == 2 and "run `bspm fetch gowalla`" in proc.stderr
