"""Download and verify the LightGCN benchmark splits (Gowalla, Yelp2018, Amazon-Book).

``fetch_dataset("gowalla")`` downloads ``train.txt`` and ``test.txt`` from
``{base_url}/{name}/{file}`` (by default the LightGCN-PyTorch repository on GitHub)
into a temporary folder inside the cache directory, checks the user, item and
interaction counts (and, where known, an order-independent digest of the set of
(user, item) pairs) against the registry ``DATASETS``, and only then renames the
folder into place as ``<dir>/<name>/``. A failed or interrupted download leaves no
cache entry and never touches an existing one.

Figures: Gowalla's counts and digests were computed from the LightGCN split (the
same pair sets as the original files). For Yelp2018 and Amazon-Book only the counts
published in the LightGCN paper (Table 1: users, items and total interactions) are
known here; their digests are ``None`` and only the counts are checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, DataError
from .dataset import Dataset
from .sparse import canonical_csr
from .lightgcn import lightgcn_from_text

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data"
FILES = ("train.txt", "test.txt")
CHUNK_BYTES = 1 << 20

Progress = Callable[[str, int, int | None], None]
"""Download hook: called with (url, bytes received so far, total bytes or None)."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Expected figures of one dataset; ``None`` means the figure is not checked.

    Give either ``n_train`` and ``n_test`` or ``n_total`` (train + test), or all three.
    Interactions are distinct (user, item) pairs; digests are ``pairs_digest`` values.
    """

    name: str
    n_users: int
    n_items: int
    n_train: int | None = None
    n_test: int | None = None
    n_total: int | None = None
    train_digest: str | None = None
    test_digest: str | None = None
    source: str = ""


DATASETS: Mapping[str, DatasetSpec] = MappingProxyType({
    "gowalla": DatasetSpec(
        name="gowalla", n_users=29_858, n_items=40_981, n_train=810_128, n_test=217_242,
        train_digest="d453bfc18e5613d6310ab05f7ebc1c6c724ee913dc31c769d1c8743c678d27f7",
        test_digest="dac9527045e35230c82e4a5c54715b5e60f8a7bbe935ffdb4ee2ebe21c32ddb7",
        source="LightGCN split; counts and pair digests computed from the files",
    ),
    "yelp2018": DatasetSpec(
        name="yelp2018", n_users=31_668, n_items=38_048, n_total=1_561_406,
        source="LightGCN paper, Table 1 (counts only; digests unknown)",
    ),
    "amazon-book": DatasetSpec(
        name="amazon-book", n_users=52_643, n_items=91_599, n_total=2_984_108,
        source="LightGCN paper, Table 1 (counts only; digests unknown)",
    ),
})


def default_cache_dir() -> Path:
    """$BSPM_DATA_DIR, else $XDG_CACHE_HOME/bspm_jax, else ~/.cache/bspm_jax."""
    if os.environ.get("BSPM_DATA_DIR"):
        return Path(os.environ["BSPM_DATA_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "bspm_jax"
    return Path.home() / ".cache" / "bspm_jax"


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry of ``name``; ConfigError listing the known names otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}"
        ) from None


def dataset_urls(name: str, base_url: str = DEFAULT_BASE_URL) -> dict[str, str]:
    """File name -> download URL (``{base_url}/{name}/{file}``) for train.txt and test.txt."""
    spec = dataset_spec(name)
    return {f: f"{base_url.rstrip('/')}/{spec.name}/{f}" for f in FILES}


def cached_dataset(name: str, directory: str | Path | None = None) -> Path | None:
    """The folder ``<directory>/<name>`` if it holds train.txt and test.txt, else None."""
    folder = _cache_root(directory) / dataset_spec(name).name
    return folder if _is_complete(folder) else None


def pairs_digest(matrix: sp.spmatrix | sp.sparray) -> str:
    """sha256 hex of the sorted distinct non-zero (user, item) pairs as little-endian int64."""
    m = canonical_csr(matrix)
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    flat = np.empty(2 * m.nnz, dtype="<i8")
    flat[0::2] = rows
    flat[1::2] = m.indices
    return hashlib.sha256(flat.tobytes()).hexdigest()


def verify_dataset(folder: str | Path, name: str) -> Dataset:
    """Load ``folder`` and check it against ``DATASETS[name]``; DataError naming any mismatch."""
    spec = dataset_spec(name)
    folder = Path(folder)
    data = _load(folder, spec, {f: str(folder / f) for f in FILES})
    mismatches = _mismatches(data, spec)
    if mismatches:
        raise DataError(f"{folder} is not the expected {spec.name} split: {mismatches}")
    return data


def fetch_dataset(
    name: str,
    directory: str | Path | None = None,
    base_url: str = DEFAULT_BASE_URL,
    force: bool = False,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> Path:
    """Download, verify and atomically install ``name`` into ``<directory>/<name>``; its folder."""
    spec = dataset_spec(name)
    root = _cache_root(directory)
    target = root / spec.name
    if not force and _existing_entry(target, spec):
        return target
    urls = dataset_urls(spec.name, base_url)
    try:
        root.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{spec.name}.download-", dir=root))
    except OSError as exc:
        raise DataError(f"cannot write to the data directory {root}: {exc}") from exc
    try:
        for fname, url in urls.items():
            _download(url, staged / fname, timeout, progress, _by_hand(spec, urls, target))
        data = _load(staged, spec, urls)
        mismatches = _mismatches(data, spec)
        if mismatches:
            raise DataError(
                f"the downloaded {spec.name} files ({urls['train.txt']}, {urls['test.txt']}) "
                f"are not the expected split: {mismatches}; nothing was written to {target}"
            )
        try:
            _install(staged, target, force)
        except OSError as exc:
            raise DataError(f"could not move the verified {spec.name} files into {target}: "
                            f"{exc}") from exc
    finally:
        _remove(staged)
    return target


def _cache_root(directory: str | Path | None) -> Path:
    """``directory`` as a Path, or the default cache directory."""
    return default_cache_dir() if directory is None else Path(directory).expanduser()


def _is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds both train.txt and test.txt."""
    return all((folder / f).is_file() for f in FILES)


