"""S-Diff (Xia et al., WSDM 2025): diffusion of a user's interactions in the graph spectral domain.

The item graph is ``X~ = D_U^-1/2 X D_I^-1/2``; its top-``rank`` right singular vectors
``U`` (n_items x K) are the lowest-frequency eigenvectors of ``L = I - X~^T X~``, with
frequencies ``d = 1 - s^2``. A user row ``x`` is moved to ``v = U^T x`` and back by
``x = U v``. The forward process is ``q(v_t | v_0) = N(alpha_t v_0, sigma_t^2)`` per
frequency (:mod:`bspm_jax.diffusion.schedule`, ``schedule``), at times ``t_k = tau k / T``.

Training (Algorithm 1, in :mod:`bspm_jax.training`): ``v_0 = U^T x_0``; the condition
``c`` is ``x_0`` with each interaction dropped with probability ``mask_ratio``, replaced
by the empty condition (``e = 0``) with probability ``p_uncond``; ``k`` uniform in 1..T;
the denoiser predicts ``v_0`` from ``v_t``, ``e = U^T c`` and ``t_k`` (MSE).

Sampling (Algorithm 2), with the whole history ``x`` as condition, ``e = U^T x``:
``v = alpha_tau e + sigma_tau eps``; for ``k = T, ..., 1``:
``v0 = phi(v, 0, t_k) + guidance (phi(v, e, t_k) - phi(v, 0, t_k))`` and, for ``k > 1``,
``v = alpha_{t_{k-1}} v0 + sigma_{t_{k-1}} eps_k``; the scores are ``U v0``.

Choices where the paper is silent (each a setting, selected on validation):

- guidance: ``phi_u + s (phi_c - phi_u)`` (Ho and Salimans' form written so that s = 1 is
  the conditional estimate and s = 0 the unconditional one);
- re-noising: the forward marginal at the previous time from the current estimate of
  ``v_0`` (fresh noise each step; ``sample_noise = False`` drops every noise term and
  makes sampling deterministic, as DiffRec's default inference is);
- network: FiLM with dense f, h (K -> K), a 16-dimensional sinusoidal step embedding and
  one tanh hidden layer of 1,000 units (DiffRec's ML-1M denoiser width);
- ablations: ``schedule = "ddpm"`` is VP with every frequency at d = 1 (the same caps
  alpha_min and sigma_max, so only the frequency dependence is removed); ``"ve"`` keeps
  VP's alpha_t and lets sigma_t = sigma_max t / tau grow alike for every frequency;
  ``fusion = "concat"`` feeds [v_t, e] to the MLP instead of FiLM.

On ML-1M (DiffRec's split) the 200 kept frequencies are d = 0 (the top vector) and then
0.89-0.97, so at tau = 1 the VP noise is close to isotropic there: measure before reading
the ablation as a statement about frequency-aware noise in general.

Noise at inference is keyed by ``fold_in(key(sample_seed), user)`` for users the model
was fitted on, so their scores do not depend on the batch they are scored in; a new
user's key uses its position in the batch instead.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..diffusion import DENOISERS, SCHEDULES, AbstractDenoiser, AbstractSchedule
from ..diffusion.denoiser import ACTIVATIONS
from ..runtime.checks import check_integer, check_number
from ..errors import ConfigError
from ..filtering.rows import SparseRows
from ..spectral import spectrum
from ..spectral.svd import DEFAULT_TOL, check_rank, check_svd_settings
from .base import Rows
from .trained import AbstractTrainedRecommender

_NEW_USER_OFFSET = 1 << 30  # new users' noise keys: fold_in(key, offset + position in the batch)


class SDiff(AbstractTrainedRecommender):
    """S-Diff: a denoiser of the spectrum ``U^T x`` conditioned on the history's spectrum (see the module).

    Xia et al., WSDM 2025; K, T and tau as in the module docstring (Algorithms 1 and 2).

    Attributes:
        rank: K, the top right singular vectors of X~ kept as the basis U, integer >= 1, < min(n_users, n_items) at init.
        steps: T, the diffusion steps at times t_k = tau k / T, integer >= 1.
        tau: the last diffusion time t_T, finite and > 0.
        alpha_min: floor of the signal coefficient alpha_t = (1 - alpha_min) lambda_t + alpha_min, in [0, 1].
        sigma_max: cap of the noise standard deviation sigma_t, in [0, 1].
        schedule: forward process, one of 'vp' (S-Diff-VP), 've', 'ddpm' (the paper's ablations).
        fusion: how the condition enters the denoiser, 'film' (FiLM) or 'concat' ([v_t, e] into the MLP).
        hidden: widths of the denoiser's hidden layers, list of integers >= 1.
        time_dim: width of the sinusoidal step embedding, integer >= 2.
        activation: of the denoiser's hidden layers, one of 'tanh', 'relu', 'silu'.
        mask_ratio: probability of dropping each interaction of the training condition c, in [0, 1].
        p_uncond: probability of training with the empty condition (for guidance), in [0, 1].
        guidance: scale s of phi_u + s (phi_c - phi_u), any finite number (1: conditional, 0: unconditional).
        sample_noise: draw fresh noise at each sampling step, True or False (False: deterministic sampling).
        sample_seed: seed of the sampling noise, integer >= 0.
        svd_solver: truncated SVD solver, one of 'auto', 'block', 'propack', 'arpack'.
        svd_tol: SVD stopping rule ||A v - s u|| <= svd_tol * s_1, in (0, 1).
    """

    name: ClassVar[str] = "s-diff"
    frozen: ClassVar[tuple[str, ...]] = ("basis", "frequencies")

    rank: int = eqx.field(static=True, default=200)
    steps: int = eqx.field(static=True, default=5)
    tau: float = eqx.field(static=True, default=1.0)
    alpha_min: float = eqx.field(static=True, default=0.1)
    sigma_max: float = eqx.field(static=True, default=0.5)
    schedule: str = eqx.field(static=True, default="vp")
    fusion: str = eqx.field(static=True, default="film")
    hidden: tuple[int, ...] = eqx.field(static=True, default=(1000,), converter=lambda v: tuple(v) if isinstance(v, list) else v)
    time_dim: int = eqx.field(static=True, default=16)
    activation: str = eqx.field(static=True, default="tanh")
    mask_ratio: float = eqx.field(static=True, default=0.5)
    p_uncond: float = eqx.field(static=True, default=0.02)
    guidance: float = eqx.field(static=True, default=1.0)
    sample_noise: bool = eqx.field(static=True, default=True)
    sample_seed: int = eqx.field(static=True, default=0)
    svd_solver: str = eqx.field(static=True, default="auto")
    svd_tol: float = eqx.field(static=True, default=DEFAULT_TOL)

    basis: Float[Array, "n_items k"] | None = None
    frequencies: Float[Array, " k"] | None = None
    denoiser: AbstractDenoiser | None = None

    def search_space(self) -> dict[str, tuple[Any, ...]]:
        """The learning rate only (no weight decay in the reference code)."""
        return {"train.lr": (1e-4, 3e-4)}

    def __check_init__(self) -> None:
        check_integer("rank", self.rank, 1)
        check_svd_settings(self.svd_solver, self.svd_tol)
        check_integer("steps", self.steps, 1)
        check_integer("time_dim", self.time_dim, 2)
        check_integer("sample_seed", self.sample_seed, 0)
        check_number("tau", self.tau, 0.0, strict_low=True)
        check_number("alpha_min", self.alpha_min, 0.0, 1.0)
        check_number("sigma_max", self.sigma_max, 0.0, 1.0)
        check_number("mask_ratio", self.mask_ratio, 0.0, 1.0)
        check_number("p_uncond", self.p_uncond, 0.0, 1.0)
        check_number("guidance", self.guidance, -math.inf)
        for name, table in (("schedule", SCHEDULES), ("fusion", DENOISERS), ("activation", ACTIVATIONS)):
            if getattr(self, name) not in table:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; available: {', '.join(table)}")
        if not isinstance(self.sample_noise, bool):
            raise ConfigError(f"sample_noise must be true or false, got {self.sample_noise!r}")
        if not (isinstance(self.hidden, tuple) and all(isinstance(w, numbers.Integral) and not isinstance(w, bool)
                                                         and w >= 1 for w in self.hidden)):
            raise ConfigError(f"hidden must be a list of layer widths >= 1, got {self.hidden!r}")

    # ------------------------------------------------------------------ fitting

    def init(self, key: jax.Array, train: sp.csr_matrix) -> SDiff:
        """The spectral basis of ``train`` (top-``rank`` right singular vectors of X~) and a fresh denoiser."""
        check_rank(self.rank, train.shape)
        spec = spectrum(train, self.rank, solver=self.svd_solver, tol=self.svd_tol)
        basis = jnp.asarray(spec.vectors.T.astype(np.float32))
        frequencies = jnp.asarray(np.clip(1.0 - spec.values**2, 0.0, 1.0).astype(np.float32))
        denoiser = DENOISERS[self.fusion].init(key, self.rank, self.hidden, self.time_dim, self.steps / self.tau,
                                               self.activation)
        return dataclasses.replace(self, basis=basis, frequencies=frequencies, denoiser=denoiser)

    # ------------------------------------------------------------------ the process

    def forward(self) -> AbstractSchedule:
        """The forward process of the ``schedule`` setting."""
        return SCHEDULES[self.schedule](self.alpha_min, self.sigma_max, self.tau)

    def times(self) -> Float[Array, " steps_plus_1"]:
        """t_k = tau k / T for k = 0..T."""
        return self.tau * jnp.arange(self.steps + 1, dtype=jnp.float32) / self.steps

    def coefficients(self, t: Float[Array, " b"]) -> tuple[Float[Array, "b k"], Float[Array, "b k"]]:
        """(alpha_t, sigma_t) of every kept frequency at each time."""
        return self.forward().coefficients(jnp.asarray(t, jnp.float32)[:, None], self.frequencies)

    def noised(self, v0: Float[Array, "b k"], t: Float[Array, " b"], noise: Float[Array, "b k"]) -> Float[Array, "b k"]:
        """A draw of q(v_t | v_0) = N(alpha_t v_0, sigma_t^2) given standard normal ``noise``."""
        alpha, sigma = self.coefficients(t)
        return alpha * v0 + sigma * noise

    def project(self, x: Float[Array, "b n_items"]) -> Float[Array, "b k"]:
        """The graph Fourier transform v = U^T x of dense rows."""
        return x @ self.basis

    def spectrum_of(self, rows: Rows) -> Float[Array, "b k"]:
        """U^T x of user rows, from the nonzeros when they are :class:`SparseRows`."""
        if isinstance(rows, SparseRows):
            return rows.matmul(self.basis)
        return self.project(rows)

    def denoise(self, v_t: Float[Array, "b k"], e: Float[Array, "b k"], t: Float[Array, " b"]) -> Float[Array, "b k"]:
        """phi(v_t, e, t): the denoiser's estimate of v_0."""
        return self.denoiser(v_t, e, t)

    def estimate(self, v_t: Float[Array, "b k"], e: Float[Array, "b k"], t: Float[Array, " b"]) -> Float[Array, "b k"]:
        """Guided estimate phi(v_t, 0, t) + guidance (phi(v_t, e, t) - phi(v_t, 0, t))."""
        cond = self.denoise(v_t, e, t)
        uncond = self.denoise(v_t, jnp.zeros_like(e), t)
        return uncond + self.guidance * (cond - uncond)

    def sample(self, e: Float[Array, "b k"], keys: jax.Array) -> Float[Array, "b k"]:
        """Algorithm 2 from the history spectrum ``e``, with one key per row; returns the estimate of v_0."""
        times = self.times()
        b = e.shape[0]
        scale = 1.0 if self.sample_noise else 0.0

        def noise(step: int) -> Array:
            return scale * jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, step), (self.rank,)))(keys)

        v = self.noised(e, jnp.full((b,), times[-1]), noise(self.steps))
        v0 = e
        for k in range(self.steps, 0, -1):
            v0 = self.estimate(v, e, jnp.full((b,), times[k]))
            if k > 1:
                v = self.noised(v0, jnp.full((b,), times[k - 1]), noise(k - 1))
        return v0

    def row_keys(self, users: Int[Array, " b"]) -> jax.Array:
        """Sampling keys: fold_in(key(sample_seed), user), a new user's from its position in the batch."""
        ids = jnp.where(users >= 0, users, _NEW_USER_OFFSET + jnp.arange(users.shape[0]))
        base = jax.random.key(self.sample_seed)
        return jax.vmap(lambda u: jax.random.fold_in(base, u))(ids)

    # ------------------------------------------------------------------ scoring

    @eqx.filter_jit
    def score(self, rows: Rows) -> Float[Array, "b n_items"]:
        """Scores U v0 of every item, v0 sampled from the rows' spectra (users from ``SparseRows.user``)."""
        self.require_fitted()
        users = rows.user if isinstance(rows, SparseRows) else jnp.full((rows.shape[0],), -1, jnp.int32)
        v0 = self.sample(self.spectrum_of(rows), self.row_keys(users))
        return v0 @ self.basis.T

    def score_with_stats(self, rows: Rows) -> tuple[Array, dict[str, Any]]:
        return self.score(rows), {}

    def scoring_bytes_per_user(self, n_items: int) -> int:
        width = max((self.rank, *self.hidden))
        return 3 * n_items * 4 + 8 * width * 4
