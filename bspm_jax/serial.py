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
from jax.experimental import sparse as jsparse

from ._version import __version__
from .errors import ConfigError
from .runtime.io import array_sha256

FORMAT = "bspm_jax-model"
FORMAT_VERSION = 2
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


def save_model(model: Any, path: str | Path, notes: dict[str, Any] | None = None) -> Path:
    """Write a fitted model to the folder ``path`` atomically; an existing saved model there is replaced.

    ``notes`` (plain JSON, e.g. the run's configuration) is kept in the header as is.
    Refuses an unfitted model, and a ``path`` that is a file or a folder holding anything
    but a saved model (nothing of the user's is overwritten).
    """
    info = model.require_fitted()
    target = Path(path)
    check_target(target)
    encoder = _Encoder()
    try:
        state = {name: encoder.encode(getattr(model, name)) for name in model.state_names()}
    except TypeError as err:
        raise ConfigError(f"cannot save the {model.name} model: {err}") from None
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
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{file} has format version {version!r}; this bspm_jax ({library_version()}) reads version {FORMAT_VERSION}"
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
    wanted = {}
    _collect_arrays(header["state"], wanted)
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


def decode_state(header: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> dict[str, Any]:
    """The fitted fields of a saved model, rebuilt from its header and arrays."""
    decoder = _Decoder(arrays, where)
    return {name: decoder.decode(node) for name, node in header["state"].items()}
