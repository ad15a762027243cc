"""GiffCF's denoiser (Zhu et al., SIGIR 2024, Section 4.3): an estimate of x_0 in item space.

From the filtered signal ``z_t``, the condition ``c`` (the history, dropped out in training),
its smoothed version ``A c`` and the step ``t`` (an integer in 1..T):

- two scalar time codes ``tau_1(t)``, ``tau_2(t)``: a sinusoidal embedding of ``t`` (width
  ``time_dim``), a dense layer with the activation, a dense layer to one number;
- latent mixing: ``h = m_1(z_t E / n_items, c E / max(|c|_1, 1), tau_1)``, ``E`` the
  (n_items, d) item embeddings, ``m_1`` one small MLP applied to each of the d coordinates
  on its three channels (3 -> ``mixer_hidden`` -> 1);
- score mixing: ``x_0 ~ m_2(h E^T, c, A c, tau_2)``, the same kind of MLP on each item's
  four channels (4 -> ``mixer_hidden`` -> 1).

Every dense layer is an :class:`Affine` (Xavier-uniform weights, zero biases, as Keras's
defaults are); the item table is Xavier-uniform over its (n_items, d) shape.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .denoiser import ACTIVATIONS, Affine, time_embedding


class ChannelMixer(eqx.Module):
    """One small MLP ``n_in -> hidden -> 1`` applied to every position of stacked channels."""

    hidden: Affine
    out: Affine

    @classmethod
    def init(cls, key: jax.Array, n_in: int, hidden: int) -> ChannelMixer:
        kh, ko = jax.random.split(key)
        return cls(Affine.init(kh, n_in, hidden), Affine.init(ko, hidden, 1))

    def __call__(self, channels: list[Array], activation: str) -> Array:
        """The MLP on ``stack(channels, -1)`` (each of one shape, scalars broadcast), squeezed back."""
        shape = jnp.broadcast_shapes(*(jnp.shape(c) for c in channels))
        x = jnp.stack([jnp.broadcast_to(c, shape) for c in channels], axis=-1)
        return self.out(ACTIVATIONS[activation](self.hidden(x)))[..., 0]


class TimeCode(eqx.Module):
    """A scalar code of the step: sinusoids of width ``time_dim``, dense with the activation, dense to 1."""

    hidden: Affine
    out: Affine

    @classmethod
    def init(cls, key: jax.Array, time_dim: int) -> TimeCode:
        kh, ko = jax.random.split(key)
        return cls(Affine.init(kh, time_dim, time_dim), Affine.init(ko, time_dim, 1))

    def __call__(self, t: Int[Array, " b"], activation: str) -> Float[Array, "b 1"]:
        emb = time_embedding(t.astype(jnp.float32), self.hidden.weight.shape[0])
        return self.out(ACTIVATIONS[activation](self.hidden(emb)))


class ItemDenoiser(eqx.Module):
    """GiffCF's denoiser phi(z_t, c, A c, t) -> x_0 (see the module)."""

    item_embedding: Float[Array, "n_items d"]
    time_latent: TimeCode
    time_score: TimeCode
    latent_mixer: ChannelMixer
    score_mixer: ChannelMixer
    activation: str = eqx.field(static=True)

    @classmethod
    def init(cls, key: jax.Array, n_items: int, dim: int, time_dim: int, mixer_hidden: int,
             activation: str) -> ItemDenoiser:
        ke, k1, k2, km1, km2 = jax.random.split(key, 5)
        limit = math.sqrt(6.0 / (n_items + dim))
        table = jax.random.uniform(ke, (n_items, dim), jnp.float32, -limit, limit)
        return cls(table, TimeCode.init(k1, time_dim), TimeCode.init(k2, time_dim),
                   ChannelMixer.init(km1, 3, mixer_hidden), ChannelMixer.init(km2, 4, mixer_hidden), activation)

    def __call__(self, z_t: Float[Array, "b n_items"], c: Float[Array, "b n_items"], ac: Float[Array, "b n_items"],
                 t: Int[Array, " b"]) -> Float[Array, "b n_items"]:
        table = self.item_embedding
        n_items = table.shape[0]
        norm = jnp.maximum(jnp.sum(jnp.abs(c), axis=-1, keepdims=True), 1.0)
        latent = self.latent_mixer([(z_t / n_items) @ table, (c / norm) @ table, self.time_latent(t, self.activation)],
                                   self.activation)
        return self.score_mixer([latent @ table.T, c, ac, self.time_score(t, self.activation)], self.activation)
