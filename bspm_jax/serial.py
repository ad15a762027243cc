"""One format for every fitted model: a folder with a JSON header (``model.json``) and the arrays (``arrays.npz``).

The header names the model and every setting, the library and format versions, the
train matrix it was fitted on (shape, interactions, SHA-256 digest), and its fitted state
as a tree: equinox modules and frozen dataclasses of ``bspm_jax`` by class path with
their fields, plain values, and arrays by name with shape, dtype and SHA-256. Nothing
is pickled: the npz is read with ``allow_pickle=False`` and only ``bspm_jax`` classes are
rebuilt. The folder is written beside its target and renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.experimental import sparse as jsparse

from ._version import __version__
from .data.dataset import Dataset
from .data.sparse import canonical_csr, matrix_digest
from .errors import ConfigError
from .runtime.io import array_sha256

FORMAT = "bspm_jax-model"
FORMAT_VERSION = 3
READS = (2, 3)
"""Format versions this library reads: 3 added the optional ``history`` (id maps and the fitted-on interactions)."""
HEADER = "model.json"
ARRAYS = "arrays.npz"
PACKAGE = "bspm_jax"
ON_LOAD = "on_load"
"""Field metadata: a function applied to a static value when it is loaded (e.g. re-picking the kernel path)."""


class ModelFileError(ConfigError):
    """A saved model that cannot be loaded: missing, truncated, corrupted, or of another format."""


def library_version() -> str:
    return __version__


# ---------------------------------------------------------------- encoding


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, value: Any) -> dict[str, Any]:
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError("object arrays cannot be saved")
        key = f"a{len(self.arrays)}"
        self.arrays[key] = arr
        return {"array": key, "shape": list(arr.shape), "dtype": arr.dtype.str, "sha256": array_sha256(arr)}

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | str):
            return {"value": value}
        if isinstance(value, int | np.integer):
            return {"value": int(value)}
        if isinstance(value, float | np.floating):
            return {"float": repr(float(value))}
        if isinstance(value, jax.Array | np.ndarray):
            return self.array(value)
        if isinstance(value, tuple | list):
            return {"tuple" if isinstance(value, tuple) else "list": [self.encode(v) for v in value]}
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {"dict": {k: self.encode(v) for k, v in value.items()}}
        if isinstance(value, jsparse.BCSR):
            return {"bcsr": {"data": self.array(value.data), "indices": self.array(value.indices),
                             "indptr": self.array(value.indptr), "shape": list(value.shape)}}
        if (isinstance(value, eqx.Module) or dataclasses.is_dataclass(value)) and _own_class(type(value)):
            fields = {f.name: self.encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
            return {"class": _class_path(type(value)), "fields": fields}
        raise TypeError(f"cannot save a value of type {type(value).__qualname__}")


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _own_class(cls: type) -> bool:
    return cls.__module__ == PACKAGE or cls.__module__.startswith(PACKAGE + ".")


def save_model(model: Any, path: str | Path, notes: dict[str, Any] | None = None, data: Dataset | None = None) -> Path:
    """Write a fitted model to the folder ``path`` atomically; an existing saved model there is replaced.

    ``notes`` (plain JSON, e.g. the run's configuration) is kept in the header as is.
    ``data``: the dataset whose train split the model was fitted on; its id maps and that
    split are saved with the model (``history``), so that it recommends by id with no data
    file (:func:`load_history`). Refuses an unfitted model, data the model was not fitted
    on, and a ``path`` that is a file or a folder holding anything but a saved model
    (nothing of the user's is overwritten).
    """
    info = model.require_fitted()
    target = Path(path)
    check_target(target)
    encoder = _Encoder()
    try:
        state = {name: encoder.encode(getattr(model, name)) for name in model.state_names()}
    except TypeError as err:
        raise ConfigError(f"cannot save the {model.name} model: {err}") from None
    history = None if data is None else _encode_history(encoder, data, info, model.name)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": library_version(),
        "model": model.name,
        "class": _class_path(type(model)),
        "settings": json.loads(json.dumps(model.config())),
        "train": dataclasses.asdict(info),
        "state": state,
        "notes": json.loads(json.dumps(notes or {})),
        **({} if history is None else {"history": history}),
    }
    header["header_sha256"] = header_digest(header)
    parent = target.parent if str(target.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        with open(staging / ARRAYS, "wb") as f:
            np.savez(f, **encoder.arrays)
            f.flush()
            os.fsync(f.fileno())
        with open(staging / HEADER, "w", encoding="utf-8") as f:
            f.write(json.dumps(header, indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(staging, 0o777 & ~_umask())
        _swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _encode_history(encoder: _Encoder, data: Dataset, info: Any, name: str) -> dict[str, Any]:
    train = canonical_csr(data.train, np.float32)
    if (info.n_users, info.n_items) != train.shape or matrix_digest(train) != info.digest:
        raise ConfigError(f"the data given to save is not what the {name} model was fitted on "
                          f"({train.shape[0]:,} x {train.shape[1]:,}, {train.nnz:,} interactions against "
                          f"{info.n_users:,} x {info.n_items:,}, {info.n_interactions:,})")
    ids = {}
    for key, values in (("user_ids", data.user_ids), ("item_ids", data.item_ids)):
        arr = None if values is None else np.asarray(values)
        if arr is not None and arr.dtype.kind not in "iuU":
            arr = arr.astype(str)
        ids[key] = None if arr is None else encoder.array(arr)
    return {"name": data.name, **ids, "indptr": encoder.array(train.indptr.astype(np.int64)),
            "indices": encoder.array(train.indices.astype(np.int32))}


def check_target(target: Path) -> None:
    """Refuse (ConfigError) a folder a model cannot be saved to without overwriting the user's files."""
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"cannot save to {target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot save to {target}: folder {parent} is not writable")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"cannot save to {target}: it is a file")
    if target.is_dir() and any(target.iterdir()) and not (target / HEADER).is_file():
        raise ConfigError(f"cannot save to {target}: the folder holds other files (not a saved model)")


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an old saved model there is moved aside first, then removed."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / "model")
    try:
        os.replace(staging, target)
    except BaseException:
        if old is not None:
            os.replace(old / "model", target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- decoding


def header_digest(header: dict[str, Any]) -> str:
    """SHA-256 of the header's canonical JSON (sorted keys, no spaces), its own ``header_sha256`` left out."""
    body = {k: v for k, v in header.items() if k != "header_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of the saved model in folder ``path``, its format checked."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFileError(f"no saved model at {folder}: not a folder")
    file = folder / HEADER
    if not file.is_file():
        raise ModelFileError(f"no saved model at {folder}: {HEADER} is missing")
    try:
        header = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{file} is truncated or corrupted: {err}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{file} is not a bspm_jax model header")
    version = header.get("format_version")
    if version not in READS:
        raise ModelFileError(
            f"{file} has format version {version!r}; this bspm_jax ({library_version()}) reads versions "
            f"{', '.join(map(str, READS))}"
        )
    if header.get("header_sha256") != header_digest(header):
        raise ModelFileError(f"{file} is corrupted: its contents do not match their SHA-256 (header_sha256)")
    for key, kind in (("model", str), ("settings", dict), ("train", dict), ("state", dict)):
        if not isinstance(header.get(key), kind):
            raise ModelFileError(f"{file} is corrupted: '{key}' is missing or not a {kind.__name__}")
    return header


def read_arrays(path: str | Path, header: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of the saved model, each checked against the header's shape, dtype and SHA-256."""
    file = Path(path) / ARRAYS
    if not file.is_file():
        raise ModelFileError(f"{file} is missing")
    wanted: dict[str, dict[str, Any]] = {}
    _collect_arrays([header["state"], header.get("history")], wanted)
    try:
        with np.load(file, allow_pickle=False) as npz:
            names = set(npz.files)
            if names != set(wanted):
                raise ModelFileError(f"{file} does not match the header: arrays {sorted(names ^ set(wanted))[:5]} differ")
            arrays = {name: npz[name] for name in npz.files}
    except ModelFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ModelFileError(f"{file} is truncated or corrupted: {err}") from None
    for name, spec in wanted.items():
        arr = arrays[name]
        if list(arr.shape) != spec.get("shape") or arr.dtype.str != spec.get("dtype"):
            raise ModelFileError(
                f"{file}: array {name} is {arr.dtype.str}{list(arr.shape)}, the header says "
                f"{spec.get('dtype')}{spec.get('shape')}"
            )
        if array_sha256(arr) != spec.get("sha256"):
            raise ModelFileError(f"{file}: array {name} is corrupted (its SHA-256 differs from the header's)")
    return arrays


def _collect_arrays(node: Any, out: dict[str, dict[str, Any]]) -> None:
    if isinstance(node, dict):
        if "array" in node and isinstance(node["array"], str):
            out[node["array"]] = node
            return
        for value in node.values():
            _collect_arrays(value, out)
    elif isinstance(node, list):
        for value in node:
            _collect_arrays(value, out)


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray], where: str):
        self.arrays = arrays
        self.where = where

    def fail(self, what: str) -> ModelFileError:
        return ModelFileError(f"{self.where} is corrupted: {what}")

    def decode(self, node: Any, on_load: Any = None) -> Any:
        if not isinstance(node, dict) or len(node) == 0:
            raise self.fail(f"unexpected entry {str(node)[:60]!r}")
        if "value" in node:
            value = node["value"]
            if value is not None and not isinstance(value, bool | int | str):
                raise self.fail(f"unexpected value {value!r}")
            return on_load(value) if on_load is not None else value
        if "float" in node:
            try:
                return float(node["float"])
            except (TypeError, ValueError):
                raise self.fail(f"bad number {node['float']!r}") from None
        if "array" in node:
            return jnp.asarray(self.arrays[node["array"]])
        if "tuple" in node or "list" in node:
            items = node.get("tuple", node.get("list"))
            if not isinstance(items, list):
                raise self.fail("a sequence is not a list")
            values = [self.decode(v) for v in items]
            return tuple(values) if "tuple" in node else values
        if "dict" in node:
            if not isinstance(node["dict"], dict):
                raise self.fail("a mapping is not an object")
            return {k: self.decode(v) for k, v in node["dict"].items()}
        if "bcsr" in node:
            b = node["bcsr"]
            try:
                parts = (self.decode(b["data"]), self.decode(b["indices"]), self.decode(b["indptr"]))
                return jsparse.BCSR(parts, shape=tuple(int(n) for n in b["shape"]))
            except (KeyError, TypeError, ValueError) as err:
                raise self.fail(f"bad sparse matrix: {err}") from None
        if "class" in node:
            return self.instance(node)
        raise self.fail(f"unknown entry kind {sorted(node)[:3]}")

    def instance(self, node: dict[str, Any]) -> Any:
        cls = self.resolve(node["class"])
        fields = node.get("fields")
        if not isinstance(fields, dict):
            raise self.fail(f"{node['class']} has no fields")
        declared = {f.name: f for f in dataclasses.fields(cls)}
        if set(fields) != set(declared):
            raise self.fail(f"{node['class']} fields {sorted(set(fields) ^ set(declared))} differ from this version's")
        obj = object.__new__(cls)  # fields are restored as saved, without re-running __init__
        for name, f in declared.items():
            object.__setattr__(obj, name, self.decode(fields[name], f.metadata.get(ON_LOAD)))
        return obj

    def resolve(self, path: Any) -> type:
        if not isinstance(path, str) or ":" not in path:
            raise self.fail(f"bad class path {path!r}")
        module_name, _, qualname = path.partition(":")
        if not (module_name == PACKAGE or module_name.startswith(PACKAGE + ".")):
            raise self.fail(f"class {path} is not part of bspm_jax")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            raise self.fail(f"class {path} does not exist in this bspm_jax") from None
        if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
            raise self.fail(f"{path} is not a model component")
        return obj


def load_history(path: str | Path) -> Dataset | None:
    """The data a model was saved with (``model.save(path, data=...)``): a :class:`~bspm_jax.data.Dataset`
    whose train split is the interactions the model was fitted on, with the id maps, and an empty test split;
    None when the model was saved without it. Every array is checked as :func:`read_arrays` does."""
    header = read_header(path)
    node = header.get("history")
    if node is None:
        return None
    where = str(Path(path) / HEADER)
    arrays = read_arrays(path, header)
    train_info = header["train"]

    def array(key: str) -> np.ndarray | None:
        entry = node.get(key) if isinstance(node, dict) else None
        if entry is None and key.endswith("_ids"):
            return None
        if not isinstance(entry, dict) or entry.get("array") not in arrays:
            raise ModelFileError(f"{where} is corrupted: history.{key} is missing")
        return arrays[entry["array"]]

    try:
        shape = (int(train_info["n_users"]), int(train_info["n_items"]))
        indptr, indices = array("indptr"), array("indices")
        train = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=shape)
        train.check_format(full_check=True)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{where} is corrupted: history: {err}") from None
    if matrix_digest(train) != train_info.get("digest"):
        raise ModelFileError(f"{where} is corrupted: the saved history is not the matrix the model was fitted on")
    user_ids, item_ids = array("user_ids"), array("item_ids")
    for ids, n, what in ((user_ids, shape[0], "user"), (item_ids, shape[1], "item")):
        if ids is not None and ids.shape != (n,):
            raise ModelFileError(f"{where} is corrupted: {n:,} {what}s but {ids.shape} {what} ids")
    empty = sp.csr_matrix(shape, dtype=np.float32)
    return Dataset(train=train, test=empty, name=str(node.get("name", "saved")), user_ids=user_ids, item_ids=item_ids,
                   stats={"split": "none", "saved": True})


def decode_state(header: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> dict[str, Any]:
    """The fitted fields of a saved model, rebuilt from its header and arrays."""
    decoder = _Decoder(arrays, where)
    return {name: decoder.decode(node) for name, node in header["state"].items()}
