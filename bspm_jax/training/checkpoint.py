"""Training checkpoints: one ``.npz`` file (no pickle) replaced atomically, with the run's fingerprint.

The file holds every array leaf of (model, optimiser state, best model), the run's key,
and a JSON record of the epoch, the best-so-far metric, the patience counter, the
history and the fingerprint (model settings, train settings, data shape and checksum).
Loading checks the fingerprint and every leaf's shape and dtype against a fresh run.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PyTree

from ..errors import ConfigError
from ..runtime.io import atomic_files
from ..models.trained import AbstractTrainedRecommender
from .settings import TrainSettings

CHECKPOINT = "checkpoint.npz"
"""The checkpoint's file name inside the checkpoint folder."""
FORMAT = 1


@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a run needs to continue after epoch ``epoch`` (0: nothing trained yet)."""

    model: AbstractTrainedRecommender
    opt_state: PyTree
    key: jax.Array
    epoch: int = 0
    best_model: AbstractTrainedRecommender | None = None
    best_metric: float | None = None
    best_epoch: int = 0
    bad_evals: int = 0
    history: tuple[dict[str, Any], ...] = ()
    seconds: float = 0.0
    finished: bool = False



def _leaves(state: TrainState) -> list[np.ndarray]:
    tree = eqx.filter((state.model, state.opt_state, state.best_model), eqx.is_array)
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def save_checkpoint(folder: str | Path, state: TrainState, fingerprint: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``folder/checkpoint.npz`` atomically (readers see the old or the new file)."""
    path = Path(folder) / CHECKPOINT
    meta = {
        "format": FORMAT,
        "fingerprint": dict(fingerprint),
        "epoch": state.epoch,
        "best_metric": state.best_metric,
        "best_epoch": state.best_epoch,
        "bad_evals": state.bad_evals,
        "history": list(state.history),
        "seconds": state.seconds,
        "finished": state.finished,
    }
    arrays = {f"leaf_{n:05d}": leaf for n, leaf in enumerate(_leaves(state))}
    arrays["key"] = np.asarray(jax.random.key_data(state.key))
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with atomic_files(path) as (f,):
        np.savez(f, **arrays)
    return path


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metadata and arrays of a checkpoint file; a damaged file is one ConfigError."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"not a format-{FORMAT} training checkpoint")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as err:
        raise ConfigError(f"checkpoint {path} is corrupted or truncated ({err}); remove it to start afresh") from None
    return meta, arrays


def checkpoint_info(folder: str | Path) -> dict[str, Any] | None:
    """The metadata of the checkpoint in ``folder`` (epoch, best, history, fingerprint), or None if there is none."""
    path = Path(folder) / CHECKPOINT
    return _read(path)[0] if path.is_file() else None


def _default_settings(model: Any) -> dict[str, Any]:
    """The settings of ``model``'s class with every default, as JSON values ({} if it has required settings)."""
    try:
        return json.loads(json.dumps(type(model)().config()))
    except (TypeError, ValueError, ConfigError):
        return {}


def load_checkpoint(folder: str | Path, like: TrainState, fingerprint: Mapping[str, Any]) -> TrainState:
    """The state in ``folder/checkpoint.npz``, structured as ``like``; refused if its run's fingerprint differs.

    A model or ``[train]`` setting that the checkpoint's fingerprint lacks (one added since it
    was written) counts as its default, the behaviour the run had before the setting existed.
    """
    path = Path(folder) / CHECKPOINT
    meta, arrays = _read(path)
    theirs = meta.get("fingerprint", {})
    ours = json.loads(json.dumps(dict(fingerprint)))  # compare as JSON (tuples read back as lists)
    if isinstance(theirs.get("model"), dict):
        added = {k: v for k, v in _default_settings(like.model).items() if k not in theirs["model"]}
        theirs = {**theirs, "model": {**added, **theirs["model"]}}
    if isinstance(theirs.get("settings"), dict):
        theirs = {**theirs, "settings": {**TrainSettings().to_dict(), **theirs["settings"]}}
    differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    if differ:
        details = "; ".join(f"{k}: checkpoint {theirs.get(k)!r}, this run {ours.get(k)!r}" for k in differ)
        raise ConfigError(f"checkpoint {path} is from another run ({details}); use another checkpoint folder")
    like = dataclasses.replace(like, best_model=like.model)
    tree = eqx.filter((like.model, like.opt_state, like.best_model), eqx.is_array)
    expected, treedef = jax.tree.flatten(tree)
    names = sorted(n for n in arrays if n.startswith("leaf_"))
    try:
        if len(names) != len(expected):
            raise ValueError(f"{len(names)} arrays, expected {len(expected)}")
        leaves = []
        for name, want in zip(names, expected):
            got = arrays[name]
            if got.shape != want.shape or got.dtype != want.dtype:
                raise ValueError(f"{name} is {got.dtype}{list(got.shape)}, expected {want.dtype}{list(want.shape)}")
            leaves.append(jax.numpy.asarray(got))
        key = jax.random.wrap_key_data(jax.numpy.asarray(arrays["key"]))
        epoch, best_epoch, bad = int(meta["epoch"]), int(meta["best_epoch"]), int(meta["bad_evals"])
        best_metric = None if meta["best_metric"] is None else float(meta["best_metric"])
        history, seconds, finished = tuple(meta["history"]), float(meta["seconds"]), bool(meta["finished"])
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"checkpoint {path} is corrupted ({err}); remove it to start afresh") from None
    params, opt_params, best_params = jax.tree.unflatten(treedef, leaves)
    model = eqx.combine(params, like.model)
    return TrainState(
        model=model,
        opt_state=eqx.combine(opt_params, like.opt_state),
        key=key,
        epoch=epoch,
        best_model=eqx.combine(best_params, like.model),
        best_metric=best_metric,
        best_epoch=best_epoch,
        bad_evals=bad,
        history=history,
        seconds=seconds,
        finished=finished,
    )
