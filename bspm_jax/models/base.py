"""The interface every recommender implements: settings as static fields, fitted state as arrays, scores of user rows.

Training-free models (:class:`AbstractTrainingFree`) are fitted in closed form by
``fit(train)``; trained models learn their arrays by gradient descent in
:mod:`bspm_jax.training`. Ranking (top-k, batches, devices) takes any recommender.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Hashable
from pathlib import Path
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, ArrayLike, Float

from ..data.dataset import Dataset
from ..data.interactions import Interactions, as_history, interaction_matrix
from ..data.sparse import matrix_digest
from ..errors import ConfigError
from ..filtering.graph import ItemGraph
from ..filtering.operators import AbstractLayout, Diagonal, LowRank, RowLayout
from ..filtering.rows import SparseRows, as_dense
from ..spectral import SpectrumCache

Rows = Float[Array, "b n_items"] | SparseRows
"""User rows, dense or as :class:`SparseRows`."""


@dataclasses.dataclass(frozen=True)
class TrainInfo:
    """What a model was fitted on: the train matrix's shape, interactions and content digest."""

    n_users: int
    n_items: int
    n_interactions: int
    digest: str

    @classmethod
    def of(cls, train: sp.spmatrix) -> TrainInfo:
        return cls(int(train.shape[0]), int(train.shape[1]), int(sp.csr_matrix(train).nnz), matrix_digest(train))


def fitted_field(**kwargs: Any) -> Any:
    """A static field holding fitted (not setting) information, e.g. :class:`TrainInfo`."""
    return eqx.field(static=True, default=None, metadata={"fitted": True}, **kwargs)


class LayoutScores(eqx.Module):
    """Scores of a batch kept in the layout the model computed them in, ready for top-k."""

    values: Array
    layout: AbstractLayout
    batch: int = eqx.field(static=True)

    def rows(self) -> Float[Array, "b n_items"]:
        """The scores as (batch, n_items) rows."""
        return self.layout.leave(self.values, self.batch)


class AbstractRecommender(eqx.Module):
    """A recommender: settings are static fields, fitted state is array fields, ``score(rows)`` scores user rows.

    ``fitted_on`` is None until the model is fitted, then the :class:`TrainInfo` of its
    train matrix. Any model saves with :meth:`save` and loads with ``bspm_jax.load_model``.
    """

    fitted_on: TrainInfo | None = fitted_field()

    name: ClassVar[str]
    """Short model name used in outputs."""
    scores_new_users: ClassVar[bool] = True
    """Whether a user the model was not fitted on (a history row without a user index) can be scored."""

    @abc.abstractmethod
    def score(self, rows: Rows) -> Float[Array, "b n_items"]:
        """Scores of every item for each user row (the user's interaction history)."""

    @abc.abstractmethod
    def search_space(self) -> dict[str, tuple[Any, ...]]:
        """The small grid ``bspm compare`` chooses this model's settings from on validation, around these settings:
        each key a ``--set`` key (a model setting, or ``train.lr``) with its candidate values; empty: none tuned."""

    def score_with_stats(self, rows: Rows) -> tuple[Array, dict[str, Any]]:
        """Scores and solver statistics (none for models without ODEs).

        This is what ranking calls, with :class:`SparseRows`; by default ``score`` then gets
        dense rows. Models that use the sparsity (or the rows' user indices) override it.
        """
        return self.score(as_dense(rows)), {}

    def layout_scores_with_stats(self, rows: SparseRows) -> tuple[LayoutScores, dict[str, Any]]:
        """Like :meth:`score_with_stats`, with the scores left in the model's own layout."""
        scores, stats = self.score_with_stats(rows)
        return LayoutScores(scores, RowLayout(), rows.n_rows), stats

    @classmethod
    def setting_names(cls) -> list[str]:
        """Names of the model's settings: its static fields that are not fitted information."""
        return [
            f.name
            for f in dataclasses.fields(cls)
            if f.metadata.get("static", False) and not f.metadata.get("fitted", False)
        ]

    @classmethod
    def state_names(cls) -> list[str]:
        """Names of the fitted state: every field that is not a setting."""
        settings = set(cls.setting_names())
        return [f.name for f in dataclasses.fields(cls) if f.name not in settings]

    def config(self) -> dict[str, Any]:
        """Every setting of the model, by name."""
        return {name: getattr(self, name) for name in self.setting_names()}

    def unfitted(self) -> AbstractRecommender:
        """A model with this one's settings and no fitted state."""
        return type(self)(**self.config())

    @property
    def is_fitted(self) -> bool:
        return self.fitted_on is not None

    def require_fitted(self) -> TrainInfo:
        """The model's :class:`TrainInfo`, or a ConfigError when it is not fitted."""
        if self.fitted_on is None:
            raise ConfigError(f"the {self.name} model is not fitted: fit or train it first, or load a saved one")
        return self.fitted_on

    def scoring_bytes_per_user(self, n_items: int) -> int:
        """Working memory of scoring, per user of a batch (for batch planning): a few score rows."""
        return 3 * n_items * 4

    def save(self, path: str | Path, notes: dict[str, Any] | None = None, data: Interactions | Dataset | None = None
             ) -> Path:
        """Write the fitted model to the folder ``path`` (JSON header, npz arrays), atomically; ``notes``: plain JSON
        kept in the header; ``data``: what the model was fitted on, saved with it (id maps and histories) so that it
        recommends by id with no data file (``bspm_jax.load_history``)."""
        from ..serial import save_model

        return save_model(self, path, notes, None if data is None else as_history(data))


