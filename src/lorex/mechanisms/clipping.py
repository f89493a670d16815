"""Clipping: does the update grow less than linearly over the gradients the optimizer actually meets?

Per analysis run, at the state h where that run met its largest gradient g_hi (the state that gradient entered),
and for each sign s:  κ_s = |U_h(s·g_hi) − U_h(s·g_ref)| / (|U_h'(s·g_ref)|·(g_hi − g_ref)),  with g_ref the 10th
percentile of |g| met and U_h' the slope there (autodiff; g_ref ≠ 0, so it exists for sign features too).
κ = 1 for a linear update, κ ≈ c/g_hi for a tanh clip at c ≪ g_hi.  κ = max over signs (clipping on both signs is
required); the deciding number is 1 − κ averaged over runs, with a bootstrap interval over runs.  Present iff
1 − κ > 0.5, i.e. the largest gradients move the parameters less than half as far as the small-gradient slope
predicts.  Described beside it, at h₀ over the range met: the saturation level and the |g| reaching 90 % of it, and
the share of gradients met beyond that.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lorex import analysis as A
from lorex.mechanisms import evidence as E
from lorex.mechanisms.finding import Finding, bootstrap_mean, finding

THRESHOLD = 0.5
FRACTION = 0.9


class Clipping(NamedTuple):
    finding: Finding
    kappa_per_run: np.ndarray  # (S,)
    g_ref: float
    g_hi_per_run: np.ndarray
    grads: np.ndarray  # (G,) grid at h₀ over ±(the range met)
    updates: np.ndarray  # (G,) U_{h₀}(g)
    numbers: dict  # JSON-ready descriptive numbers


def _update_and_slope(rmap):
    def u(h, g):
        return rmap.readout(rmap.step(h, jnp.reshape(g, (1,)).astype(h.dtype)))

    return jax.jit(jax.vmap(lambda h, g: (u(h, g), jax.grad(u, argnums=1)(h, g))))


def clipping(rmap, ev: E.Evidence, *, points: int = 101) -> Clipping:
    """Clipping of ``rmap`` on the runs ``ev`` (see the module docstring)."""
    gr = E.gradient_range(ev)
    g = np.abs(np.asarray(ev.grads, np.float64))
    g = np.where(np.isfinite(g), g, -1.0)
    S, T, N = g.shape
    flat = g.reshape(S, -1)
    idx = np.argmax(flat, axis=1)
    g_hi = flat[np.arange(S), idx]
    t_hi, i_hi = np.unravel_index(idx, (T, N))
    before = ev.states_before()
    h_hi = before[np.arange(S), t_hi, i_hi]  # (S, H)
    g_ref = float(gr.p10)
    numbers: dict = {"g_ref": g_ref, "g_hi_median": float(np.median(g_hi)), "threshold": THRESHOLD,
                     "gradient_range": gr._asdict()}
    us = _update_and_slope(rmap)
    kappa = np.full(S, np.nan)
    ok = np.isfinite(g_ref) & (g_hi > 10 * g_ref)
    if ok.any():
        hs = jnp.asarray(h_hi)
        ks = []
        for s in (1.0, -1.0):
            u_hi, _ = us(hs, jnp.asarray(s * g_hi, hs.dtype))
            u_ref, d_ref = us(hs, jnp.full((S,), s * g_ref, hs.dtype))
            u_hi, u_ref, d_ref = (np.asarray(a, np.float64) for a in (u_hi, u_ref, d_ref))
            with np.errstate(divide="ignore", invalid="ignore"):
                ks.append(np.abs(u_hi - u_ref) / (np.abs(d_ref) * (g_hi - g_ref)))
        kappa = np.where(ok, np.maximum(*ks), np.nan)
    value, ci = bootstrap_mean(1.0 - kappa)
    numbers.update(kappa_mean=1.0 - value if np.isfinite(value) else None,
                   runs_used=int(np.sum(np.isfinite(kappa))))

    # descriptive: U at h₀ over ±[p1, max] of |g| met, saturation within that range
    lo, hi = (gr.p1, gr.max) if np.isfinite(gr.p1) else (1e-3, 1.0)
    geo = np.geomspace(lo, hi, points)
    grid = np.concatenate([-geo[::-1], [0.0], geo])
    U0 = np.asarray(A.update_function(rmap, jnp.asarray(ev.h0), grid), np.float64)
    sat = A.saturation(grid, U0, fraction=FRACTION)
    gm = np.asarray(ev.grads, np.float64)
    gm = gm[np.isfinite(gm)]
    numbers.update(level_pos=float(sat.level_pos), level_neg=float(sat.level_neg), g90_pos=float(sat.g90_pos),
                   g90_neg=float(sat.g90_neg), fraction=FRACTION,
                   share_beyond_g90=float(np.mean(gm > sat.g90_pos) + np.mean(gm < -sat.g90_neg)) if gm.size else None,
                   max_gradient_met=float(gr.max))
    reason = None
    if not ok.any():
        reason = (f"the gradients met span less than a decade above their 10th percentile ({g_ref:.3g}): "
                  "saturation cannot be told from a linear update")
    text = (f"κ = {numbers['kappa_mean']:.3g} (update at the largest gradient met / linear prediction from the slope "
            f"at |g| = {g_ref:.3g}); at h₀ 90 % of the saturation is reached at |g| = {sat.g90_pos:.3g} / "
            f"{sat.g90_neg:.3g}, largest |g| met {gr.max:.3g}") if np.isfinite(value) else ""
    f = finding("clipping", value, ci, THRESHOLD, "above", measure="1 − κ at the state meeting each run's largest "
                "gradient", interval_kind="bootstrap over analysis runs", text=text, reason=reason)
    return Clipping(f, kappa, g_ref, g_hi, grid, U0, numbers)
