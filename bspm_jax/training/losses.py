"""Training losses: BPR for pairwise models, binary cross-entropy for NCF models, the denoising MSE of
spectral diffusion (S-Diff, Algorithm 1) and of graph-signal diffusion (GiffCF), the multinomial likelihood of history autoencoders
(Mult-VAE, Mult-DAE).

A loss is a module called as ``loss(model, batch, key)``; arrays it needs from the data
(e.g. the users' padded item lists) are its fields, so they stay on the device.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..data.sparse import canonical_csr
from ..models.autoencoder import AbstractAutoencoder
from ..models.giffcf import GiffCF
from ..models.ncf import AbstractNCF
from ..models.s_diff import SDiff
from ..models.trained import AbstractPairwise, AbstractTrainedRecommender
from ..filtering.rows import SparseRows


def bpr_loss(
    model: AbstractPairwise, users: Int[Array, " b"], pos: Int[Array, " b"], neg: Int[Array, " b"]
) -> Float[Array, ""]:
    """mean_n -log sigmoid(s(u_n, i_n) - s(u_n, j_n)) + model.penalty(users, pos, neg).

    Both scores come from one ``pair_scores`` call (LightGCN propagates once per batch).
    """
    scores = model.pair_scores(jnp.concatenate([users, users]), jnp.concatenate([pos, neg]))
    margin = scores[: users.shape[0]] - scores[users.shape[0] :]
    return -jnp.mean(jax.nn.log_sigmoid(margin)) + model.penalty(users, pos, neg)


class AbstractLoss(eqx.Module):
    """The scalar a trained model minimises on one batch of examples (``key``: the step's randomness, ``step``: its 0-based update index)."""

    @abc.abstractmethod
    def __call__(
        self, model: AbstractTrainedRecommender, batch: tuple[Array, ...], key: jax.Array, step: Int[Array, ""]
    ) -> Float[Array, ""]:
        """The loss of ``model`` on ``batch``."""


class BPRLoss(AbstractLoss):
    """:func:`bpr_loss` on (users, positives, negatives); deterministic given the batch."""

    def __call__(self, model: AbstractPairwise, batch: tuple[Array, ...], key: jax.Array, step: Int[Array, ""]) -> Float[Array, ""]:
        return bpr_loss(model, *batch)


def bce_loss(
    model: AbstractNCF, users: Int[Array, " b"], items: Int[Array, " b"], labels: Float[Array, " b"]
) -> Float[Array, ""]:
    """mean_n BCE(sigmoid(z_n), y_n) + model.penalty(users, items), z the logits ``pair_scores``.

    BCE(sigmoid(z), y) = -y log sigmoid(z) - (1 - y) log sigmoid(-z), written with log-sigmoid (finite for any z).
    """
    z = model.pair_scores(users, items)
    bce = -(labels * jax.nn.log_sigmoid(z) + (1.0 - labels) * jax.nn.log_sigmoid(-z))
    return jnp.mean(bce) + model.penalty(users, items)


class BCELoss(AbstractLoss):
    """:func:`bce_loss` on (users, items, labels) (NCF's log loss with sampled negatives); deterministic given the batch."""

    def __call__(self, model: AbstractNCF, batch: tuple[Array, ...], key: jax.Array, step: Int[Array, ""]) -> Float[Array, ""]:
        return bce_loss(model, *batch)


def padded_items(train: sp.spmatrix) -> np.ndarray:
    """Each user's train items, in a row padded with n_items to the largest degree (int32)."""
    m = canonical_csr(train)
    degree = np.diff(m.indptr)
    table = np.full((m.shape[0], max(int(degree.max(initial=0)), 1)), m.shape[1], dtype=np.int32)
    rows = np.repeat(np.arange(m.shape[0]), degree)
    table[rows, np.arange(m.nnz) - m.indptr[rows]] = m.indices
    return table


def dense_rows(items: Int[Array, "b width"], n_items: int,
               values: Float[Array, "b width"] | float = 1.0) -> Float[Array, "b n_items"]:
    """Dense (b, n_items) rows holding ``values`` at the padded item lists' entries (the pad n_items is dropped)."""
    rows = jnp.broadcast_to(jnp.arange(items.shape[0])[:, None], items.shape)
    return jnp.zeros((items.shape[0], n_items), jnp.float32).at[rows, items].set(values, mode="drop")


class AbstractHistoryLoss(AbstractLoss):
    """A loss on a batch of user indices that needs the users' train items (padded lists, on the device)."""

    items: Int[Array, "n_users width"]

    @classmethod
    def from_matrix(cls, train: sp.spmatrix) -> AbstractHistoryLoss:
        return cls(jnp.asarray(padded_items(train)))


class DenoisingLoss(AbstractHistoryLoss):
    """S-Diff's ||v_0 - phi(v_t, e, t)||^2 (mean over users and frequencies) on a batch of user indices.

    v_0 = U^T x_0; the condition keeps each item with probability 1 - mask_ratio and is
    emptied (e = 0) with probability p_uncond; t = t_k with k uniform in 1..T;
    v_t = alpha_t v_0 + sigma_t eps.
    """

    def __call__(self, model: SDiff, batch: tuple[Array, ...], key: jax.Array, step: Int[Array, ""]) -> Float[Array, ""]:
        (users,) = batch
        items = self.items[users]
        b, n_items = users.shape[0], model.basis.shape[0]
        k_mask, k_uncond, k_time, k_noise = jax.random.split(key, 4)
        x0 = dense_rows(items, n_items)
        keep = jax.random.bernoulli(k_mask, 1.0 - model.mask_ratio, items.shape).astype(jnp.float32)
        c = dense_rows(items, n_items, keep)
        v0, e = model.project(x0), model.project(c)
        e = jnp.where(jax.random.bernoulli(k_uncond, model.p_uncond, (b, 1)), 0.0, e)
        t = model.times()[jax.random.randint(k_time, (b,), 1, model.steps + 1)]
        v_t = model.noised(v0, t, jax.random.normal(k_noise, v0.shape))
        return jnp.mean((model.denoise(v_t, e, t) - v0) ** 2)


class GraphDiffusionLoss(AbstractHistoryLoss):
    """GiffCF's objective on a batch of user indices: mean_u sum_i (x_ui - phi(z_t, c, A c, t)_i)^2
    (:meth:`bspm_jax.models.giffcf.GiffCF.training_error`), x_u the user's binary train row."""

    def __call__(self, model: GiffCF, batch: tuple[Array, ...], key: jax.Array, step: Int[Array, ""]) -> Float[Array, ""]:
        (users,) = batch
        return jnp.mean(model.training_error(dense_rows(self.items[users], model.graph.shape[1]), key))


def multinomial_log_likelihood(logits: Float[Array, "b n_items"], rows: SparseRows) -> Float[Array, " b"]:
    """sum_i x_i log softmax(logits)_i for each row x of ``rows``, from its nonzeros:
    sum_j x_j logits_j - (sum_j x_j) logsumexp(logits)."""
    picked = logits[jnp.minimum(rows.row, rows.n_rows - 1), rows.col]
    dot = jax.ops.segment_sum(rows.value * picked, rows.row, num_segments=rows.n_rows)
    total = jax.ops.segment_sum(rows.value, rows.row, num_segments=rows.n_rows)
    return dot - total * jax.nn.logsumexp(logits, axis=-1)


class MultinomialLoss(AbstractLoss):
    """Liang et al.'s objective of history autoencoders (Mult-VAE, Mult-DAE) on a batch of distinct user indices.

    mean_u [-sum_i x_ui log softmax(logits_u)_i + w(step) D_u] + model.penalty(): the logits
    and the divergence D_u (Mult-VAE's KL, none for Mult-DAE) from ``model.reconstruct`` of
    the users' train rows, w = ``model.divergence_weight``. The rows are cut from the train
    matrix's CSR arrays on the device as :class:`SparseRows` (never dense), padded to
    ``capacity[b - 1]``, the most interactions any b distinct users have.
    """

    indptr: Int[Array, " n_users_plus_1"]
    indices: Int[Array, " nnz"]
    data: Float[Array, " nnz"]
    capacity: tuple[int, ...] = eqx.field(static=True)
    n_items: int = eqx.field(static=True)

    @classmethod
    def from_matrix(cls, train: sp.spmatrix) -> MultinomialLoss:
        m = canonical_csr(train, np.float32)
        capacity = np.cumsum(np.sort(np.diff(m.indptr))[::-1])
        return cls(jnp.asarray(m.indptr.astype(np.int32)), jnp.asarray(m.indices.astype(np.int32)), jnp.asarray(m.data),
                   tuple(int(c) for c in capacity), int(m.shape[1]))

    def rows(self, users: Int[Array, " b"]) -> SparseRows:
        """The train rows of ``users`` (distinct: a batch over its capacity is an error)."""
        b = users.shape[0]
        size = max(self.capacity[min(b, len(self.capacity)) - 1], 1)
        start = self.indptr[users]
        degree = self.indptr[users + 1] - start
        ends = jnp.cumsum(degree)
        k = jnp.arange(size, dtype=ends.dtype)
        pos = jnp.minimum(jnp.searchsorted(ends, k, side="right"), b - 1)
        valid = k < ends[-1]
        src = jnp.where(valid, start[pos] + k - (ends[pos] - degree[pos]), 0)
        value = jnp.where(valid, self.data[src], 0.0)
        value = eqx.error_if(value, ends[-1] > size, "MultinomialLoss: a batch holds more interactions than "
                             "its distinct users can (is a user repeated in the batch?)")
        return SparseRows(jnp.where(valid, pos, b).astype(jnp.int32), jnp.where(valid, self.indices[src], 0), value,
                          users.astype(jnp.int32), b, self.n_items)

    def __call__(self, model: AbstractAutoencoder, batch: tuple[Array, ...], key: jax.Array,
                 step: Int[Array, ""]) -> Float[Array, ""]:
        (users,) = batch
        rows = self.rows(users)
        logits, divergence = model.reconstruct(rows, key)
        nll = -multinomial_log_likelihood(logits, rows)
        return jnp.mean(nll + model.divergence_weight(step) * divergence) + model.penalty()
