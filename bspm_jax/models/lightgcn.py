"""LightGCN (He et al., SIGIR 2020): embeddings propagated over the normalised user-item graph, s(u, i) = <e_u, e_i>.

The graph is the bipartite one of the train matrix without self-loops, normalised
symmetrically: ``A~ = D^-1/2 [[0, R], [R^T, 0]] D^-1/2``, whose off-diagonal block is
``R~ = U^-1/2 R V^-1/2`` (the matrix BSPM filters). Layer ``k + 1`` is
``E_u <- R~ E_i``, ``E_i <- R~^T E_u``; the final embeddings are the mean of layers
0..K (LightGCN's alpha_k = 1 / (K + 1)). The products run in the library's sparse
kernel (:meth:`bspm_jax.filtering.operators.SparseMatrix.matmul`, the native CSR kernel on CPU),
differentiated by the transpose product, never as dense matrices.

Training (in :mod:`bspm_jax.training`): BPR on one (user, positive, negative) triple per
train interaction per epoch, plus ``reg / 2`` times the batch mean of the squared norms
of the triple's layer-0 embeddings (the reference's weight decay 1e-4), with a negative
drawn uniformly from the user's unseen items. The ``sampling`` setting says how the
(user, positive) pairs are drawn: ``"pairs"`` (the default) uses every train pair once per
epoch in a random order, so a user weighs in proportion to their history; ``"users"`` is the
reference code's sampler (gusye1234/LightGCN-PyTorch, ``UniformSample_original``): as many
draws as train pairs, each a user drawn uniformly and one of their items, so every user
weighs the same, as in the user-averaged Recall@K it is evaluated on.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import scipy.sparse as sp
from jaxtyping import Array, Float, Int

from ..runtime import native as native_kernel
from ..runtime.checks import check_integer, check_number
from ..errors import ConfigError
from ..filtering.operators import SparseMatrix
from ..spectral import normalize
from .trained import AbstractBPR, normal_table


class LightGCN(AbstractBPR):
    """LightGCN with ``layers`` propagation layers of ``dim``-dimensional embeddings ~ N(0, init_scale^2).

    Attributes:
        sampling: epoch's (user, positive) pairs, 'pairs' (each train pair once) or 'users' (the reference sampler).
        reg: L2 weight on the triple's layer-0 embeddings, finite and >= 0 (the paper's lambda, reference's 1e-4).
        dim: embedding size, integer >= 1 (the paper's 64).
        layers: propagation layers K, integer >= 0 (0: plain MF); final embeddings are the mean of layers 0..K.
        init_scale: standard deviation of the N(0, init_scale^2) layer-0 embeddings, finite and > 0 (reference: 0.1).
        kernel: product path, one of 'auto', 'avx512', 'avx2', 'baseline' (native CPU kernel) or 'jax' (pure JAX).
    """

    name: ClassVar[str] = "lightgcn"
    frozen: ClassVar[tuple[str, ...]] = ("graph",)
    dim: int = eqx.field(static=True, default=64)
    layers: int = eqx.field(static=True, default=3)
    reg: float = eqx.field(static=True, default=1e-4)
    init_scale: float = eqx.field(static=True, default=0.1)
    kernel: str = eqx.field(static=True, default="auto")
    user_embedding: Float[Array, "n_users dim"] | None = None
    item_embedding: Float[Array, "n_items dim"] | None = None
    graph: SparseMatrix | None = None

    def __check_init__(self) -> None:
        check_integer("dim (the embedding size)", self.dim, 1)
        check_integer("layers", self.layers, 0)
        check_number("reg", self.reg, 0)
        check_number("init_scale", self.init_scale, 0, strict_low=True)
        native_kernel.check_choice(self.kernel)

    def init(self, key: jax.Array, train: sp.csr_matrix) -> LightGCN:
        """Layer-0 embeddings from N(0, init_scale^2) and the normalised graph ``R~`` of ``train`` (float32)."""
        n_users, n_items = train.shape
        if min(n_users, n_items) == 0:
            raise ConfigError(f"LightGCN needs users and items to train on, got a {n_users} x {n_items} matrix")
        ku, ki = jax.random.split(key)
        return dataclasses.replace(
            self,
            user_embedding=normal_table(ku, (n_users, self.dim), self.init_scale),
            item_embedding=normal_table(ki, (n_items, self.dim), self.init_scale),
            graph=SparseMatrix.from_scipy(normalize(train)[0], kernel=self.kernel),
        )

    def propagate(self) -> tuple[Float[Array, "n_users dim"], Float[Array, "n_items dim"]]:
        """The final embeddings: the mean over k = 0..K of (R~ E_i^(k-1), R~^T E_u^(k-1))."""
        users, items = self.user_embedding, self.item_embedding
        total_u, total_i = users, items
        for _ in range(self.layers):
            users, items = self.graph.matmul(items), self.graph.T.matmul(users)
            total_u, total_i = total_u + users, total_i + items
        return total_u / (self.layers + 1), total_i / (self.layers + 1)

    def pair_scores(self, users: Int[Array, " b"], items: Int[Array, " b"]) -> Float[Array, " b"]:
        """s(u_n, i_n) = e_{u_n} . e_{i_n} with the propagated embeddings."""
        user_table, item_table = self.propagate()
        return jnp.sum(user_table[users] * item_table[items], axis=-1)

    def embedding_tables(self) -> tuple[tuple[Array, Array], ...]:
        """The layer-0 embeddings (P, Q)."""
        return ((self.user_embedding, self.item_embedding),)

    @eqx.filter_jit
    def score_users(self, users: Int[Array, " b"]) -> Float[Array, "b n_items"]:
        """E_u[users] E_i^T with the propagated embeddings."""
        user_table, item_table = self.propagate()
        return user_table[users] @ item_table.T
