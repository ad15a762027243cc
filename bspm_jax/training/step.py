"""One optimisation step, and an epoch of steps as one device program (``lax.scan``).

Only the trained parameters are differentiated and updated: every array leaf of the
model except its ``frozen`` fields (see :func:`trainable`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PyTree

from ..models.trained import AbstractTrainedRecommender
from .losses import AbstractLoss

Batch = tuple[Array, ...]
"""The arrays of one batch of examples (e.g. users, positives, negatives)."""


def trainable(model: AbstractTrainedRecommender) -> PyTree[bool]:
    """The filter spec of the trained parameters: True at array leaves outside ``model.frozen``."""
    spec = jax.tree.map(eqx.is_array, model)
    names = [name for name in model.frozen if getattr(model, name) is not None]
    if not names:
        return spec
    return eqx.tree_at(lambda m: [getattr(m, name) for name in names], spec,
                       [jax.tree.map(lambda _: False, getattr(spec, name)) for name in names])


def init_optimizer(optimizer: optax.GradientTransformation, model: AbstractTrainedRecommender) -> PyTree:
    """The optimiser state for the model's trained parameters."""
    return optimizer.init(eqx.filter(model, trainable(model)))


def _update(
    model: AbstractTrainedRecommender, opt_state: PyTree, optimizer: optax.GradientTransformation,
    loss: AbstractLoss, batch: Batch, key: jax.Array, step: Int[Array, ""],
) -> tuple[AbstractTrainedRecommender, PyTree, Float[Array, ""]]:
    params, rest = eqx.partition(model, trainable(model))
    value, grads = jax.value_and_grad(lambda p: loss(eqx.combine(p, rest), batch, key, step))(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return eqx.combine(eqx.apply_updates(params, updates), rest), opt_state, value


@eqx.filter_jit
def train_step(
    model: AbstractTrainedRecommender, opt_state: PyTree, optimizer: optax.GradientTransformation,
    loss: AbstractLoss, batch: Batch, key: jax.Array, step: int | Int[Array, ""] = 0,
) -> tuple[AbstractTrainedRecommender, PyTree, Float[Array, ""]]:
    """theta <- optimizer(grad_theta loss(batch, key, step)); returns the model, optimiser state and the batch's loss.

    ``step`` is the update's 0-based index in the run (for losses with a schedule, e.g. KL annealing).
    """
    return _update(model, opt_state, optimizer, loss, batch, key, jnp.asarray(step, jnp.int32))


@eqx.filter_jit
def train_steps(
    model: AbstractTrainedRecommender,
    opt_state: PyTree,
    optimizer: optax.GradientTransformation,
    loss: AbstractLoss,
    batches: Batch,
    keys: jax.Array,
    first_step: int | Int[Array, ""] = 0,
) -> tuple[AbstractTrainedRecommender, PyTree, Float[Array, " n"]]:
    """:func:`train_step` over stacked batches (leading axis n) and their keys, in order (``lax.scan``), as steps first_step, first_step + 1, ..."""
    params, static = eqx.partition(model, eqx.is_array)
    steps = jnp.asarray(first_step, jnp.int32) + jnp.arange(keys.shape[0], dtype=jnp.int32)

    def body(carry: tuple[PyTree, PyTree], step: tuple[Batch, jax.Array, Array]) -> tuple[tuple[PyTree, PyTree], Array]:
        params, opt_state = carry
        model, opt_state, value = _update(eqx.combine(params, static), opt_state, optimizer, loss, *step)
        return (eqx.filter(model, eqx.is_array), opt_state), value

    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (batches, keys, steps))
    return eqx.combine(params, static), opt_state, losses
