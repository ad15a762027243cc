"""Tuning ChebyCF's continuous settings by gradient, on a smooth surrogate of Recall@K over a validation split.

Parameters: the Chebyshev coefficients ``c_0 .. c_K``, the degree exponent ``beta`` and the
gains of ``bands`` equal bands of the ideal add-on's eigenvectors (any of them can be frozen).
Scores of a batch of users (their fit-split rows ``x``):

    ``s = (sum_k c_k x_b T_k(L~) + alpha x_b V diag(g) V^T) D^beta``, ``x_b = x D^-beta``,

and the surrogate is minus a smooth Recall@K (:func:`surrogate_loss`): each validation item
counts ``sigmoid((s_ui - theta_u) / w_u)``, ``theta_u`` between the user's K-th and
(K+1)-th unseen scores. (A softmax cross-entropy over all unseen items was tried first: on
the shipped sample it lowered validation Recall@20 while it fell.) Its gradient runs back through the polynomial path, each ``L~`` product reused as its own
transpose (:class:`bspm_jax.filtering.operators.SelfAdjoint`); :func:`surrogate_loss` is checked against
finite differences in the tests. Adam (optax) takes ``steps`` steps on seeded batches of
validation users; every ``eval_every`` steps (and at the start) the true validation metric
of the current settings is measured on a seeded sample of ``eval_users`` users, and the
best point by that metric is kept; ties keep the earlier point, so the published settings
stay unless something beats them. The chosen settings are refitted on the whole train split
and evaluated once on test.

An :class:`bspm_jax.models.Ensemble` is tuned the same way, its parameters the members' weights
(``s = sum_m w_m s_m / ||s_m||``, the members fitted once on the fit split and held fixed).
Each tunable model has its :class:`AbstractTuning` (:data:`TUNINGS`): its surrogate, its
parameters at the start, and the settings that parameters stand for.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..filtering.chebyshev import chebyshev_series
from ..config import Config, dumps
from ..data import Dataset
from ..errors import ConfigError
from ..evaluation.protocol import evaluate
from ..runtime.io import write_json_atomic, write_text_atomic
from ..runtime.memory import require_bytes
from ..ranking.metrics import check_metric
from ..models import AbstractTrainingFree, ChebyCF, Ensemble, FitCache
from ..models.chebycf import band_of
from ..filtering.operators import Identity, SelfAdjoint
from ..ranking import Progress, no_progress
from ..spectral import SpectrumCache, item_degrees
from .grid import validation_record, validation_split

Params = dict[str, Array]
PARAMETERS = ("coefficients", "beta", "gains", "weights")


@dataclasses.dataclass(frozen=True)
class GradientSettings:
    """Steps of Adam and how the surrogate and the checkpoints are sampled."""

    steps: int = 60
    lr: float = 0.02
    batch_users: int = 512
    bands: int = 8
    eval_every: int = 20
    eval_users: int | None = None
    """Validation users of each checkpoint: a seeded sample of this many, None: all."""
    seed: int = 0
    width: float = 0.02
    frozen: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("steps", "batch_users", "bands", "eval_every", "eval_users"):
            value = getattr(self, name)
            if name == "eval_users" and value is None:
                continue
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ConfigError(f"gradient tuning: {name} must be an integer >= 1, got {value!r}")
        for name in ("lr", "width"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"gradient tuning: {name} must be a finite number > 0, got {value!r}")
        unknown = sorted(set(self.frozen) - set(PARAMETERS))
        if unknown:
            raise ConfigError(f"gradient tuning: cannot freeze {', '.join(unknown)}; parameters: {', '.join(PARAMETERS)}")


@dataclasses.dataclass(frozen=True)
class GradientTuneResult:
    """The checkpoints (step, surrogate loss, validation metric, settings), the best settings, test metrics, timings."""

    metric: str
    checkpoints: list[dict[str, Any]]
    best: dict[str, Any]
    test_metrics: dict[str, float]
    validation: dict[str, Any]
    timings_s: dict[str, float]


class AbstractSurrogate(eqx.Module):
    """A model fitted on the fit split, as scores that are a differentiable function of the tuned parameters."""

    @abc.abstractmethod
    def scores(self, params: Params, x: Float[Array, "b n_items"]) -> Float[Array, "b n_items"]:
        """The scores of dense rows ``x`` with the settings in ``params``."""


class Surrogate(AbstractSurrogate):
    """What the surrogate needs from a ChebyCF fitted on the fit split: ``L~``, ``V``, ``log D``."""

    laplacian: SelfAdjoint
    vectors: Float[Array, "n_items eta"] | None
    log_degree: Float[Array, " n_items"]
    has_degree: Float[Array, " n_items"]
    band: Int[Array, " eta"]
    """The band of each eigenvector of the add-on."""
    alpha: float = eqx.field(static=True)

    @classmethod
    def of(cls, model: ChebyCF, degree: np.ndarray, bands: int) -> Surrogate:
        vectors = None if model.ideal_pass is None else model.ideal_pass.right_t
        eta = 0 if vectors is None else int(vectors.shape[1])
        safe = np.where(degree > 0, degree, 1.0)
        return cls(SelfAdjoint(Identity() - 2.0 * model.graph.gram), vectors, jnp.asarray(np.log(safe), jnp.float32),
                   jnp.asarray(degree > 0, jnp.float32), jnp.asarray(band_of(eta, min(bands, max(eta, 1)))), float(model.alpha))

    def scores(self, params: Params, x: Float[Array, "b n_items"]) -> Float[Array, "b n_items"]:
        """ChebyCF's scores of dense rows ``x`` with the settings in ``params``."""
        pre = self.has_degree * jnp.exp(-params["beta"] * self.log_degree)
        post = self.has_degree * jnp.exp(params["beta"] * self.log_degree)
        xb = x * pre
        out = chebyshev_series(self.laplacian, xb, params["coefficients"])
        if self.vectors is not None:
            gains = self.alpha * params["gains"][self.band]
            out = out + ((xb @ self.vectors) * gains) @ self.vectors.T
        return out * post


