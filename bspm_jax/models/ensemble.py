"""A weighted sum of training-free models' scores, each row scaled to unit length.

Scores of user rows ``r``: ``s = sum_m w_m s_m / ||s_m||`` with ``s_m`` member ``m``'s
scores of ``r`` over all items and ``||.||`` the Euclidean norm of each row, so that
the weights compare members whose scores have different scales (ChebyCF's, BSPM's). Members
are given as settings tables (``{name = "chebycf", K = 8, ...}``), fitted on the same
train matrix (sharing SVDs through one :class:`SpectrumCache`) and saved with the model.
The weights are what :mod:`bspm_jax.tuning.gradient` tunes for an ensemble.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float

from ..errors import ConfigError
from ..spectral import SpectrumCache
from .base import AbstractTrainingFree, Rows, TrainInfo

MemberSpec = tuple[str, tuple[tuple[str, Any], ...]]
"""A member's model name and its settings as sorted (name, value) pairs, lists as tuples (hashable)."""


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list | tuple) else value


def _thawed(value: Any) -> Any:
    return [_thawed(v) for v in value] if isinstance(value, tuple) else value


def _members(values: object) -> object:
    """Settings tables (or saved (name, pairs) lists) as a tuple of :data:`MemberSpec`; anything else unchanged."""
    if not isinstance(values, list | tuple):
        return values
    out = []
    for member in values:
        if isinstance(member, Mapping):
            name, settings = member.get("name"), {k: v for k, v in member.items() if k != "name"}
        elif isinstance(member, list | tuple) and len(member) == 2 and isinstance(member[1], list | tuple):
            name, settings = member[0], dict(tuple(pair) for pair in member[1])
        else:
            return values  # for __check_init__ to name
        out.append((name, tuple(sorted((str(k), _frozen(v)) for k, v in settings.items()))))
    return tuple(out)


def _weights(values: object) -> object:
    return tuple(float(v) for v in values) if isinstance(values, list | tuple | np.ndarray) else values


class Ensemble(AbstractTrainingFree):
    """``sum_m w_m s_m / ||s_m||``: training-free members' row-normalised scores, weighted.

    Attributes:
        members: the member models, a non-empty list of settings tables each with a ``name`` of a training-free model.
        weights: w_m, one finite number per member (tuned by :mod:`bspm_jax.tuning.gradient`).
    """

    name: ClassVar[str] = "ensemble"
    members: tuple[MemberSpec, ...] = eqx.field(static=True, default=(), converter=_members)
    weights: tuple[float, ...] = eqx.field(static=True, default=(), converter=_weights)
    fitted: tuple[AbstractTrainingFree, ...] | None = None
    """The members, fitted on the train matrix."""

    def search_space(self) -> dict[str, tuple[Any, ...]]:
        return {}

    def __check_init__(self) -> None:
        if not (isinstance(self.members, tuple) and self.members
                and all(isinstance(m, tuple) and isinstance(m[0], str) for m in self.members)):
            raise ConfigError("members must be a non-empty list of model settings tables, each with a name, "
                              f"e.g. [{{name = \"chebycf\"}}, {{name = \"bspm\"}}]; got {self.members!r}")
        if not (isinstance(self.weights, tuple) and len(self.weights) == len(self.members)
                and all(np.isfinite(self.weights))):
            raise ConfigError(f"weights must hold one finite number per member ({len(self.members)}), got {self.weights!r}")
        for model in self.unfitted_members():
            if not isinstance(model, AbstractTrainingFree):
                raise ConfigError(f"ensemble members must be training-free models; {model.name} is trained")

    def member_settings(self) -> list[dict[str, Any]]:
        """Each member as a settings table (``name`` first), as it would be written in a config."""
        return [{"name": name, **{k: _thawed(v) for k, v in pairs}} for name, pairs in self.members]

    def unfitted_members(self) -> list[AbstractTrainingFree]:
        from . import make_model  # the registry, which lists this module's class

        return [make_model(**table) for table in self.member_settings()]

    def fit_key(self) -> tuple:
        return self.members

    def fit_matrix(self, train: sp.csr_matrix, spectra: SpectrumCache | None = None) -> Ensemble:
        spectra = SpectrumCache() if spectra is None else spectra
        fitted = tuple(model.fit(train, spectra) for model in self.unfitted_members())
        return dataclasses.replace(self, fitted=fitted, fitted_on=TrainInfo.of(train))

    def member_scores(self, rows: Rows) -> list[Float[Array, "b n_items"]]:
        """Each fitted member's scores of ``rows``, every row scaled to unit Euclidean norm."""
        self.require_fitted()
        out = []
        for model in self.fitted:
            s = model.score(rows)
            out.append(s / jnp.maximum(jnp.linalg.norm(s, axis=1, keepdims=True), 1e-30))
        return out

    def score(self, rows: Rows) -> Float[Array, "b n_items"]:
        parts = self.member_scores(rows)
        return sum(w * s for w, s in zip(self.weights, parts))

    def scoring_bytes_per_user(self, n_items: int) -> int:
        members = self.fitted if self.fitted is not None else self.unfitted_members()
        return max(m.scoring_bytes_per_user(n_items) for m in members) + 4 * n_items * (len(members) + 2)
