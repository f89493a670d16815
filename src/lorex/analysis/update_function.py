"""The update function U_h(g) = R(F(h, [g])) of a recurrent optimizer, its slope and its saturation.

U_h(g) is the update written for gradient g at state h (the readout R sees the NEW state).  The effective learning
rate is α_eff(h) = −dU_h/dg at g = 0 (autodiff).  For large |g| a bounded U_h saturates: that is a clipping mechanism,
to be compared with the density of the gradients the optimizer actually meets.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lorex.analysis._common import input_of, map_jit, split_map


def _update_fn(rmap, readout, input_dim, input_index):
    step, ro = split_map(rmap, readout)

    def u(h, g):
        return ro(step(h, input_of(g, input_dim, input_index).astype(h.dtype)))

    return u


def update_function(rmap, states, grads, readout=None, *, input_dim: int = 1, input_index: int = 0) -> jax.Array:
    """U_h(g) for states (..., H) and a gradient grid (G,): shape (..., G)."""
    states, grads = jnp.asarray(states), jnp.asarray(grads)
    hs = states.reshape((-1, states.shape[-1]))
    grads = grads.astype(hs.dtype)

    def grid(pair, hs, grads):
        u = _update_fn(pair, None, input_dim, input_index)
        return jax.vmap(jax.vmap(u, in_axes=(None, 0)), in_axes=(0, None))(hs, grads)

    U = map_jit(grid, split_map(rmap, readout))(hs, grads)
    return U.reshape(states.shape[:-1] + grads.shape)


class UpdateSlice(NamedTuple):
    """U over a (state offset s) × (gradient g) grid along h + s·d."""

    offsets: jax.Array  # (S,)
    states: jax.Array  # (S, H) h + s·d
    grads: jax.Array  # (G,)
    updates: jax.Array  # (S, G)


def update_along(rmap, h, direction, offsets, grads, readout=None, *, input_dim: int = 1,
                 input_index: int = 0) -> UpdateSlice:
    """U_{h + s·d}(g) for a grid of offsets s along ``direction`` d (H,) (e.g. a principal component or a slow
    eigenvector; complex vectors are taken by their real part)."""
    h = jnp.asarray(h)
    d = jnp.real(jnp.asarray(direction)).astype(h.dtype)
    s = jnp.asarray(offsets, h.dtype)
    states = h[None, :] + s[:, None] * d[None, :]
    U = update_function(rmap, states, grads, readout, input_dim=input_dim, input_index=input_index)
    return UpdateSlice(s, states, jnp.asarray(grads, h.dtype), U)


def alpha_eff_fn(rmap, readout=None, *, input_dim: int = 1, input_index: int = 0, fd_step: float | None = None):
    """The traceable function h (H,) → α_eff(h) = −dU_h/dg at g = 0 (see :func:`effective_lr`).

    ``fd_step`` may be a scalar array (traced: one compiled function for every step, see :func:`fd_argument`)."""
    u = _update_fn(rmap, readout, input_dim, input_index)
    if fd_step is None:
        return lambda h: -jax.grad(u, argnums=1)(h, jnp.zeros((), h.dtype))
    d = fd_step if isinstance(fd_step, jax.Array) else float(fd_step)
    return lambda h: -(u(h, jnp.asarray(d, h.dtype)) - u(h, jnp.asarray(-d, h.dtype))) / (2.0 * d)


def effective_lr(rmap, states, readout=None, *, input_dim: int = 1, input_index: int = 0,
                 fd_step: float | None = None) -> jax.Array:
    """α_eff(h) = −dU_h/dg at g = 0 for states (..., H) → (...).

    By autodiff; with ``fd_step`` δ, by the central difference −(U(δ) − U(−δ))/(2δ) instead (for features that are
    not differentiable at 0, e.g. log_sign, whose autodiff slope there is 0).
    """
    states = jnp.asarray(states)
    hs = states.reshape((-1, states.shape[-1]))

    autodiff = fd_step is None

    def alphas(pair, hs, d):
        one = alpha_eff_fn(pair, input_dim=input_dim, input_index=input_index, fd_step=None if autodiff else d)
        return jax.vmap(one)(hs)

    return map_jit(alphas, split_map(rmap, readout))(hs, fd_argument(fd_step, hs.dtype)).reshape(states.shape[:-1])


def fd_argument(fd_step: float | None, dtype) -> jax.Array:
    """``fd_step`` as a scalar array of ``dtype`` (0 for autodiff), to pass to a compiled function as an argument:
    the step is the median |g| met, different for every optimizer, and would otherwise be compiled in."""
    return jnp.asarray(0.0 if fd_step is None else fd_step, dtype)


class Saturation(NamedTuple):
    """Saturation of U(g) on each side of g = 0 (arrays over the leading axes of ``updates``)."""

    level_pos: np.ndarray  # max |U(g) − U(0)| over g > 0 (|U(g)| when center=False)
    level_neg: np.ndarray  # same over g < 0
    g90_pos: np.ndarray  # smallest g > 0 reaching ``fraction`` of level_pos (linear interpolation on the grid)
    g90_neg: np.ndarray  # smallest |g|, g < 0, reaching ``fraction`` of level_neg
    limit_pos: np.ndarray  # U at the largest g of the grid
    limit_neg: np.ndarray  # U at the most negative g of the grid


def _reach(gs, d, frac):
    """(level, first |g| reaching frac·level) on one side: gs ascending |g|, d >= 0 the level there (0 at g = 0)."""
    if gs.size == 0:
        return np.nan, np.nan
    level = np.max(d)
    target = frac * level
    i = int(np.argmax(d >= target))
    g_prev, d_prev = (0.0, 0.0) if i == 0 else (gs[i - 1], d[i - 1])
    if d[i] == d_prev:
        return level, gs[i]
    return level, g_prev + (target - d_prev) * (gs[i] - g_prev) / (d[i] - d_prev)


def saturation(grads, updates, *, fraction: float = 0.9, center: bool = True) -> Saturation:
    """Saturation level of U over a gradient grid (G,) and the |g| at which ``fraction`` of it is reached.

    ``updates``: (..., G) as returned by :func:`update_function`.  With ``center`` the levels are measured from U(0)
    (interpolated if 0 is not on the grid), so a constant drift of the update does not count as saturation.
    """
    g = np.asarray(grads, np.float64)
    U = np.asarray(updates, np.float64)
    order = np.argsort(g)
    g, U = g[order], U[..., order]
    lead = U.shape[:-1]
    U2 = U.reshape((-1, g.size))
    out = {k: np.full(U2.shape[0], np.nan) for k in Saturation._fields}
    pos, neg = g > 0, g < 0
    for j, u in enumerate(U2):  # host post-processing, one row per state
        u0 = np.interp(0.0, g, u) if center else 0.0
        d = np.abs(u - u0)
        out["level_pos"][j], out["g90_pos"][j] = _reach(g[pos], d[pos], fraction)
        out["level_neg"][j], out["g90_neg"][j] = _reach(-g[neg][::-1], d[neg][::-1], fraction)
        out["limit_pos"][j] = u[-1] if pos.any() else np.nan
        out["limit_neg"][j] = u[0] if neg.any() else np.nan
    return Saturation(**{k: v.reshape(lead) for k, v in out.items()})


def gradient_density(grads, bins: int = 60, *, signed: bool = False, log_bins: bool | None = None,
                     range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:  # noqa: A002
    """Histogram density of the gradients met (any shape; non-finite and, for log bins, zero values skipped).

    Of |g| with log-spaced bins by default; ``signed=True`` for g itself with linear bins.  Returns (edges, density),
    density integrating to 1 over the bins.
    """
    g = np.asarray(grads, np.float64).ravel()
    g = g[np.isfinite(g)]
    if not signed:
        g = np.abs(g)
    log_bins = (not signed) if log_bins is None else log_bins
    if log_bins:
        g = g[g > 0]
    if g.size == 0:
        return np.zeros(bins + 1), np.zeros(bins)
    lo, hi = range if range is not None else (g.min(), g.max())
    if hi <= lo:
        hi = lo + (abs(lo) if lo else 1.0)
    edges = np.geomspace(lo, hi, bins + 1) if log_bins else np.linspace(lo, hi, bins + 1)
    dens, edges = np.histogram(g, bins=edges, density=True)
    return edges, dens


def share_beyond(grads, threshold: float) -> float:
    """Fraction of the (finite) gradients with |g| > threshold."""
    g = np.abs(np.asarray(grads, np.float64).ravel())
    g = g[np.isfinite(g)]
    return float(np.mean(g > threshold)) if g.size else float("nan")
