"""Recommender models behind one interface, and the registry the CLI picks them from.

A registry entry is a model class with default settings: GF-CF and the only-blurring
variants are BSPM with fixed settings, not separate code.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import AbstractRecommender, HostMatrix, masked_top_k
from .bspm import BSPM, LGCNIDE
from .mf_bpr import MFBPR
from .popularity import Popularity
from .trained import AbstractPairwise, AbstractTrainedRecommender

_NO_SHARPEN = {"sharpen": False, "beta": 0.0}

MODELS: dict[str, tuple[type[AbstractRecommender], dict[str, Any]]] = {
    "popularity": (Popularity, {}),
    "bspm": (BSPM, {}),
    "gf-cf": (BSPM, {"blur": "gfcf", "gfcf_beta": 0.3, "rank": 256, **_NO_SHARPEN}),
    "lgcn-ide": (LGCNIDE, {}),
    "blur-heat": (BSPM, {"blur": "heat", **_NO_SHARPEN}),
    "blur-ideal": (BSPM, {"blur": "ideal", **_NO_SHARPEN}),
    "blur-gfcf": (BSPM, {"blur": "gfcf", **_NO_SHARPEN}),
    "mf-bpr": (MFBPR, {}),
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


__all__ = [
    "BSPM",
    "LGCNIDE",
    "MFBPR",
    "MODELS",
    "AbstractPairwise",
    "AbstractRecommender",
    "AbstractTrainedRecommender",
    "HostMatrix",
    "Popularity",
    "make_model",
    "masked_top_k",
    "model_defaults",
]
