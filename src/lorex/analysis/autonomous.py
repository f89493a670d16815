"""Autonomous dynamics: h_{k+1} = F(h_k, 0) from h₀, and the learning rate α_eff(h_k) along it (the learned schedule).

α_eff[k] = −dU/dg at g = 0 at state h_k, i.e. the slope of the update of iteration k + 1 if the gradients were small.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lorex.analysis._common import initial_state, input_of, map_jit, split_map
from lorex.analysis.update_function import effective_lr
from lorex.errors import check_positive_int


class Autonomous(NamedTuple):
    states: jax.Array  # (T + 1, H): h₀ … h_T
    alpha_eff: jax.Array  # (T + 1,) α_eff at each state


def autonomous(rmap, steps: int, h0=None, readout=None, *, input_dim: int = 1, input_index: int = 0,
               fd_step: float | None = None) -> Autonomous:
    """Zero-input trajectory for ``steps`` iterations (one lax.scan) and α_eff along it.

    ``h0`` defaults to the map's own initial state; ``fd_step`` as in :func:`effective_lr`.
    """
    check_positive_int("steps", steps)
    step, ro = split_map(rmap, readout)
    h0 = initial_state(rmap, h0)

    def run(step, h0):
        x0 = input_of(jnp.zeros((), h0.dtype), input_dim, input_index)

        def body(h, _):
            h1 = step(h, x0)
            return h1, h1

        _, hs = jax.lax.scan(body, h0, None, length=steps)
        return jnp.concatenate([h0[None], hs])

    states = map_jit(run, step)(h0)
    alpha = effective_lr((step, ro), states, input_dim=input_dim, input_index=input_index, fd_step=fd_step)
    return Autonomous(states, alpha)


class Schedule(NamedTuple):
    warmup: int  # iteration of the peak α_eff
    initial: float
    peak: float
    final: float
    peak_over_initial: float
    final_over_peak: float


def schedule_summary(alpha_eff) -> Schedule:
    """Warm-up length (argmax of α_eff), and the peak/initial and final/peak ratios."""
    a = np.asarray(alpha_eff, np.float64)
    k = int(np.nanargmax(a))
    with np.errstate(divide="ignore", invalid="ignore"):
        return Schedule(k, float(a[0]), float(a[k]), float(a[-1]), float(a[k] / a[0]), float(a[-1] / a[k]))
