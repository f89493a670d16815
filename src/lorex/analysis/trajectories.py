"""Record a run of a recurrent optimizer: states, gradients, updates and losses, in one lax.scan.

The map is applied coordinatewise to the raveled parameter pytree (the same per-coordinate computation as
:func:`lorex.lopt.learned_optimizer`, which keeps one state per leaf): per step g = ∇f(θ), h ← F(h, [g]) for every
coordinate, u = R(h), θ ← θ + u.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from lorex import lopt
from lorex.analysis._common import initial_state, input_of, map_jit, split_map
from lorex.errors import check_positive_int
from lorex.evaluate import problem_and_params, step_view


class Trajectory(NamedTuple):
    states: jax.Array  # (T, N, H) state after each step
    grads: jax.Array  # (T, N) gradient at each step
    updates: jax.Array  # (T, N) update written at each step
    losses: jax.Array  # (T + 1,) loss before each step, then the final loss
    params: jax.Array  # (T + 1, N) raveled parameters before each step, then the final ones


def record_map_trajectory(rmap, family, key: jax.Array, steps: int | None = None, *, h0=None,
                          readout=None, input_dim: int = 1, input_index: int = 0) -> Trajectory:
    """Run any recurrent map (vmapped over the N coordinates) on the problem of ``key`` for ``steps`` steps."""
    steps = family.steps if steps is None else check_positive_int("steps", steps)

    def run(pair, h0, key):
        step, ro = pair
        cell = jax.vmap(lambda h, g: step(h, input_of(g, input_dim, input_index).astype(h.dtype)))
        out = jax.vmap(ro)
        view = step_view(family)  # the data of step t, as in evaluation and meta-training (minibatch families)
        problem, params0 = problem_and_params(family, key)
        flat0, unravel = ravel_pytree(params0)

        def body(carry, t):
            flat, h = carry
            loss, grads = jax.value_and_grad(family.loss)(unravel(flat), view(problem, t))
            g, _ = ravel_pytree(grads)
            h = cell(h, g.astype(h.dtype))
            u = out(h).astype(flat.dtype)
            return (flat + u, h), (h, g, u, loss, flat)

        carry0 = (flat0, jnp.broadcast_to(h0, (flat0.size, h0.shape[-1])))
        (flat, _), (hs, gs, us, losses, flats) = jax.lax.scan(body, carry0, jnp.arange(steps))
        final = family.loss(unravel(flat), problem)  # on the whole problem, as lorex.evaluate.unroll
        return Trajectory(hs, gs, us, jnp.concatenate([losses, final[None]]),
                          jnp.concatenate([flats, flat[None]]))

    return map_jit(run, split_map(rmap, readout))(initial_state(rmap, h0), key)


def record_trajectory(params: Any, config: lopt.LOptConfig, family, key: jax.Array,
                      steps: int | None = None) -> Trajectory:
    """Record the learned optimizer (``params``, ``config``) on the problem of ``key`` (its own cell and readout)."""
    return record_map_trajectory(lopt.recurrent_map(params, config), family, key, steps)
