"""Autoencoders of a user's interaction history (Liang et al., WWW 2018): the base of Mult-VAE and Mult-DAE.

A history row ``x`` is L2-normalised, ``x / |x|``, and (in training only) its nonzeros are
dropped with probability ``dropout`` and the kept ones scaled by ``1 / (1 - dropout)``
(inverted dropout, as ``tf.nn.dropout``). The encoder is a tanh MLP of :class:`Affine`
layers ``n_items -> hidden... -> code``; a model-specific step turns its output into the
decoder's input ``z`` (:meth:`AbstractAutoencoder.code`), and the decoder, the tanh MLP
``latent -> reversed(hidden)... -> n_items``, gives the logits of a softmax over the items.
The scores are those logits. A user is scored from the history alone, so any history
(a new user's included) can be scored, and ``SparseRows.user`` is not read.

The first layer never builds the dense (batch, n_items) input: with :class:`SparseRows`
it is the sum ``h = sum_j x_j W1[item_j] + b`` over the row's nonzeros, computed by the
native CSR kernel on CPU (forward ``X W1``, backward ``X^T G``, see
:func:`sparse_input_product`; the ``kernel`` setting, as LightGCN's) or by a gather and a
segment sum in pure JAX (other backends, ``kernel = "jax"``). Dense rows are multiplied
densely. (On ML-1M's 2,810 items a dense input product would in fact be cheaper on CPU;
on either data set the step's cost is the dense output layer and its gradient.)

Initialisation (Liang's code): weights Xavier/Glorot uniform, biases drawn from the
normal N(0, bias_scale^2) truncated at two standard deviations (TensorFlow's
``truncated_normal_initializer(stddev=0.001)``).
"""

# No ``from __future__ import annotations`` here: equinox reads AbstractVar annotations unstringified.
import abc
import dataclasses
import numbers
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..runtime import native
from ..runtime.checks import check_integer, check_number
from ..diffusion.denoiser import Affine
from ..errors import ConfigError
from ..filtering.rows import SparseRows
from .base import Rows
from .trained import AbstractTrainedRecommender


def layer_widths(value: Any) -> Any:
    """Converter of the ``hidden`` setting: a list (from TOML or JSON) becomes a tuple."""
    return tuple(value) if isinstance(value, list) else value


def init_layer(key: jax.Array, n_in: int, n_out: int, bias_scale: float) -> Affine:
    """An :class:`Affine` layer: Xavier-uniform weight, bias from N(0, bias_scale^2) truncated at +-2 sd."""
    kw, kb = jax.random.split(key)
    bias = bias_scale * jax.random.truncated_normal(kb, -2.0, 2.0, (n_out,), jnp.float32)
    return Affine(Affine.init(kw, n_in, n_out).weight, bias)


def _tanh_mlp(layers: tuple[Affine, ...], x: Float[Array, "b n"]) -> Float[Array, "b m"]:
    """layers[-1](tanh(... tanh(layers[0](x)))): tanh between layers, the last one linear."""
    for layer in layers[:-1]:
        x = jnp.tanh(layer(x))
    return layers[-1](x)


# ---------------------------------------------------------------- the sparse first layer


def _native_product(rows: SparseRows, weight: Float[Array, "n d"], path: str) -> Float[Array, "b d"]:
    """rows @ weight by the native CSR kernel (one chunk as wide as ``weight``)."""
    return native.csr_matmul(rows.indptr(), rows.col, rows.value, weight[None], path)[0]


def _native_transpose_product(rows: SparseRows, grad: Float[Array, "b d"], n: int, path: str) -> Float[Array, "n d"]:
    """rows^T @ grad by the native CSR kernel: the entries sorted by column (stably) form the CSR of rows^T."""
    valid = rows.row < rows.n_rows
    cols = jnp.where(valid, rows.col, n)  # padding entries sort last, past every column's range
    order = jnp.argsort(cols, stable=True)
    indptr = jnp.searchsorted(cols[order], jnp.arange(n + 1, dtype=cols.dtype)).astype(jnp.int32)
    users = jnp.minimum(rows.row, rows.n_rows - 1)[order].astype(jnp.int32)
    return native.csr_matmul(indptr, users, jnp.where(valid, rows.value, 0.0)[order], grad[None], path)[0]


@eqx.filter_custom_vjp
def _native_rows_product(weight: Float[Array, "n d"], rows: SparseRows, path: str) -> Float[Array, "b d"]:
    return _native_product(rows, weight, path)


@_native_rows_product.def_fwd
def _native_rows_product_fwd(perturbed: Any, weight: Array, rows: SparseRows, path: str) -> tuple[Array, None]:
    return _native_product(rows, weight, path), None


