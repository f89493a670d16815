"""Clipping: does the update grow less than linearly over the gradients the optimizer actually meets?

At the initial state h₀, where every run meets its first gradients (the largest, on these tasks), per analysis run
with g_hi its largest first-step |g|, and for each sign s:
κ_s = |U(s·g_hi) − U(s·g_ref)| / (|U'(s·g_ref)|·(g_hi − g_ref)),  with g_ref the 10th percentile of the first-step
|g| of all runs and U' the slope there (autodiff; g_ref ≠ 0, so it exists for sign features too).  Later states are
not used: mid-run transients can have a near-zero small-gradient slope, which makes the ratio meaningless.
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
from lorex.analysis._common import map_jit
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
    def both(rmap, hs, gs):
        def u(h, g):
            return rmap.readout(rmap.step(h, jnp.reshape(g, (1,)).astype(h.dtype)))

        return jax.vmap(lambda h, g: (u(h, g), jax.grad(u, argnums=1)(h, g)))(hs, gs)

    return map_jit(both, rmap)


def clipping(rmap, ev: E.Evidence, *, points: int = 101) -> Clipping:
    """Clipping of ``rmap`` on the runs ``ev`` (see the module docstring)."""
    gr = E.gradient_range(ev)
    g0 = np.abs(np.asarray(ev.grads[:, 0], np.float64))  # (S, N) first-step gradients, met at h₀
    g0 = np.where(np.isfinite(g0), g0, -1.0)
    S = g0.shape[0]
    g_hi = g0.max(axis=1)
    met = g0[g0 > 0]
    g_ref = float(np.percentile(met, 10)) if met.size else float("nan")
    h_hi = np.broadcast_to(np.asarray(ev.h0), (S, ev.h0.shape[-1]))
    numbers: dict = {"g_ref": g_ref, "g_hi_median": float(np.median(g_hi)), "threshold": THRESHOLD,
                     "gradient_range": gr._asdict(), "state": "h0 (the first step of every run)"}
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
        reason = (f"the first-step gradients span less than a decade above their 10th percentile ({g_ref:.3g}): "
                  "saturation cannot be told from a linear update")
    text = (f"κ = {numbers['kappa_mean']:.3g} (update at each run's largest first-step gradient / linear prediction "
            f"from the slope at |g| = {g_ref:.3g}); at h₀ 90 % of the saturation is reached at |g| = {sat.g90_pos:.3g} / "
            f"{sat.g90_neg:.3g}, largest |g| met {gr.max:.3g}") if np.isfinite(value) else ""
    f = finding("clipping", value, ci, THRESHOLD, "above", measure="1 − κ at h₀ up to each run's largest first-step "
                "gradient", interval_kind="bootstrap over analysis runs", text=text, reason=reason)
    return Clipping(f, kappa, g_ref, g_hi, grid, U0, numbers)