class AbstractTrainingFree(AbstractRecommender):
    """A model fitted in closed form from the train matrix: ``fit(data)`` returns a fitted copy."""

    def fit(self, data: Interactions | Dataset | sp.spmatrix, spectra: SpectrumCache | None = None) -> AbstractTrainingFree:
        """Return a copy of the model fitted on ``data``: :class:`~bspm_jax.data.Interactions` (every pair), a
        :class:`~bspm_jax.data.Dataset` (its train split) or a (n_users, n_items) sparse matrix, whose nonzero
        entries count as 1 (``spectra`` shares SVDs between fits)."""
        return self.fit_matrix(interaction_matrix(data), spectra)

    @abc.abstractmethod
    def fit_matrix(self, train: sp.csr_matrix, spectra: SpectrumCache | None = None) -> AbstractTrainingFree:
        """Return a copy of the model fitted on the binary (n_users, n_items) CSR matrix (``spectra`` shares SVDs)."""

    def fit_key(self) -> Hashable:
        """The settings the fitted state depends on: models with equal keys can share a fit."""
        return tuple(sorted(self.config().items()))

    def with_fit_of(self, fitted: AbstractTrainingFree) -> AbstractTrainingFree:
        """This model's settings with the fitted state of ``fitted`` (whose ``fit_key`` must match)."""
        if fitted.fit_key() != self.fit_key():
            raise ValueError(f"fit keys differ: {fitted.fit_key()} != {self.fit_key()}")
        return dataclasses.replace(self, **{name: getattr(fitted, name) for name in self.state_names()})


class AbstractLayoutFilter(AbstractTrainingFree):
    """A training-free model that scores in its own layout (column chunks for the native kernel): top-k reads them there."""

    @abc.abstractmethod
    def layout_filter(self, rows: Rows) -> tuple[LayoutScores, dict[str, Any]]:
        """Scores in the model's layout, and its solver statistics."""

    def score(self, rows: Rows) -> Float[Array, "b n_items"]:
        return self.score_with_stats(rows)[0]

    @eqx.filter_jit
    def score_with_stats(self, rows: Rows) -> tuple[Array, dict[str, Any]]:
        scores, stats = self.layout_filter(rows)
        return scores.rows(), stats

    @eqx.filter_jit
    def layout_scores_with_stats(self, rows: Rows) -> tuple[LayoutScores, dict[str, Any]]:
        return self.layout_filter(rows)