@_native_rows_product.def_bwd
def _native_rows_product_bwd(residuals: None, grad: Array, perturbed: Any, weight: Array, rows: SparseRows,
                             path: str) -> Array:
    return _native_transpose_product(rows, grad, weight.shape[0], path)


def sparse_input_product(rows: SparseRows, weight: Float[Array, "n d"], kernel: str = "auto") -> Float[Array, "b d"]:
    """``rows @ weight`` from the nonzeros only, differentiable in ``weight``.

    The native CSR kernel's path chosen by ``kernel`` (:func:`bspm_jax.runtime.native.select`; its
    gradient ``rows^T G`` is a second CSR product), or pure JAX (a gather and a segment
    sum) where there is none.
    """
    path = native.select(kernel)
    if path is None:
        return rows.matmul(weight)
    return _native_rows_product(weight, rows, path)


# ---------------------------------------------------------------- the models


class AbstractAutoencoder(AbstractTrainedRecommender):
    """An autoencoder of the history row: normalise, (drop out), encode, :meth:`code`, decode to item logits.

    Concrete models hold the settings and layers below as fields and define the code step
    (:meth:`code`, :meth:`sample_code`), its width and the weight of its divergence term.

    Attributes:
        hidden: tanh hidden layer widths, n_items -> hidden... -> code (mirrored in the decoder), list of integers >= 1.
        latent: size of the code z the decoder reads, integer >= 1 (the paper's 200).
        dropout: probability of dropping each input interaction in training (inverted), in [0, 1) (the paper's 0.5).
        reg: weight of the L2 term reg * sum of squared layer weights (biases excluded), finite and >= 0 (Liang's lam).
        bias_scale: initial biases' N(0, bias_scale^2) standard deviation (cut at 2 sd), finite and >= 0 (Liang's 0.001).
        kernel: first-layer product path, 'auto', 'avx512', 'avx2', 'baseline' or 'jax'; a named path must run here.
    """

    scores_new_users: ClassVar[bool] = True

    hidden: eqx.AbstractVar[tuple[int, ...]]
    latent: eqx.AbstractVar[int]
    dropout: eqx.AbstractVar[float]
    reg: eqx.AbstractVar[float]
    bias_scale: eqx.AbstractVar[float]
    kernel: eqx.AbstractVar[str]
    encoder: eqx.AbstractVar[tuple[Affine, ...] | None]
    decoder: eqx.AbstractVar[tuple[Affine, ...] | None]

    def search_space(self) -> dict[str, tuple[Any, ...]]:
        """The learning rate and the input dropout (these models' regulariser)."""
        return {"train.lr": (5e-4, 1e-3), "dropout": (0.2, 0.5)}

    def __check_init__(self) -> None:
        if not (isinstance(self.hidden, tuple) and all(isinstance(w, numbers.Integral) and not isinstance(w, bool)
                                                         and w >= 1 for w in self.hidden)):
            raise ConfigError(f"hidden must be a list of layer widths >= 1, got {self.hidden!r}")
        check_integer("latent (the code size)", self.latent, 1)
        check_number("dropout", self.dropout, 0.0, 1.0)
        if self.dropout >= 1.0:
            raise ConfigError(f"dropout must be < 1 (the probability of dropping an input), got {self.dropout!r}")
        check_number("reg", self.reg, 0.0)
        check_number("bias_scale", self.bias_scale, 0.0)
        native.select(self.kernel)  # the choice is known and, when a path is named, runs here

    # ------------------------------------------------------------------ what a model defines

    @abc.abstractmethod
    def code_width(self) -> int:
        """Width of the encoder's output layer."""

    @abc.abstractmethod
    def code(self, h: Float[Array, "b c"]) -> Float[Array, "b latent"]:
        """The decoder's input when scoring, from the encoder's output (deterministic)."""

    @abc.abstractmethod
    def sample_code(self, h: Float[Array, "b c"], key: jax.Array) -> tuple[Float[Array, "b latent"], Float[Array, " b"]]:
        """The decoder's input in training and each row's divergence term (e.g. a KL), from the encoder's output."""

    @abc.abstractmethod
    def divergence_weight(self, step: Int[Array, ""]) -> Float[Array, ""]:
        """The weight of the divergence term at the 0-based update ``step``."""

    # ------------------------------------------------------------------ fitting

    def widths(self, n_items: int) -> tuple[list[int], list[int]]:
        """The layer widths of the encoder and of the decoder for ``n_items`` items."""
        return [n_items, *self.hidden, self.code_width()], [self.latent, *self.hidden[::-1], n_items]

    def init(self, key: jax.Array, train: sp.csr_matrix) -> "AbstractAutoencoder":
        """Fresh encoder and decoder layers (Xavier-uniform weights, truncated-normal biases) for ``train``'s items."""
        n_items = train.shape[1]
        if n_items == 0:
            raise ConfigError(f"the {self.name} model needs items to train on, got a {train.shape[0]} x 0 matrix")
        enc, dec = self.widths(n_items)
        k_enc, k_dec = jax.random.split(key)
        layers = lambda k, w: tuple(init_layer(kk, a, b, self.bias_scale)
                                    for kk, a, b in zip(jax.random.split(k, len(w) - 1), w[:-1], w[1:]))
        return dataclasses.replace(self, encoder=layers(k_enc, enc), decoder=layers(k_dec, dec))

    def layers(self) -> tuple[Affine, ...]:
        """Every layer, the encoder's then the decoder's."""
        return (*self.encoder, *self.decoder)

    def penalty(self) -> Float[Array, ""]:
        """reg * the sum of the squared weights of every layer (biases excluded), as in Liang's code."""
        return self.reg * sum(jnp.sum(layer.weight**2) for layer in self.layers())

    # ------------------------------------------------------------------ the network

    def normalized(self, rows: Rows) -> Rows:
        """Each row divided by its L2 norm (an empty row stays zero)."""
        if isinstance(rows, SparseRows):
            norms = jax.ops.segment_sum(rows.value**2, rows.row, num_segments=rows.n_rows)
            inv = jnp.where(norms > 0, jax.lax.rsqrt(jnp.where(norms > 0, norms, 1.0)), 0.0)
            scale = jnp.take(inv, rows.row, mode="fill", fill_value=0.0)  # padding entries: 0
            return dataclasses.replace(rows, value=rows.value * scale)
        norms = jnp.sum(rows**2, axis=-1, keepdims=True)
        return rows * jnp.where(norms > 0, jax.lax.rsqrt(jnp.where(norms > 0, norms, 1.0)), 0.0)

    def dropped(self, rows: Rows, key: jax.Array) -> Rows:
        """Inverted dropout: each entry kept with probability 1 - dropout and then scaled by 1 / (1 - dropout)."""
        keep = 1.0 - self.dropout
        if isinstance(rows, SparseRows):
            mask = jax.random.bernoulli(key, keep, rows.value.shape)
            return dataclasses.replace(rows, value=jnp.where(mask, rows.value / keep, 0.0))
        return jnp.where(jax.random.bernoulli(key, keep, rows.shape), rows / keep, 0.0)

    def first_layer(self, rows: Rows) -> Float[Array, "b w"]:
        """x W1 + b1: from the nonzeros of :class:`SparseRows` (never densified), densely for dense rows."""
        layer = self.encoder[0]
        if isinstance(rows, SparseRows):
            return sparse_input_product(rows, layer.weight, self.kernel) + layer.bias
        return layer(rows)

    def encode(self, rows: Rows) -> Float[Array, "b c"]:
        """The encoder's output (before the code step) for already normalised rows: tanh between layers."""
        h = self.first_layer(rows)
        for layer in self.encoder[1:]:
            h = layer(jnp.tanh(h))
        return h

    def decode(self, z: Float[Array, "b latent"]) -> Float[Array, "b n_items"]:
        """The item logits of codes ``z``."""
        return _tanh_mlp(self.decoder, z)

    def reconstruct(self, rows: Rows, key: jax.Array) -> tuple[Float[Array, "b n_items"], Float[Array, " b"]]:
        """Training pass on raw history rows: logits after normalisation, dropout and the sampled code, and each row's divergence."""
        k_drop, k_code = jax.random.split(key)
        z, divergence = self.sample_code(self.encode(self.dropped(self.normalized(rows), k_drop)), k_code)
        return self.decode(z), divergence

    # ------------------------------------------------------------------ scoring

    @eqx.filter_jit
    def score(self, rows: Rows) -> Float[Array, "b n_items"]:
        """The logits of every item from each history row (no dropout, deterministic code)."""
        self.require_fitted()
        return self.decode(self.code(self.encode(self.normalized(rows))))

    def score_with_stats(self, rows: Rows) -> tuple[Array, dict[str, Any]]:
        return self.score(rows), {}

    def scoring_bytes_per_user(self, n_items: int) -> int:
        width = max((self.code_width(), self.latent, *self.hidden))
        return 3 * n_items * 4 + 6 * width * 4
