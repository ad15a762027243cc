"""Denoisers phi(v_t, e, t) -> v_0 of spectral diffusion: e = U^T c the condition's spectrum (S-Diff, Eq. 16).

Every network is built from :class:`Affine` layers (arrays only, so any saved model holds
them). The time enters as a sinusoidal embedding of the step number ``t * time_scale``
(``time_scale = T / tau``: steps 1..T), passed through a dense layer, as DiffRec does;
the hidden layers use tanh, the output layer is linear.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"tanh": jnp.tanh, "relu": jax.nn.relu, "silu": jax.nn.silu}


class Affine(eqx.Module):
    """x W + b, W of shape (n_in, n_out), Xavier-uniform initialised, b = 0."""

    weight: Float[Array, "n_in n_out"]
    bias: Float[Array, " n_out"]

    @classmethod
    def init(cls, key: jax.Array, n_in: int, n_out: int) -> Affine:
        limit = math.sqrt(6.0 / (n_in + n_out))
        weight = jax.random.uniform(key, (n_in, n_out), jnp.float32, -limit, limit)
        return cls(weight, jnp.zeros((n_out,), jnp.float32))

    def __call__(self, x: Float[Array, "*b n_in"]) -> Float[Array, "*b n_out"]:
        return x @ self.weight + self.bias


def time_embedding(steps: Float[Array, " b"], dim: int, max_period: float = 10_000.0) -> Float[Array, "b dim"]:
    """[cos(steps w_j), sin(steps w_j)], w_j = max_period^(-j / (dim/2)), j < dim/2 (zero-padded to odd ``dim``)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / max(half, 1))
    angles = steps[:, None].astype(jnp.float32) * freqs[None, :]
    emb = jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim - 2 * half)))


def _mlp(key: jax.Array, widths: list[int]) -> tuple[Affine, ...]:
    keys = jax.random.split(key, len(widths) - 1)
    return tuple(Affine.init(k, a, b) for k, a, b in zip(keys, widths[:-1], widths[1:]))


def _run_mlp(layers: tuple[Affine, ...], x: Array, activation: str) -> Array:
    act = ACTIVATIONS[activation]
    for layer in layers[:-1]:
        x = act(layer(x))
    return layers[-1](x)


class AbstractDenoiser(eqx.Module):
    """An estimate of v_0 from the noisy spectrum v_t, the condition's spectrum e and the time t."""

    time: Affine
    layers: tuple[Affine, ...]
    time_dim: int = eqx.field(static=True)
    time_scale: float = eqx.field(static=True)
    activation: str = eqx.field(static=True)

    @abc.abstractmethod
    def features(self, v_t: Float[Array, "b k"], e: Float[Array, "b k"]) -> Float[Array, "b f"]:
        """The network's input before the time embedding is appended."""

    def __call__(self, v_t: Float[Array, "b k"], e: Float[Array, "b k"], t: Float[Array, " b"]) -> Float[Array, "b k"]:
        temb = self.time(time_embedding(t * self.time_scale, self.time_dim))
        return _run_mlp(self.layers, jnp.concatenate([self.features(v_t, e), temb], axis=-1), self.activation)


class FiLMDenoiser(AbstractDenoiser):
    """FiLM fusion (S-Diff): gamma = f(e), beta = h(e) (dense, K -> K), v = v_t + gamma * e + beta, then the MLP."""

    gamma: Affine
    beta: Affine

    @classmethod
    def init(cls, key: jax.Array, k: int, hidden: tuple[int, ...], time_dim: int, time_scale: float,
             activation: str) -> FiLMDenoiser:
        kg, kb, kt, km = jax.random.split(key, 4)
        return cls(Affine.init(kt, time_dim, time_dim), _mlp(km, [k + time_dim, *hidden, k]), time_dim,
                   float(time_scale), activation, Affine.init(kg, k, k), Affine.init(kb, k, k))

    def features(self, v_t: Float[Array, "b k"], e: Float[Array, "b k"]) -> Float[Array, "b k"]:
        return v_t + self.gamma(e) * e + self.beta(e)


class ConcatDenoiser(AbstractDenoiser):
    """The ablation of S-Diff's Fig. 6: [v_t, e] concatenated into the MLP, no FiLM."""

    @classmethod
    def init(cls, key: jax.Array, k: int, hidden: tuple[int, ...], time_dim: int, time_scale: float,
             activation: str) -> ConcatDenoiser:
        kt, km = jax.random.split(key)
        return cls(Affine.init(kt, time_dim, time_dim), _mlp(km, [2 * k + time_dim, *hidden, k]), time_dim,
                   float(time_scale), activation)

    def features(self, v_t: Float[Array, "b k"], e: Float[Array, "b k"]) -> Float[Array, "b 2*k"]:
        return jnp.concatenate([v_t, e], axis=-1)


DENOISERS: dict[str, type[FiLMDenoiser] | type[ConcatDenoiser]] = {"film": FiLMDenoiser, "concat": ConcatDenoiser}
"""The denoisers by the name of the ``fusion`` setting."""
