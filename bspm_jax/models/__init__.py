"""Recommender models behind one interface, the registry the CLI picks them from, and loading saved models.

A registry entry is a model class with default settings: GF-CF and the only-blurring
variants are BSPM with fixed settings, not separate code.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..serial import HEADER, ModelFileError, decode_state, read_arrays, read_header
from ..errors import ConfigError
from .autoencoder import AbstractAutoencoder
from .base import AbstractLayoutFilter, AbstractRecommender, AbstractSpectralFilter, AbstractTrainingFree, FitCache, LayoutScores, TrainInfo
from .bspm import BSPM
from .chebycf import ChebyCF
from .ensemble import Ensemble
from .giffcf import GiffCF
from .gmf import GMF
from .lgcn_ide import LGCNIDE
from .lightgcn import LightGCN
from .mf_bpr import MFBPR
from .mlp_cf import MLP
from .mult_dae import MultDAE
from .mult_vae import MultVAE
from .ncf import NCF_LOSSES, AbstractNCF
from .neumf import NeuMF, neumf_from_parts
from .popularity import Popularity
from .s_diff import SDiff
from .turbo_cf import TurboCF
from .trained import PAIR_SAMPLINGS, AbstractBPR, AbstractPairwise, AbstractTrainedRecommender

_NO_SHARPEN = {"sharpen": False, "beta": 0.0}

MODELS: dict[str, tuple[type[AbstractRecommender], dict[str, Any]]] = {
    "bspm": (BSPM, {}),
    "popularity": (Popularity, {}),
    "gf-cf": (BSPM, {"blur": "gfcf", "gfcf_beta": 0.3, "rank": 256, **_NO_SHARPEN}),
    "lgcn-ide": (LGCNIDE, {}),
    "chebycf": (ChebyCF, {}),
    "turbo-cf": (TurboCF, {}),
    "ensemble": (Ensemble, {}),
    "blur-heat": (BSPM, {"blur": "heat", **_NO_SHARPEN}),
    "blur-ideal": (BSPM, {"blur": "ideal", **_NO_SHARPEN}),
    "blur-gfcf": (BSPM, {"blur": "gfcf", **_NO_SHARPEN}),
    "mf-bpr": (MFBPR, {}),
    "s-diff": (SDiff, {}),
    "giffcf": (GiffCF, {}),
    "lightgcn": (LightGCN, {}),
    "gmf": (GMF, {}),
    "mlp": (MLP, {}),
    "neumf": (NeuMF, {}),
    "mult-vae": (MultVAE, {}),
    "mult-dae": (MultDAE, {}),
}


def model_defaults(name: str) -> tuple[type[AbstractRecommender], dict[str, Any]]:
    """The class and default settings registered as ``name``."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(MODELS)}") from None


def make_model(name: str, **settings: Any) -> AbstractRecommender:
    """Build the model registered as ``name``, its defaults overridden by ``settings``."""
    cls, defaults = model_defaults(name)
    known = cls.setting_names()
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no setting {', '.join(unknown)}; settings: {', '.join(known) or 'none'}"
        )
    try:
        return cls(**{**defaults, **settings})
    except TypeError as err:
        raise ConfigError(f"bad settings for model {name!r}: {err}") from None


def load_model(path: str | Path) -> AbstractRecommender:
    """The fitted model saved in folder ``path`` by ``model.save``; one ModelFileError (a ConfigError) when it cannot be.

    Refused: a missing, truncated or corrupted header or array file, another format
    version, an unknown model or setting, and arrays that differ from the header.
    """
    header = read_header(path)
    where = str(Path(path) / HEADER)
    name = header["model"]
    if name not in MODELS:
        raise ModelFileError(f"{where} holds an unknown model {name!r}; available: {', '.join(MODELS)}")
    try:
        model = make_model(name, **header["settings"])
    except ConfigError as err:
        raise ModelFileError(f"{where}: {err}") from None
    if f"{type(model).__module__}:{type(model).__qualname__}" != header.get("class"):
        raise ModelFileError(f"{where} was written for class {header.get('class')}, not {type(model).__qualname__}")
    arrays = read_arrays(path, header)
    state = decode_state(header, arrays, where)
    if set(state) != set(type(model).state_names()):
        raise ModelFileError(f"{where} is corrupted: its fitted state {sorted(state)} is not the {name} model's")
    try:
        loaded = dataclasses.replace(model, **state)
    except (TypeError, ValueError, ConfigError) as err:
        raise ModelFileError(f"{where} is corrupted: {err}") from None
    if not isinstance(loaded.fitted_on, TrainInfo) or dataclasses.asdict(loaded.fitted_on) != header["train"]:
        raise ModelFileError(f"{where} is corrupted: its train matrix record does not match")
    return loaded


__all__ = [
    "BSPM",
    "ChebyCF",
    "Ensemble",
    "GMF",
    "GiffCF",
    "LGCNIDE",
    "LightGCN",
    "MFBPR",
    "MLP",
    "MODELS",
    "MultDAE",
    "MultVAE",
    "NeuMF",
    "AbstractAutoencoder",
    "AbstractNCF",
    "AbstractBPR",
    "AbstractPairwise",
    "PAIR_SAMPLINGS",
    "NCF_LOSSES",
    "AbstractLayoutFilter",
    "AbstractRecommender",
    "AbstractSpectralFilter",
    "AbstractTrainedRecommender",
    "AbstractTrainingFree",
    "FitCache",
    "LayoutScores",
    "Popularity",
    "SDiff",
    "TrainInfo",
    "TurboCF",
    "load_model",
    "make_model",
    "model_defaults",
    "neumf_from_parts",
]
