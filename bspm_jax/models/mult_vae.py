"""Mult-VAE (Liang et al., WWW 2018): a variational autoencoder of the history with a multinomial likelihood.

The encoder ``n_items -> 600 -> 2 x 200`` (tanh hidden layer) gives the mean ``mu`` and the
log-variance ``logvar`` of q(z | x) = N(mu, diag(exp(logvar))); the decoder ``200 -> 600 ->
n_items`` (tanh) gives the logits of pi(z) = softmax(logits). Its input is the history
L2-normalised and, in training, with inverted dropout (keep probability 1 - dropout), as
in :mod:`bspm_jax.models.autoencoder`.

Training (in :mod:`bspm_jax.training`, every user once per epoch): z = mu + exp(logvar/2) eps
and the loss of a batch is

    mean_u [ -sum_i x_ui log pi_i(z_u) + beta KL(N(mu_u, sigma_u^2) || N(0, I)) ] + reg sum_l |W_l|^2,

KL = 1/2 sum_k (-logvar_k + exp(logvar_k) + mu_k^2 - 1), with beta = min(anneal_cap,
step / anneal_steps) at the 0-based update ``step`` (anneal_steps = 0: beta = anneal_cap
throughout). Scoring uses z = mu: the scores are the decoder's logits.

Choices where the paper is silent, taken from Liang's reference code (``vae_cf``, the
ML-20M notebook): Xavier-uniform weights and biases from N(0, 0.001^2) truncated at two
standard deviations; beta counts updates from 0 (the first step has beta = 0); the KL is
summed over the latent dimensions and averaged over the batch like the likelihood;
reg = 0 (the notebook's Mult-VAE has lam = 0.0). Departures: the first layer is computed
from the history's nonzeros (the same sum, rounded in another order), and the models are
selected on this library's protocol (held-out items of the train users, e.g. recall@20)
rather than the paper's strong generalisation on held-out users (NDCG@100).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ..runtime.checks import check_integer, check_number
from ..diffusion.denoiser import Affine
from .autoencoder import AbstractAutoencoder, layer_widths


class MultVAE(AbstractAutoencoder):
    """Mult-VAE: encoder to (mu, logvar) of a ``latent``-dimensional Gaussian, tanh MLP decoder to item logits.

    Liang et al., WWW 2018; the defaults are the paper's [n_items -> 600 -> 200 -> 600 -> n_items] and Liang's code.

    Attributes:
        hidden: tanh hidden layer widths, n_items -> hidden... -> code (mirrored in the decoder), list of integers >= 1.
        latent: size of the code z the decoder reads, integer >= 1 (the paper's 200).
        dropout: probability of dropping each input interaction in training (inverted), in [0, 1) (the paper's 0.5).
        anneal_cap: cap of the KL weight beta = min(anneal_cap, step / anneal_steps), finite and >= 0 (the paper's 0.2).
        anneal_steps: updates over which beta rises to anneal_cap, integer >= 0; 0: beta = anneal_cap (Liang's 200,000).
        reg: weight of the L2 term reg * sum of squared layer weights (biases excluded), finite and >= 0 (Liang's lam).
        bias_scale: initial biases' N(0, bias_scale^2) standard deviation (cut at 2 sd), finite and >= 0 (Liang's 0.001).
        kernel: first-layer product path, 'auto', 'avx512', 'avx2', 'baseline' or 'jax'; a named path must run here.
    """

    name: ClassVar[str] = "mult-vae"

    hidden: tuple[int, ...] = eqx.field(static=True, default=(600,), converter=layer_widths)
    latent: int = eqx.field(static=True, default=200)
    dropout: float = eqx.field(static=True, default=0.5)
    anneal_cap: float = eqx.field(static=True, default=0.2)
    anneal_steps: int = eqx.field(static=True, default=200_000)
    reg: float = eqx.field(static=True, default=0.0)
    bias_scale: float = eqx.field(static=True, default=0.001)
    kernel: str = eqx.field(static=True, default="auto")

    encoder: tuple[Affine, ...] | None = None
    decoder: tuple[Affine, ...] | None = None

    def __check_init__(self) -> None:
        check_number("anneal_cap", self.anneal_cap, 0.0)
        check_integer("anneal_steps", self.anneal_steps, 0)

    def code_width(self) -> int:
        return 2 * self.latent

    def posterior(self, h: Float[Array, "b c"]) -> tuple[Float[Array, "b latent"], Float[Array, "b latent"]]:
        """(mu, logvar) of q(z | x) from the encoder's output."""
        return h[:, : self.latent], h[:, self.latent :]

    def code(self, h: Float[Array, "b c"]) -> Float[Array, "b latent"]:
        """z = mu."""
        return self.posterior(h)[0]

    def sample_code(self, h: Float[Array, "b c"], key: jax.Array) -> tuple[Float[Array, "b latent"], Float[Array, " b"]]:
        """z = mu + exp(logvar / 2) eps (reparameterised) and KL(q(z | x) || N(0, I)) per row."""
        mu, logvar = self.posterior(h)
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)
        return z, kl_divergence(mu, logvar)

    def divergence_weight(self, step: Int[Array, ""]) -> Float[Array, ""]:
        """beta = min(anneal_cap, step / anneal_steps); anneal_cap when anneal_steps = 0."""
        if self.anneal_steps == 0:
            return jnp.float32(self.anneal_cap)
        return jnp.minimum(jnp.float32(self.anneal_cap), jnp.asarray(step, jnp.float32) / self.anneal_steps)


def kl_divergence(mu: Float[Array, "b k"], logvar: Float[Array, "b k"]) -> Float[Array, " b"]:
    """KL(N(mu, exp(logvar)) || N(0, I)) = 1/2 sum_k (-logvar_k + exp(logvar_k) + mu_k^2 - 1)."""
    return 0.5 * jnp.sum(-logvar + jnp.exp(logvar) + mu**2 - 1.0, axis=-1)
