"""One optimisation step, and an epoch of steps as one device program (``lax.scan``)."""

from __future__ import annotations

import equinox as eqx
import jax
import optax
from jaxtyping import Array, Float, Int, PyTree

from ..models.trained import AbstractPairwise
from .losses import bpr_loss

Batch = tuple[Int[Array, " b"], Int[Array, " b"], Int[Array, " b"]]
"""(users, positives, negatives) of one batch."""


def init_optimizer(optimizer: optax.GradientTransformation, model: AbstractPairwise) -> PyTree:
    """The optimiser state for the model's array leaves."""
    return optimizer.init(eqx.filter(model, eqx.is_array))


def _update(
    model: AbstractPairwise, opt_state: PyTree, optimizer: optax.GradientTransformation, batch: Batch
) -> tuple[AbstractPairwise, PyTree, Float[Array, ""]]:
    loss, grads = eqx.filter_value_and_grad(bpr_loss)(model, *batch)
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
    return eqx.apply_updates(model, updates), opt_state, loss


@eqx.filter_jit
def train_step(
    model: AbstractPairwise, opt_state: PyTree, optimizer: optax.GradientTransformation, batch: Batch
) -> tuple[AbstractPairwise, PyTree, Float[Array, ""]]:
    """theta <- optimizer(grad_theta BPR(batch)); returns the model, optimiser state and the batch's loss."""
    return _update(model, opt_state, optimizer, batch)


@eqx.filter_jit
def train_steps(
    model: AbstractPairwise,
    opt_state: PyTree,
    optimizer: optax.GradientTransformation,
    batches: tuple[Int[Array, "n b"], Int[Array, "n b"], Int[Array, "n b"]],
) -> tuple[AbstractPairwise, PyTree, Float[Array, " n"]]:
    """:func:`train_step` over stacked batches in order (``lax.scan``); returns each step's loss."""
    params, static = eqx.partition(model, eqx.is_array)

    def body(carry: tuple[PyTree, PyTree], batch: Batch) -> tuple[tuple[PyTree, PyTree], Array]:
        params, opt_state = carry
        model, opt_state, loss = _update(eqx.combine(params, static), opt_state, optimizer, batch)
        return (eqx.filter(model, eqx.is_array), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), batches)
    return eqx.combine(params, static), opt_state, losses
