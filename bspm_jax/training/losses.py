"""The BPR loss (Rendle et al., 2009) of a pairwise model on a batch of (user, positive, negative) triples."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ..models.trained import AbstractPairwise


def bpr_loss(
    model: AbstractPairwise, users: Int[Array, " b"], pos: Int[Array, " b"], neg: Int[Array, " b"]
) -> Float[Array, ""]:
    """mean_n -log sigmoid(s(u_n, i_n) - s(u_n, j_n)) + model.penalty(users, pos, neg)."""
    margin = model.pair_scores(users, pos) - model.pair_scores(users, neg)
    return -jnp.mean(jax.nn.log_sigmoid(margin)) + model.penalty(users, pos, neg)