class EnsembleSurrogate(AbstractSurrogate):
    """An ensemble's members fitted on the fit split; the weights are the parameters."""

    fitted: Ensemble

    def scores(self, params: Params, x: Float[Array, "b n_items"]) -> Float[Array, "b n_items"]:
        parts = [jax.lax.stop_gradient(p) for p in self.fitted.member_scores(x)]
        return sum(params["weights"][m] * part for m, part in enumerate(parts))


def surrogate_bytes(model: ChebyCF, batch_users: int, n_items: int) -> int:
    """Memory of one gradient step, as float32 rows of the batch: the recurrence's states and their
    cotangents (about four per order), and a dozen more for the scalings, the scores, top-k and the sigmoid."""
    return 4 * batch_users * n_items * (4 * (model.K + 1) + 12)


def initial_params(model: ChebyCF, bands: int) -> Params:
    """The model's own settings as parameters (gains 1 unless the model has as many band gains)."""
    n = min(bands, max(model.eta, 1))
    gains = model.band_gains if model.band_gains is not None and len(model.band_gains) == n else np.ones(n)
    return {"coefficients": jnp.asarray(model.filter_coefficients, jnp.float32), "beta": jnp.asarray(model.beta, jnp.float32),
            "gains": jnp.asarray(gains, jnp.float32)}


def surrogate_loss(params: Params, surrogate: Surrogate, x: Float[Array, "b n_items"],
                   valid: Float[Array, "b n_items"], k: int = 20, width: float = 0.02) -> Float[Array, ""]:
    """Minus a smooth Recall@k: ``mean_u (1 / |V_u|) sum_{i in V_u} sigmoid((s_ui - theta_u) / w_u)``.

    ``theta_u`` is the midpoint of the user's k-th and (k+1)-th largest scores among the
    items not in ``x`` (differentiable: raising every score does not help), ``w_u`` the
    fraction ``width`` of the spread of the user's top 2k such scores. Invariant to the scale of the scores;
    each user weighs the same, as in Recall@k. Differentiable wherever no two of a user's
    top 2k + 1 scores swap places.
    """
    scores = jnp.where(x > 0, -jnp.inf, surrogate.scores(params, x))
    top = jax.lax.top_k(scores, 2 * k)[0]
    theta = 0.5 * (top[:, k - 1] + top[:, k])
    width = width * (top[:, 0] - top[:, -1]) + 1e-12
    soft = jax.nn.sigmoid((jnp.where(x > 0, 0.0, scores) - theta[:, None]) / width[:, None])
    n_valid = jnp.sum(valid, axis=1)
    per_user = jnp.sum(valid * soft, axis=1) / jnp.maximum(n_valid, 1.0)
    return -jnp.sum(per_user) / jnp.maximum(jnp.sum(n_valid > 0), 1.0)


