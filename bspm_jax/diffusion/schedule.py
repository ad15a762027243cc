"""Forward processes q(v_t | v_0) = N(alpha_t v_0, sigma_t^2 I) on graph frequencies d (S-Diff, Eqs. 9-14).

``d_i = 1 - s_i^2`` are the Laplacian eigenvalues of the kept eigenvectors (``s_i`` the
singular values of the normalised interactions), so ``d`` is in [0, 1] and the heat kernel
``lambda_t = exp(-t d)`` is BSPM's blur in the spectral domain.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

Coefficients = tuple[Float[Array, "*b k"], Float[Array, "*b k"]]


class AbstractSchedule(eqx.Module):
    """alpha_t and sigma_t of each frequency; alpha_0 = 1 and sigma_0 = 0 (no noise at t = 0)."""

    alpha_min: float = eqx.field(static=True)
    sigma_max: float = eqx.field(static=True)
    tau: float = eqx.field(static=True)

    name: ClassVar[str]

    @abc.abstractmethod
    def coefficients(self, t: Float[Array, "*b 1"], d: Float[Array, " k"]) -> Coefficients:
        """(alpha_t, sigma_t) broadcast over times ``t`` and frequencies ``d``."""


def _alpha(lam: Array, alpha_min: float) -> Array:
    return (1.0 - alpha_min) * lam + alpha_min


def _vp_sigma(rate: Array, sigma_max: float) -> Array:
    """min(sqrt(1 - exp(-rate)^2), sigma_max), with 1 - exp(-2 rate) as -expm1(-2 rate) (exact for small rates)."""
    return jnp.minimum(jnp.sqrt(-jnp.expm1(-2.0 * rate)), sigma_max)


class VPSchedule(AbstractSchedule):
    """S-Diff-VP: lambda_t = exp(-t d), alpha_t = (1 - alpha_min) lambda_t + alpha_min, sigma_t = min(sqrt(1 - lambda_t^2), sigma_max)."""

    name: ClassVar[str] = "vp"

    def coefficients(self, t: Float[Array, "*b 1"], d: Float[Array, " k"]) -> Coefficients:
        rate = t * d
        return _alpha(jnp.exp(-rate), self.alpha_min), _vp_sigma(rate, self.sigma_max)


class VESchedule(AbstractSchedule):
    """S-Diff-VE: alpha_t as VP, sigma_t = sigma_max t / tau for every frequency (not tied to lambda_t)."""

    name: ClassVar[str] = "ve"

    def coefficients(self, t: Float[Array, "*b 1"], d: Float[Array, " k"]) -> Coefficients:
        lam = jnp.exp(-t * d)
        return _alpha(lam, self.alpha_min), jnp.broadcast_to(self.sigma_max * t / self.tau, lam.shape)


class DDPMSchedule(AbstractSchedule):
    """Isotropic DDPM in the spectral domain: VP with every frequency at d = 1, so alpha_t, sigma_t ignore d."""

    name: ClassVar[str] = "ddpm"

    def coefficients(self, t: Float[Array, "*b 1"], d: Float[Array, " k"]) -> Coefficients:
        rate = jnp.broadcast_to(t, jnp.broadcast_shapes(jnp.shape(t), jnp.shape(d)))
        return _alpha(jnp.exp(-rate), self.alpha_min), _vp_sigma(rate, self.sigma_max)


SCHEDULES: dict[str, type[AbstractSchedule]] = {s.name: s for s in (VPSchedule, VESchedule, DDPMSchedule)}
"""The forward processes by the name of the ``schedule`` setting."""


def log_snr(schedule: AbstractSchedule, t: Float[Array, " n"], d: Float[Array, " k"]) -> Float[Array, "n k"]:
    """log(alpha_t^2 / sigma_t^2) at each time and frequency (Fig. 3 of S-Diff); +inf where sigma_t = 0."""
    alpha, sigma = schedule.coefficients(jnp.asarray(t)[:, None], jnp.asarray(d))
    return 2.0 * (jnp.log(alpha) - jnp.log(sigma))