def _existing_entry(target: Path, spec: DatasetSpec) -> bool:
    """True for a verified entry, False for none (or an empty folder); DataError otherwise."""
    if _is_complete(target):
        try:
            verify_dataset(target, spec.name)
        except DataError as exc:
            raise DataError(
                f"{exc}; the existing folder was left as it is (fetch with force to replace it)"
            ) from exc
        return True
    if not os.path.lexists(target) or (target.is_dir() and not any(target.iterdir())):
        return False
    raise DataError(
        f"{target} exists but does not hold both train.txt and test.txt; it was left as it "
        "is (remove it, or fetch with force to replace it)"
    )


def _by_hand(spec: DatasetSpec, urls: Mapping[str, str], target: Path) -> str:
    """How to place the files by hand."""
    return (
        f"to install {spec.name} by hand, download {urls['train.txt']} and {urls['test.txt']} "
        f"into {target}/ (as train.txt and test.txt), then fetch again to verify them"
    )


def _download(
    url: str, dest: Path, timeout: float, progress: Progress | None, by_hand: str,
) -> None:
    """Stream ``url`` into ``dest``; one DataError naming the URL on any network failure."""
    try:
        done, total = _stream(url, dest, timeout, progress)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DataError(f"could not download {url}: {_reason(exc, timeout)}; {by_hand}") from exc
    if total is not None and done != total:
        raise DataError(f"could not download {url}: got {done} of {total} bytes; {by_hand}")


def _stream(
    url: str, dest: Path, timeout: float, progress: Progress | None,
) -> tuple[int, int | None]:
    """Copy the body of ``url`` to ``dest``: (bytes received, Content-Length or None)."""
    with urllib.request.urlopen(url, timeout=timeout) as response, dest.open("wb") as out:
        total = _content_length(response)
        done = 0
        while chunk := response.read(CHUNK_BYTES):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(url, done, total)
    return done, total


def _reason(exc: BaseException, timeout: float) -> str:
    """A short description of why a download failed."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        inner = exc.reason
        return _reason(inner, timeout) if isinstance(inner, BaseException) else str(inner)
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    return str(exc) or type(exc).__name__


def _content_length(response: object) -> int | None:
    """The Content-Length header as an int, or None."""
    value = getattr(response, "headers", {}).get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


def _load(folder: Path, spec: DatasetSpec, where: Mapping[str, str]) -> Dataset:
    """Parse ``folder``'s train.txt and test.txt; errors name the files as ``where``."""
    train, test = (
        (folder / f).read_bytes().decode("utf-8-sig", errors="replace") for f in FILES
    )
    return lightgcn_from_text(
        train, test, spec.name, train_where=where["train.txt"], test_where=where["test.txt"],
    )


def _mismatches(data: Dataset, spec: DatasetSpec) -> str:
    """'figure: expected X, got Y' for every figure that differs ('' when all match)."""
    figures = [
        ("users", spec.n_users, data.n_users),
        ("items", spec.n_items, data.n_items),
        ("train interactions", spec.n_train, data.n_train),
        ("test interactions", spec.n_test, data.n_test),
        ("total interactions", spec.n_total, data.n_train + data.n_test),
    ]
    wrong = [f"{label}: expected {want:,}, got {got:,}"
             for label, want, got in figures if want is not None and want != got]
    for label, want, matrix in (("train pairs digest", spec.train_digest, data.train),
                                ("test pairs digest", spec.test_digest, data.test)):
        if want is not None and (got_digest := pairs_digest(matrix)) != want:
            wrong.append(f"{label}: expected {want}, got {got_digest}")
    duplicates = sum(data.stats.get(k, 0) for k in ("duplicates_train", "duplicates_test"))
    if wrong and duplicates:
        wrong.append(f"(the files also repeat {duplicates:,} pairs, counted once)")
    return "; ".join(wrong)


def _install(staged: Path, target: Path, force: bool) -> None:
    """Rename the verified ``staged`` folder to ``target``, swapping out an old entry if forced."""
    staged.chmod(_default_dir_mode(staged))
    if not os.path.lexists(target) or (target.is_dir() and not any(target.iterdir())):
        try:
            os.replace(staged, target)
            return
        except OSError:
            if not force and _is_complete(target):
                return  # another process installed it meanwhile
            if not force:
                raise
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    try:
        os.replace(target, backup / "entry")
    except BaseException:
        backup.rmdir()
        raise
    try:
        os.replace(staged, target)
    except BaseException:
        os.replace(backup / "entry", target)  # if this fails too, the backup stays
        backup.rmdir()
        raise
    _remove(backup)


def _default_dir_mode(parent: Path) -> int:
    """Permission bits a new folder gets under the current umask (mkdtemp uses 0o700)."""
    probe = parent / ".mode-probe"
    probe.mkdir()
    try:
        return probe.stat().st_mode & 0o777
    finally:
        probe.rmdir()


def _remove(path: Path) -> None:
    """Delete a temporary file or folder if it is still there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink(missing_ok=True)