def model_settings(base: ChebyCF, params: Params) -> dict[str, Any]:
    """The ChebyCF settings that ``params`` stand for."""
    settings = base.config()
    settings.update(coefficients=_shortest(params["coefficients"]), beta=_shortest(params["beta"])[0])
    if base.has_ideal:
        settings["band_gains"] = _shortest(params["gains"])
    return settings


def _shortest(values: Array) -> list[float]:
    """float32 values as the shortest decimals that round to them (0.4, not 0.4000000059604645)."""
    return [float(str(v)) for v in np.atleast_1d(np.asarray(values, np.float32))]


class AbstractTuning(abc.ABC):
    """How gradient tuning handles one kind of model: its surrogate, starting parameters and settings."""

    @abc.abstractmethod
    def surrogate(self, fitted: AbstractTrainingFree, train: sp.csr_matrix) -> AbstractSurrogate:
        """The surrogate of the model fitted on ``train``."""

    @abc.abstractmethod
    def initial(self) -> Params:
        """The model's own settings as parameters."""

    @abc.abstractmethod
    def settings(self, params: Params) -> dict[str, Any]:
        """The model settings that ``params`` stand for."""

    @abc.abstractmethod
    def step_bytes(self, batch_users: int, n_items: int) -> int:
        """Memory of one gradient step on ``batch_users`` users."""


@dataclasses.dataclass(frozen=True)
class ChebyCFTuning(AbstractTuning):
    """ChebyCF's coefficients, ``beta`` and the add-on's band gains."""

    base: ChebyCF
    bands: int

    def surrogate(self, fitted: AbstractTrainingFree, train: sp.csr_matrix) -> AbstractSurrogate:
        return Surrogate.of(fitted, item_degrees(train), self.bands)

    def initial(self) -> Params:
        return initial_params(self.base, self.bands)

    def settings(self, params: Params) -> dict[str, Any]:
        return model_settings(self.base, params)

    def step_bytes(self, batch_users: int, n_items: int) -> int:
        return surrogate_bytes(self.base, batch_users, n_items)


@dataclasses.dataclass(frozen=True)
class EnsembleTuning(AbstractTuning):
    """An ensemble's member weights."""

    base: Ensemble

    def surrogate(self, fitted: AbstractTrainingFree, train: sp.csr_matrix) -> AbstractSurrogate:
        return EnsembleSurrogate(fitted)

    def initial(self) -> Params:
        return {"weights": jnp.asarray(self.base.weights, jnp.float32)}

    def settings(self, params: Params) -> dict[str, Any]:
        return {"members": self.base.member_settings(), "weights": _shortest(params["weights"])}

    def step_bytes(self, batch_users: int, n_items: int) -> int:
        """The members' scoring, their normalised scores kept, and a dozen rows for top-k and the sigmoid."""
        return batch_users * (self.base.scoring_bytes_per_user(n_items) + 4 * n_items * 12)


TUNINGS: dict[type[AbstractTrainingFree], Callable[[Any, GradientSettings], AbstractTuning]] = {
    ChebyCF: lambda base, settings: ChebyCFTuning(base, settings.bands),
    Ensemble: lambda base, settings: EnsembleTuning(base),
}
"""The models gradient tuning can tune, and how (from the model and the tuning's settings)."""


def _dense_rows(m: sp.csr_matrix, users: np.ndarray) -> Array:
    return jnp.asarray(m[users].toarray(), jnp.float32)


def _sample_valid(val: Dataset, users: np.ndarray) -> Dataset:
    keep = np.zeros(val.n_users, np.float32)
    keep[users] = 1.0
    valid = sp.csr_matrix(sp.diags(keep) @ val.valid)
    valid.eliminate_zeros()
    return dataclasses.replace(val, valid=valid)


