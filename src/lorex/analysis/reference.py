"""Hand-designed optimizers written as recurrent maps (input x = [g], update read from the new state).

They go through the same analysis as the learned optimizer, and serve as known answers in the tests.
"""

from __future__ import annotations

import jax.numpy as jnp

from lorex.lopt import RecurrentMap


def _sqrt(s):
    """√s with derivative 0 (not inf) at s = 0, so dU/dg at g = 0 is finite from a zero state (the true limit)."""
    pos = s > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)


def heavy_ball(alpha: float, beta: float) -> RecurrentMap:
    """Polyak momentum: h = (v,), v' = βv + g, u = −α v'.  (= optax.sgd(α, momentum=β))."""

    def step(h, x):
        return beta * h + x[:1]

    def readout(h):
        return -alpha * h[0]

    return RecurrentMap(step, readout, jnp.zeros((1,), jnp.float32))


def rmsprop(alpha: float, rho: float = 0.9, eps: float = 1e-8, *, eps_in_sqrt: bool = False) -> RecurrentMap:
    """RMSProp: h = (s, g_last), (s, ·), g → (ρs + (1−ρ)g², g), u = −α g_last/(√s + ε)  (or /√(s + ε) with
    ``eps_in_sqrt``, optax's default).  The last gradient is kept in the state so the readout can see it."""

    def step(h, x):
        g = x[0]
        return jnp.stack([rho * h[0] + (1.0 - rho) * g * g, g])

    def readout(h):
        den = _sqrt(h[0] + eps) if eps_in_sqrt else _sqrt(h[0]) + eps
        return -alpha * h[1] / den

    return RecurrentMap(step, readout, jnp.zeros((2,), jnp.float32))


def adam(alpha: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, *,
         bias_correction: bool = True) -> RecurrentMap:
    """Adam: h = (m, v, t) (t only with bias correction), m' = b1 m + (1−b1) g, v' = b2 v + (1−b2) g²,
    u = −α m̂/(√v̂ + ε) with m̂ = m'/(1 − b1^t'), v̂ = v'/(1 − b2^t')  (= optax.adam).  Without bias correction
    h = (m, v) and the map has fixed points under constant gradients."""

    def step(h, x):
        g = x[0]
        m = b1 * h[0] + (1.0 - b1) * g
        v = b2 * h[1] + (1.0 - b2) * g * g
        if bias_correction:
            return jnp.stack([m, v, h[2] + 1.0])
        return jnp.stack([m, v])

    def readout(h):
        m, v = h[0], h[1]
        if bias_correction:
            m, v = m / (1.0 - b1 ** h[2]), v / (1.0 - b2 ** h[2])
        return -alpha * m / (_sqrt(v) + eps)

    return RecurrentMap(step, readout, jnp.zeros((3 if bias_correction else 2,), jnp.float32))
