"""S-curve: fixed points h*(g*) under constant gradients g* of both signs, and the learning-rate adaptation.

From the zero-gradient fixed point h*(0), each arm (g* > 0 and g* < 0, in increasing |g*|) is walked by continuation:
the Newton solve at each g* starts from its neighbour's point (one lax.scan per arm).  At each point α_eff =
−dU/dg at g = 0 at the state h*(g*) (the SPEC's definition).  For RMSProp (state s, readout −α g/(√s + ε)) this is
α/(√ρ |g*| + ε): the new state s' = ρ g*² + (1−ρ) g² is what the readout sees, hence the √ρ; log-log slope −1.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lorex.analysis._common import initial_state, input_of, map_jit, split_map
from lorex.analysis.fixed_points import find_fixed_points, newton_polish
from lorex.analysis.pca import PCA, pca
from lorex.analysis.update_function import effective_lr


class SCurve(NamedTuple):
    grads: np.ndarray  # (G,) the constant gradients g*, as given
    points: np.ndarray  # (G, H) h*(g*)
    q: np.ndarray  # (G,) ½‖F(h*, g*) − h*‖²
    alpha_eff: np.ndarray  # (G,) α_eff at h*(g*)
    projection: np.ndarray  # (G, k) points in the PCA basis of the curve
    pca: PCA
    zero_point: np.ndarray  # (H,) h*(0)
    zero_q: float
    zero_alpha_eff: float
    n_relaxed: int = 0  # points taken from relaxation rather than continuation (see ``relax_steps``)


def _relaxer(step_fn, input_dim, input_index, steps: int, newton_steps: int):
    def relax(step_fn, h_start, gs):
        xs = jax.vmap(lambda g: input_of(g, input_dim, input_index).astype(h_start.dtype))(gs)

        def one(x):
            return jax.lax.fori_loop(0, steps, lambda i, h: step_fn(h, x), h_start)

        return newton_polish(step_fn, jax.vmap(one)(xs), xs, newton_steps)

    return map_jit(relax, step_fn)


def _walker(step_fn, input_dim, input_index, newton_steps):
    def walk(step_fn, h_start, gs):
        def body(h, g):
            x = input_of(g, input_dim, input_index).astype(h.dtype)
            h1, q1 = newton_polish(step_fn, h[None], x[None], newton_steps)
            return h1[0], (h1[0], q1[0])

        _, (hs, qs) = jax.lax.scan(body, h_start, gs)
        return hs, qs

    return map_jit(walk, step_fn)


def s_curve(rmap, grads, h0=None, readout=None, *, n_components: int = 2, newton_steps: int = 20,
            input_dim: int = 1, input_index: int = 0, fd_step: float | None = None, relax_steps: int = 0,
            **fixed_point_options) -> SCurve:
    """Fixed points and α_eff over a grid of constant gradients ``grads`` (G,) of both signs (0 may be included).

    h*(0) is found from ``h0`` (default: the map's initial state) with :func:`find_fixed_points`
    (``fixed_point_options`` are passed on); pass a known zero-gradient fixed point as ``h0`` to skip the search.
    ``relax_steps > 0`` also relaxes h ← F(h, g*) that many times from h*(0) for every g*, polishes with Newton, and
    keeps whichever of the two points has the lower q: continuation alone loses the curve at folds and where fixed
    points sit near |λ| = 1 (seen on a trained linreg optimizer), while relaxation finds the stable point that a
    constant gradient drives the state to.
    """
    step, ro = split_map(rmap, readout)
    h0 = initial_state(rmap, h0)
    dt = h0.dtype
    fps = find_fixed_points(step, h0[None], None, input_dim=input_dim, **{"tol": np.inf, **fixed_point_options})
    if len(fps.q):
        hz, zq = jnp.asarray(fps.points[0], dt), float(fps.q[0])
    else:  # the search diverged: walk from the seed itself, q says how good that is
        hz, zq = h0, float("inf")
    g = np.asarray(grads, np.float64)
    points = np.zeros((g.size, h0.shape[0]), np.dtype(dt))
    qs = np.zeros(g.size, np.dtype(dt))
    walk = _walker(step, input_dim, input_index, int(newton_steps))
    for side in (1.0, -1.0):
        idx = np.flatnonzero(side * g > 0)
        if idx.size == 0:
            continue
        idx = idx[np.argsort(np.abs(g[idx]), kind="stable")]
        hs, qq = walk(hz, jnp.asarray(g[idx], dt))
        points[idx], qs[idx] = np.asarray(hs), np.asarray(qq)
    n_relaxed = 0
    if relax_steps > 0 and g.size:
        h_r, q_r = _relaxer(step, input_dim, input_index, int(relax_steps), int(newton_steps))(hz, jnp.asarray(g, dt))
        h_r, q_r = np.asarray(h_r), np.asarray(q_r)
        use = np.isfinite(q_r) & (~np.isfinite(qs) | (q_r < qs))
        points[use], qs[use] = h_r[use], q_r[use]
        n_relaxed = int(use.sum())
    zero = g == 0
    points[zero], qs[zero] = np.asarray(hz), zq
    alpha = np.asarray(effective_lr((step, ro), jnp.asarray(points), input_dim=input_dim, input_index=input_index,
                                    fd_step=fd_step))
    a0 = float(effective_lr((step, ro), hz, input_dim=input_dim, input_index=input_index, fd_step=fd_step))
    p = pca(points, n_components)
    return SCurve(g, points, qs, alpha, p.project(points), p, np.asarray(hz), zq, a0, n_relaxed)


class SCurveSummary(NamedTuple):
    slope_pos: float  # log-log slope of α_eff against |g*| on the g* > 0 arm (RMSProp: −1)
    slope_neg: float  # same on the g* < 0 arm
    rmsprop_alpha_pos: float  # geometric mean of α_eff·|g*| over the fit: the α of the best slope −1 law α/|g*|
    rmsprop_alpha_neg: float
    n_fit_pos: int
    n_fit_neg: int


def s_curve_summary(curve: SCurve, *, fit_range: tuple[float, float] | None = None, tol: float = 1e-10,
                    drop: float = 0.5) -> SCurveSummary:
    """Log-log slope of α_eff vs |g*| on each arm, over the part of the grid where adaptation is meaningful.

    Fitted points: converged (q <= tol), α_eff > 0 and finite, and |g*| in ``fit_range`` when given; otherwise
    where α_eff has dropped below ``drop`` × α_eff(h*(0)) (the adapting part, past the flat small-|g*| plateau).
    """
    g, a = np.abs(curve.grads), np.asarray(curve.alpha_eff, np.float64)
    ok = (np.asarray(curve.q) <= tol) & np.isfinite(a) & (a > 0) & (g > 0)
    if fit_range is not None:
        ok &= (g >= fit_range[0]) & (g <= fit_range[1])
    elif np.isfinite(curve.zero_alpha_eff) and curve.zero_alpha_eff > 0:
        ok &= a <= drop * curve.zero_alpha_eff
    out = []
    for side in (1.0, -1.0):
        m = ok & (side * curve.grads > 0)
        if m.sum() >= 2:
            slope = float(np.polyfit(np.log(g[m]), np.log(a[m]), 1)[0])
            alpha = float(np.exp(np.mean(np.log(a[m] * g[m]))))
        else:
            slope = alpha = float("nan")
        out.append((slope, alpha, int(m.sum())))
    (sp, ap, np_), (sn, an, nn) = out
    return SCurveSummary(sp, sn, ap, an, np_, nn)