def tune_gradient(
    base: ChebyCF,
    dataset: Dataset,
    metric: str = "recall@20",
    validation: float = 0.2,
    seed: int = 0,
    ks: Sequence[int] = (20,),
    batch_size: int | str = 1024,
    settings: GradientSettings = GradientSettings(),
    progress: Progress | None = None,
    spectra: SpectrumCache | None = None,
) -> GradientTuneResult:
    """Tune ``base``'s continuous settings (:data:`TUNINGS`) by Adam on the surrogate; select by validation ``metric``."""
    if type(base) not in TUNINGS:
        tunable = ", ".join(sorted(cls.name for cls in TUNINGS))
        raise ConfigError(f"gradient tuning tunes these models: {tunable}; not the {base.name} model")
    tuning = TUNINGS[type(base)](base, settings)
    unknown = sorted(set(settings.frozen) - set(tuning.initial()))
    if unknown:
        raise ConfigError(f"gradient tuning: the {base.name} model has no parameter {', '.join(unknown)} to freeze; "
                          f"its parameters: {', '.join(tuning.initial())}")
    _, cut = check_metric(metric)
    ks = sorted(set(int(k) for k in ks) | {cut})
    spectra = SpectrumCache() if spectra is None else spectra
    require_bytes(tuning.step_bytes(settings.batch_users, dataset.n_items),
                  f"a gradient step on {settings.batch_users:,} users x {dataset.n_items:,} items",
                  "lower batch_users (--batch-users)")
    t0 = time.perf_counter()
    val = validation_split(dataset, validation, seed)
    fitted = base.fit(val.train, spectra)
    surrogate = tuning.surrogate(fitted, val.train)
    fits = FitCache(spectra)
    fits.add(fitted)
    fit_s = time.perf_counter() - t0

    rng = np.random.default_rng(settings.seed)
    valid_users = np.flatnonzero(np.diff(val.valid.indptr) > 0)
    count = len(valid_users) if settings.eval_users is None else min(settings.eval_users, len(valid_users))
    eval_users = np.sort(rng.choice(valid_users, count, replace=False))
    checkpoint_data = _sample_valid(val, eval_users)

    def validate(params: Params) -> dict[str, float]:
        model = fits.fit(type(base)(**tuning.settings(params)), val.train)
        return evaluate(model, checkpoint_data, ks=ks, batch_size=batch_size, split="valid").metrics

    params = tuning.initial()
    optimizer = optax.adam(settings.lr)
    state = optimizer.init(params)

    @jax.jit
    def step(params: Params, state: optax.OptState, x: Array, valid: Array) -> tuple[Params, optax.OptState, Array]:
        loss, grads = jax.value_and_grad(surrogate_loss)(params, surrogate, x, valid, cut, settings.width)
        grads = {k: jnp.zeros_like(g) if k in settings.frozen else g for k, g in grads.items()}
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    checkpoints = [{"step": 0, "loss": None, **validate(params), "settings": tuning.settings(params)}]
    losses: list[float] = []
    for i in (progress or no_progress)(range(1, settings.steps + 1), desc="gradient", unit="step"):
        users = np.sort(rng.choice(valid_users, min(settings.batch_users, len(valid_users)), replace=False))
        params, state, loss = step(params, state, _dense_rows(val.train, users), _dense_rows(val.valid, users))
        losses.append(float(loss))
        if i % settings.eval_every == 0 or i == settings.steps:
            checkpoints.append({"step": i, "loss": float(np.mean(losses[-settings.eval_every:])), **validate(params),
                                "settings": tuning.settings(params)})
    search_s = time.perf_counter() - t0
    best = max(checkpoints, key=lambda c: (c[metric], -c["step"]))
    t = time.perf_counter()
    test = evaluate(type(base)(**best["settings"]).fit(dataset.train, spectra), dataset, ks=ks, batch_size=batch_size)
    protocol = {
        **validation_record(dataset, val, validation, seed),
        "checkpoint_users": len(eval_users),
        "gradient": dataclasses.asdict(settings),
        "best_step": best["step"],
    }
    timings = {"fit_validation": fit_s, "search": search_s, "test": time.perf_counter() - t}
    return GradientTuneResult(metric, checkpoints, best["settings"], test.metrics, protocol, timings)


def write_gradient_results(out: str | Path, config: Config, dataset: Dataset, result: GradientTuneResult,
                           wall: float) -> None:
    """Write ``results.json`` (checkpoints, protocol, test, timings) and ``best.toml`` (the chosen model) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    best_config = Config({"model": {"name": config.model_name, **result.best}, "data": config["data"],
                          "evaluation": config["evaluation"]},
                         f"chosen by gradient tuning (bspm tune --method gradient), validation {result.metric} on {dataset.name}")
    write_text_atomic(out / "best.toml", dumps(best_config.to_dict()))
    write_json_atomic(out / "results.json", {
        "method": "gradient", "model": config.model_name, "config": config.to_dict(), "dataset": dataset.summary(),
        "metric": result.metric, "validation": result.validation, "checkpoints": result.checkpoints,
        "best": result.best, "test_metrics": result.test_metrics, "timings_s": {**result.timings_s, "wall": wall},
    })
