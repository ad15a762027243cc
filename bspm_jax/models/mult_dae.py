"""Mult-DAE (Liang et al., WWW 2018): a denoising autoencoder of the history with a multinomial likelihood.

``n_items -> 200 -> n_items`` with tanh on the code (``hidden`` adds tanh layers on both
sides, mirrored); the input is the history L2-normalised and, in training, with inverted
dropout (keep probability 1 - dropout), as in :mod:`bspm_jax.models.autoencoder`. The loss
of a batch (every user once per epoch, in :mod:`bspm_jax.training`) is

    mean_u [ -sum_i x_ui log softmax(logits_u)_i ] + reg sum_l |W_l|^2

over the weight matrices (not the biases); the scores are the logits of the undropped input.

Choices where the paper is silent, from Liang's reference code (``vae_cf``, the ML-20M
notebook): reg = 0.01 / 500 = 2e-5 (its ``lam = 0.01 / batch_size`` with batch size 500,
added as ``2 * l2_regularizer(lam)``, i.e. lam * sum W^2); Xavier-uniform weights and biases
from N(0, 0.001^2) truncated at two standard deviations. Departures as for Mult-VAE (see
:mod:`bspm_jax.models.mult_vae`): the first layer from the nonzeros, and selection on this
library's protocol.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ..diffusion.denoiser import Affine
from .autoencoder import AbstractAutoencoder, layer_widths


class MultDAE(AbstractAutoencoder):
    """Mult-DAE: tanh MLP encoder to a ``latent``-wide code, tanh MLP decoder to item logits; no divergence term.

    Liang et al., WWW 2018; the defaults are the paper's [n_items -> 200 -> n_items] and Liang's code (reg 2e-5).

    Attributes:
        hidden: tanh hidden layer widths, n_items -> hidden... -> code (mirrored in the decoder), list of integers >= 1.
        latent: size of the code z the decoder reads, integer >= 1 (the paper's 200).
        dropout: probability of dropping each input interaction in training (inverted), in [0, 1) (the paper's 0.5).
        reg: weight of the L2 term reg * sum of squared layer weights (biases excluded), finite and >= 0 (Liang's lam).
        bias_scale: initial biases' N(0, bias_scale^2) standard deviation (cut at 2 sd), finite and >= 0 (Liang's 0.001).
        kernel: first-layer product path, 'auto', 'avx512', 'avx2', 'baseline' or 'jax'; a named path must run here.
    """

    name: ClassVar[str] = "mult-dae"

    hidden: tuple[int, ...] = eqx.field(static=True, default=(), converter=layer_widths)
    latent: int = eqx.field(static=True, default=200)
    dropout: float = eqx.field(static=True, default=0.5)
    reg: float = eqx.field(static=True, default=2e-5)
    bias_scale: float = eqx.field(static=True, default=0.001)
    kernel: str = eqx.field(static=True, default="auto")

    encoder: tuple[Affine, ...] | None = None
    decoder: tuple[Affine, ...] | None = None

    def code_width(self) -> int:
        return self.latent

    def code(self, h: Float[Array, "b c"]) -> Float[Array, "b latent"]:
        """tanh(h)."""
        return jnp.tanh(h)

    def sample_code(self, h: Float[Array, "b c"], key: jax.Array) -> tuple[Float[Array, "b latent"], Float[Array, " b"]]:
        """tanh(h) and no divergence (zeros)."""
        return jnp.tanh(h), jnp.zeros(h.shape[:1], h.dtype)

    def divergence_weight(self, step: Int[Array, ""]) -> Float[Array, ""]:
        return jnp.float32(0.0)
