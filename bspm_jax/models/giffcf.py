"""GiffCF (Zhu et al., SIGIR 2024): a graph-signal diffusion model whose forward process is a filter.

The item graph is ``R = D_U^-1/4 X D_I^-1/2`` (X the binary train matrix, D_U and D_I its
user and item degrees; an empty row or column stays 0), and the smoothing operator is
``A x = x R^T R / lambda_1``, ``lambda_1`` the largest eigenvalue of ``R^T R`` (so A's
spectrum lies in [0, 1]). With an ideal low-pass of weight w > 0 it becomes
``(A x + w x V V^T) / (1 + w)``, V the top ``ideal_cutoff`` eigenvectors of ``R^T R``.

The forward process moves a history x toward its smoothed version over T steps,
deterministically: ``z_t = F(x, t) = x + alpha (t / T) (A x - x)``, t = 0..T, plus
``noise_scale * noise_decay^(T - t) * eps`` in training when ``noise_scale > 0``.

Training (in :mod:`bspm_jax.training`): t uniform in 1..T; the condition c is x with each
interaction dropped with probability ``dropout`` and the rest scaled by 1 / (1 - dropout);
the loss is sum_i (x_i - phi(z_t, c, A c, t)_i)^2, averaged over the batch's users
(:mod:`bspm_jax.diffusion.item_denoiser` holds phi).

Sampling, from the history x as condition, deterministic: ``z = F(x, T)``; for t = T..1,
s = t - 1: ``x^ = phi(z, x, A x, t)``, ``z <- F(x^, s) + noise_decay^(t - s) (z - F(x^, t))``
(with ``noise_decay = 0``: ``z <- F(x^, s)``); the scores are the last z. Every setting is
GiffCF's ML-1M configuration by default.

With ``heads = H > 1`` the model is a deep ensemble: H denoisers initialised independently,
each trained on the same batches with its own draws of t, dropout and noise (the loss is
the sum of theirs), and the scores are the mean of the H sampled x_0. The first head is
drawn exactly as a one-head model's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..runtime import native as native_kernel
from ..runtime.checks import check_integer, check_number
from ..diffusion.denoiser import ACTIVATIONS
from ..diffusion.item_denoiser import ItemDenoiser
from ..errors import ConfigError
from ..filtering.operators import SparseMatrix
from ..filtering.rows import as_dense
from ..spectral import degree_power
from ..spectral.svd import DEFAULT_TOL, check_rank, check_svd_settings, truncated_svd
from .base import Rows
from .trained import AbstractTrainedRecommender


def giffcf_graph(train: sp.spmatrix) -> sp.csr_matrix:
    """``R = D_U^-1/4 X D_I^-1/2`` (float64) of a binary interaction matrix X."""
    x = sp.csr_matrix(train, dtype=np.float64)
    users = degree_power(np.asarray(x.sum(axis=1)).ravel(), -0.25)
    items = degree_power(np.asarray(x.sum(axis=0)).ravel(), -0.5)
    return sp.csr_matrix(sp.diags(users) @ x @ sp.diags(items))


class GiffCF(AbstractTrainedRecommender):
    """GiffCF: a denoiser of item-space histories under a graph-filter forward process (see the module).

    Zhu et al., SIGIR 2024; the defaults are GiffCF's ML-1M configuration.

    Attributes:
        embed_dim: width d of the item embeddings, integer >= 1.
        steps: T, the number of diffusion steps, integer >= 1.
        alpha: strength of the forward filter, z_T = x + alpha (A x - x), finite and >= 0.
        dropout: share of the condition's interactions dropped in training (rest scaled up), in [0, 1).
        ideal_weight: weight w of the ideal low-pass, smoothing (A x + w x V V^T) / (1 + w), finite and >= 0; 0: none.
        ideal_cutoff: eigenvectors in the ideal low-pass V, integer >= 1, < min(n_users, n_items) when ideal_weight > 0.
        noise_scale: standard deviation of the training noise at t = T, finite and >= 0; 0: none.
        noise_decay: training noise's decay per step back from T, and the sampler's carry of z - F(x^, t), >= 0.
        time_dim: width of the sinusoidal step embedding and its hidden layer, integer >= 2.
        mixer_hidden: hidden units of the two per-coordinate mixers, integer >= 1.
        heads: denoisers trained side by side whose sampled scores are averaged, integer >= 1 (1: one denoiser).
        activation: of every hidden layer, one of 'silu' (Keras's swish), 'tanh', 'relu'.
        kernel: product path, one of 'auto', 'avx512', 'avx2', 'baseline' (native CPU kernel) or 'jax' (pure JAX).
        svd_solver: SVD giving lambda_1 and V, one of 'auto', 'block', 'propack', 'arpack'.
        svd_tol: SVD stopping rule ||A v - s u|| <= svd_tol * s_1, in (0, 1).
    """

    name: ClassVar[str] = "giffcf"
    frozen: ClassVar[tuple[str, ...]] = ("graph", "ideal_basis")

    embed_dim: int = eqx.field(static=True, default=200)
    steps: int = eqx.field(static=True, default=3)
    alpha: float = eqx.field(static=True, default=1.5)
    dropout: float = eqx.field(static=True, default=0.5)
    ideal_weight: float = eqx.field(static=True, default=0.0)
    ideal_cutoff: int = eqx.field(static=True, default=200)
    noise_scale: float = eqx.field(static=True, default=0.0)
    noise_decay: float = eqx.field(static=True, default=0.5)
    time_dim: int = eqx.field(static=True, default=20)
    mixer_hidden: int = eqx.field(static=True, default=2)
    heads: int = eqx.field(static=True, default=1)
    activation: str = eqx.field(static=True, default="silu")
    kernel: str = eqx.field(static=True, default="auto")
    svd_solver: str = eqx.field(static=True, default="auto")
    svd_tol: float = eqx.field(static=True, default=DEFAULT_TOL)

    graph: SparseMatrix | None = None
    """R / sqrt(lambda_1), so that its Gram product is A's propagation term."""
    ideal_basis: Float[Array, "n_items cutoff"] | None = None
    denoiser: ItemDenoiser | None = None
    extra_heads: ItemDenoiser | None = None
    """Heads 2..H, their arrays stacked on a leading axis (None with one head)."""

    def search_space(self) -> dict[str, tuple[Any, ...]]:
        """The learning rate only: each run takes minutes to hundreds of epochs."""
        return {"train.lr": (5e-4, 1e-3)}

    def __check_init__(self) -> None:
        for name in ("embed_dim", "steps", "ideal_cutoff", "mixer_hidden", "heads"):
            check_integer(name, getattr(self, name), 1)
        check_integer("time_dim", self.time_dim, 2)
        check_number("alpha", self.alpha, 0.0)
        check_number("dropout", self.dropout, 0.0, 1.0)
        if self.dropout >= 1.0:
            raise ConfigError(f"dropout must be below 1 (some of the condition must be kept), got {self.dropout!r}")
        check_number("ideal_weight", self.ideal_weight, 0.0)
        check_number("noise_scale", self.noise_scale, 0.0)
        check_number("noise_decay", self.noise_decay, 0.0)
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; available: {', '.join(ACTIVATIONS)}")
        native_kernel.check_choice(self.kernel)
        check_svd_settings(self.svd_solver, self.svd_tol)

    # ------------------------------------------------------------------ fitting

    def init(self, key: jax.Array, train: sp.csr_matrix) -> GiffCF:
        """The item graph of ``train`` (scaled by its top eigenvalue), the ideal basis when used, a fresh denoiser."""
        n_users, n_items = train.shape
        if min(n_users, n_items) < 2:
            raise ConfigError(f"GiffCF needs at least 2 users and 2 items, got a {n_users} x {n_items} matrix")
        cutoff = self.ideal_cutoff if self.ideal_weight > 0 else 1
        check_rank(cutoff, train.shape, "ideal_cutoff")
        r = giffcf_graph(train)
        s, vt = truncated_svd(r, cutoff, solver=self.svd_solver, tol=self.svd_tol)
        if not s[0] > 0:
            raise ConfigError("GiffCF needs a train matrix with at least one interaction")
        basis = jnp.asarray(vt.T.astype(np.float32)) if self.ideal_weight > 0 else None

        def draw(k: jax.Array) -> ItemDenoiser:
            return ItemDenoiser.init(k, n_items, self.embed_dim, self.time_dim, self.mixer_hidden, self.activation)

        extra = None if self.heads == 1 else eqx.filter_vmap(draw)(self.extra_keys(key))
        return dataclasses.replace(self, graph=SparseMatrix.from_scipy(r / s[0], kernel=self.kernel),
                                   ideal_basis=basis, denoiser=draw(key), extra_heads=extra)

    def extra_keys(self, key: jax.Array) -> jax.Array:
        """The keys of heads 2..H, from the key of head 1."""
        return jax.random.split(jax.random.fold_in(key, 1), self.heads - 1)

    # ------------------------------------------------------------------ the process

    def smooth(self, x: Float[Array, "b n_items"]) -> Float[Array, "b n_items"]:
        """A x = x R^T R / lambda_1, mixed with the ideal low-pass x V V^T when ``ideal_weight > 0``."""
        ax = self.graph.gram(x)
        if self.ideal_basis is None:
            return ax
        return (ax + self.ideal_weight * ((x @ self.ideal_basis) @ self.ideal_basis.T)) / (1.0 + self.ideal_weight)

    def filtered(self, x: Float[Array, "*h b n_items"], ax: Float[Array, "*h b n_items"],
                 t: Int[Array, " b"] | int) -> Float[Array, "*h b n_items"]:
        """F(x, t) = x + alpha (t / T) (A x - x), given A x."""
        w = self.alpha * jnp.asarray(t, jnp.float32) / self.steps
        return x + jnp.expand_dims(w, -1) * (ax - x)

    def noise_std(self, t: Int[Array, " b"]) -> Float[Array, " b"]:
        """noise_scale * noise_decay^(T - t): the training noise at step t."""
        return self.noise_scale * jnp.power(jnp.float32(self.noise_decay), (self.steps - t).astype(jnp.float32))

    def denoise(self, z_t: Float[Array, "b n_items"], c: Float[Array, "b n_items"], ac: Float[Array, "b n_items"],
                t: Int[Array, " b"]) -> Float[Array, "b n_items"]:
        """phi(z_t, c, A c, t): the first head's estimate of x_0."""
        return self.denoiser(z_t, c, ac, t)

    def smooth_rows(self, y: Float[Array, "*h b n_items"]) -> Float[Array, "*h b n_items"]:
        """:meth:`smooth` of rows stacked on leading axes (one sparse product for all; it is not vmapped)."""
        return self.smooth(y.reshape(-1, y.shape[-1])).reshape(y.shape)

    def corrupted(self, x: Float[Array, "b n_items"], key: jax.Array,
                  ax: Float[Array, "b n_items"] | None = None) -> tuple[Float[Array, "b n_items"],
                                                                          Float[Array, "b n_items"], Int[Array, " b"]]:
        """A training draw (z_t, c, t): t uniform in 1..T, z_t = F(x, t) (+ noise), c = x dropped out and rescaled
        (``ax``: A x when known)."""
        k_time, k_drop, k_noise = jax.random.split(key, 3)
        t = jax.random.randint(k_time, (x.shape[0],), 1, self.steps + 1)
        z_t = self.filtered(x, self.smooth(x) if ax is None else ax, t)
        if self.noise_scale > 0:
            z_t = z_t + self.noise_std(t)[:, None] * jax.random.normal(k_noise, x.shape)
        keep = jax.random.bernoulli(k_drop, 1.0 - self.dropout, x.shape)
        return z_t, jnp.where(keep, x / (1.0 - self.dropout), 0.0), t

    def training_error(self, x: Float[Array, "b n_items"], key: jax.Array) -> Float[Array, " b"]:
        """sum_i (x_i - phi(z_t, c, A c, t)_i)^2 of each row for the draw :meth:`corrupted` makes from ``key``,
        summed over the heads (head h > 1 draws from its own key, :meth:`extra_keys`)."""
        z_t, c, t = self.corrupted(x, key)
        error = jnp.sum((x - self.denoise(z_t, c, self.smooth(c), t)) ** 2, axis=-1)
        if self.extra_heads is None:
            return error
        ax = self.smooth(x)
        z_t, c, t = jax.vmap(lambda k: self.corrupted(x, k, ax))(self.extra_keys(key))
        pred = eqx.filter_vmap(lambda d, *a: d(*a))(self.extra_heads, z_t, c, self.smooth_rows(c), t)
        return error + jnp.sum((x - pred) ** 2, axis=(0, 2))

    def sample(self, x: Float[Array, "b n_items"]) -> Float[Array, "b n_items"]:
        """The reverse process from the history ``x`` (see the module), averaged over the heads: the scores."""
        b = x.shape[0]
        ax = self.smooth(x)
        z = self.filtered(x, ax, self.steps)
        scores = self.reverse(lambda zt, t: self.denoise(zt, x, ax, jnp.full((b,), t, jnp.int32)), z)
        if self.extra_heads is None:
            return scores
        heads = eqx.filter_vmap(lambda d, zt, t: d(zt, x, ax, jnp.full((b,), t, jnp.int32)),
                                in_axes=(eqx.if_array(0), 0, None))
        extra = self.reverse(lambda zt, t: heads(self.extra_heads, zt, t), jnp.broadcast_to(z, (self.heads - 1, *z.shape)))
        return (scores + jnp.sum(extra, axis=0)) / self.heads

    def reverse(self, denoise: Callable[[Array, int], Array], z: Float[Array, "*h b n_items"]) -> Float[Array, "*h b n_items"]:
        """The reverse steps t = T..1 from z_T = ``z``, with ``denoise(z_t, t)`` the estimate of x_0 (rows may be
        stacked on leading axes, one stack per head)."""
        for t in range(self.steps, 0, -1):
            x_hat = denoise(z, t)
            ax_hat = self.smooth_rows(x_hat)
            z_s = self.filtered(x_hat, ax_hat, t - 1)
            z = z_s + self.noise_decay * (z - self.filtered(x_hat, ax_hat, t)) if self.noise_decay > 0 else z_s
        return z

    # ------------------------------------------------------------------ scoring

    @eqx.filter_jit
    def score(self, rows: Rows) -> Float[Array, "b n_items"]:
        """The sampled x_0 of every row's history (deterministic)."""
        self.require_fitted()
        return self.sample(as_dense(rows).astype(jnp.float32))

    def score_with_stats(self, rows: Rows) -> tuple[Array, dict[str, Any]]:
        return self.score(rows), {}

    def scoring_bytes_per_user(self, n_items: int) -> int:
        return (24 * n_items + 4 * self.embed_dim) * 4 * self.heads