class AbstractSpectralFilter(AbstractTrainingFree):
    """A training-free model whose scores are a linear filter of ``P~ = R~^T R~``, up to degree similarities.

    Its frequency response ``h(s^2)`` is computed by the model's own scoring code on the
    diagonal graph of ``P~``'s eigenvalues (:meth:`on_spectrum`): in the eigenbasis every
    operator is a diagonal, the ideal low-pass keeps the eigenvalues down to the fitted
    rank's smallest, and degree normalisations ``D^-b (.) D^b`` (similarities, which keep
    the eigenvalues) are left out.
    """

    @abc.abstractmethod
    def filter_rows(self, x: Float[Array, "b n_items"]) -> Float[Array, "b n_items"]:
        """The item-side filter on dense rows, without the user and degree normalisations around it."""

    @abc.abstractmethod
    def ideal_cutoff(self) -> float | None:
        """The smallest eigenvalue ``s^2`` of ``P~`` that the fitted ideal low-pass keeps (None: no ideal filter)."""

    @abc.abstractmethod
    def on_spectrum(self, eigenvalues: Float[Array, " n"]) -> AbstractSpectralFilter:
        """This fitted model with its graph replaced by the diagonal one of ``eigenvalues`` of ``P~``."""

    def response(self, eigenvalues: Float[ArrayLike, " n"]) -> Float[Array, " n"]:
        """``h(lambda)`` at each eigenvalue ``lambda = s^2`` of ``P~``: the filter of a row of ones on the diagonal graph."""
        e = jnp.asarray(eigenvalues, jnp.float32)
        return self.on_spectrum(e).filter_rows(jnp.ones((1, e.shape[0]), jnp.float32))[0]

    @staticmethod
    def spectral_graph(eigenvalues: Float[ArrayLike, " n"], cutoff: float | None,
                       gains: np.ndarray | None = None) -> tuple[ItemGraph, LowRank | None]:
        """The diagonal :class:`ItemGraph` of ``eigenvalues`` and its ideal low-pass (those ``>= cutoff``, weighted by ``gains``; None: none)."""
        e = jnp.asarray(eigenvalues, jnp.float32)
        ideal = None
        if cutoff is not None:
            keep = np.flatnonzero(np.asarray(e) >= np.float32(cutoff))
            select = np.zeros((e.shape[0], max(len(keep), 1)), np.float32)
            select[keep, np.arange(len(keep))] = 1.0
            ideal = LowRank(select * (1.0 if gains is None else np.asarray(gains, np.float32)[:, None]), select.T)
        return ItemGraph(Diagonal(e), ideal, jnp.ones_like(e), None), ideal


class FitCache:
    """Fits shared by content: spectra by (train digest, rank), fitted models by (class, train digest, ``fit_key``).

    BSPM's fit (normalisation and SVD) depends only on the SVD rank, so a grid over the ODE
    settings fits once per rank; any model needing the same spectrum reuses it.
    """

    def __init__(self, spectra: SpectrumCache | None = None) -> None:
        self.spectra = SpectrumCache() if spectra is None else spectra
        self._fits: dict[Hashable, AbstractTrainingFree] = {}

    def _key(self, model: AbstractTrainingFree, digest: str) -> Hashable:
        return (type(model), digest, model.fit_key())

    def add(self, fitted: AbstractTrainingFree) -> None:
        """Offer an already fitted model for reuse."""
        info = fitted.require_fitted()
        self._fits.setdefault(self._key(fitted, info.digest), fitted)

    def fit(self, model: AbstractTrainingFree, train: sp.csr_matrix) -> AbstractTrainingFree:
        """``model`` fitted on ``train``, reusing a cached fit with the same key."""
        key = self._key(model, matrix_digest(train))
        if key not in self._fits:
            self._fits[key] = model.fit(train, self.spectra)
        return model.with_fit_of(self._fits[key])

    def __len__(self) -> int:
        return len(self._fits)
