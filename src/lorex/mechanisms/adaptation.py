"""Learning-rate adaptation: does α_eff fall where the gradients are larger?

Deciding measure, on the trajectories: at 8 fixed steps t spread over the first half of the run (the phase in
which the optimizer meets large gradients; later the runs have converged and every gradient is tiny), across the
coordinates of all runs whose recent gradient scale lies in the top decade met at that step, the least-squares
slope of ln α_eff(h_{t,i}) against ln RMS_{t−w<=k<t}(g_{k,i}) (each coordinate's running RMS over its last w = 10
gradients: its recent gradient scale); the value is the median slope over those steps, with a bootstrap interval
over runs (runs resampled, slopes refitted).  The top decade (RMS within 10× of the 99th percentile at that step)
is where adaptation acts: an RMSProp with ε is flat for √v ≪ ε and has slope −1 beyond, and a fit over every
coordinate, most of them far below ε, would call it absent.  RMSProp gives −1, a fixed learning rate 0.  Present iff the slope < −0.2.
Gates: at least 8 coordinates with α_eff > 0 per step in the top decade, spanning at least half a decade.

Beside it, the S-curve: fixed points h*(g*) under constant gradients over the range met (|g*| from the 1st to the
99th percentile of |g|), α_eff at them and the log-log slope on each arm (converged points only, at least 4 per
arm), with a bootstrap interval over the fitted points.  It is not reported as a number when its slope moves by
more than its interval under a 1e-6 perturbation of its starting point.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lorex import analysis as A
from lorex.mechanisms import evidence as E
from lorex.mechanisms.finding import Finding, bootstrap, finding, sensitivity_tolerance

THRESHOLD = -0.2
FIT_STEPS = 8
WINDOW = 10
TOP_DECADES_RATIO = 10.0  # the fit uses coordinates whose recent RMS is within this factor of the step's 99th pct.
MIN_POINTS = 8
MIN_DECADES = 0.5
SCURVE_MIN_POINTS = 4
FP_TOL = 1e-10


class Adaptation(NamedTuple):
    finding: Finding
    steps: np.ndarray  # (K,) steps of the on-trajectory fit
    slopes: np.ndarray  # (K,) pooled slope at each step
    scatter: tuple  # (ln RMS, ln α_eff) at the middle fit step, for the figure
    scurve: A.SCurve | None
    scurve_numbers: dict
    numbers: dict


def running_rms(grads, window: int = WINDOW) -> np.ndarray:
    """(S, T, N) RMS of each coordinate's last ``window`` gradients strictly before step t (NaN at t = 0)."""
    g2 = np.asarray(grads, np.float64) ** 2
    c = np.concatenate([np.zeros_like(g2[:, :1]), np.cumsum(g2, axis=1)], axis=1)  # c[:, t] = Σ_{k<t} g²
    t = np.arange(g2.shape[1])
    lo = np.maximum(t - window, 0)
    n = (t - lo).astype(np.float64)
    out = np.full(g2.shape, np.nan)
    out[:, 1:] = np.sqrt((c[:, t[1:]] - c[:, lo[1:]]) / n[None, 1:, None])
    return out


def _slope(x, y):
    if x.size < MIN_POINTS or np.ptp(x) < MIN_DECADES * np.log(10):
        return np.nan
    xm = x - x.mean()
    return float(np.sum(xm * (y - y.mean())) / np.sum(xm * xm))


def trajectory_slopes(alpha_visited, rms, steps, runs=None) -> np.ndarray:
    """Pooled slope of ln α_eff vs ln recent RMS (``rms`` from :func:`running_rms`) at each of ``steps``, over the
    coordinates of ``runs`` in the top decade of recent RMS at that step."""
    runs = np.arange(rms.shape[0]) if runs is None else runs
    out = []
    for t in steps:
        with np.errstate(divide="ignore"):  # a coordinate that never got a gradient has RMS 0: dropped below
            x = np.log(rms[runs, t].ravel())
        a = alpha_visited[runs, t].ravel()
        m = np.isfinite(x) & np.isfinite(a) & (a > 0)
        if m.any():
            m &= x >= np.percentile(x[m], 99) - np.log(TOP_DECADES_RATIO)
        out.append(_slope(x[m], np.log(a[m])))
    return np.asarray(out)


def adaptation(rmap, ev: E.Evidence, *, alpha_visited: np.ndarray | None = None, h_start=None,
               scurve_points: int = 21, newton_steps: int = 20, relax_steps: int = 2000,
               operating: E.Operating | None = None) -> Adaptation:
    """Adaptation of ``rmap`` on the runs ``ev``; ``alpha_visited`` and ``operating`` as in
    :func:`lorex.mechanisms.schedule`; ``h_start``: where the S-curve starts (the convergence fixed point when valid;
    default the centroid of the final states)."""
    op = operating or E.operating(rmap, ev)
    gr, fd = op.gradients, op.fd_step
    if alpha_visited is None:
        alpha_visited = E.alpha_eff_at(rmap, ev.states_before(), fd)
    T = ev.steps
    steps = np.unique(np.linspace(max(1, T // (2 * FIT_STEPS)), max(1, T // 2), FIT_STEPS).round().astype(int))
    rms = running_rms(ev.grads)
    slopes = trajectory_slopes(alpha_visited, rms, steps)
    value = float(np.nanmedian(slopes)) if np.any(np.isfinite(slopes)) else float("nan")
    S = ev.n_runs

    def stat(idx):
        s = trajectory_slopes(alpha_visited, rms, steps, idx)
        return float(np.nanmedian(s)) if np.any(np.isfinite(s)) else np.nan

    ci = bootstrap(stat, S, n_boot=200) if np.isfinite(value) else (np.nan, np.nan)
    mid = steps[len(steps) // 2]
    with np.errstate(divide="ignore"):
        x, a = np.log(rms[:, mid].ravel()), alpha_visited[:, mid].ravel()
    m = np.isfinite(x) & np.isfinite(a) & (a > 0)
    scatter = (x[m], np.log(a[m]))
    share_pos = float(np.mean(alpha_visited[:, steps] > 0))
    numbers = {"alpha_eff_method": E.alpha_eff_method_text(fd), "fit_steps": steps.tolist(),
               "slopes": slopes.tolist(), "median_slope": value, "interval_95": list(ci),
               "share_alpha_eff_positive": share_pos, "rmsprop_slope": -1.0}
    sc, sc_numbers = _scurve(rmap, ev, gr, fd, h_start, scurve_points, newton_steps, relax_steps)
    reason = None
    if not np.isfinite(value):
        reason = (f"at no fit step did >= {MIN_POINTS} coordinates have α_eff > 0 with running RMS gradients "
                  f"spanning >= {MIN_DECADES} decades")
    fin = np.isfinite(slopes)
    span = (f" (per step from {np.min(slopes[fin]):.3g} to {np.max(slopes[fin]):.3g}, steps {steps[0]}–{steps[-1]})"
            if fin.any() else "")
    text = (f"on trajectories, slope of ln α_eff vs ln recent RMS(g) across coordinates = {value:.3g}{span} "
            f"(RMSProp −1); S-curve slope {_fmt(sc_numbers.get('slope_mean'))}"
            + (f" ({sc_numbers['not_reported']})" if sc_numbers.get("not_reported") else ""))
    f = finding("adaptation", value, ci, THRESHOLD, "below",
                measure="slope of ln α_eff against ln running RMS gradient across coordinates, on trajectories",
                interval_kind="bootstrap over analysis runs", text=text, reason=reason)
    return Adaptation(f, steps, slopes, scatter, sc, sc_numbers, numbers)


def _fmt(x):
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3g}"


def _scurve(rmap, ev, gr, fd, h_start, points, newton_steps, relax_steps):
    if not np.isfinite(gr.p1):
        return None, {"not_reported": "no gradient met"}
    geo = np.geomspace(gr.p1, gr.p99, points)
    grid = np.concatenate([-geo[::-1], [0.0], geo])
    h = jnp.asarray(E.late_states(ev).mean(axis=0) if h_start is None else h_start, ev.states.dtype)
    kw = dict(fd_step=fd, newton_steps=newton_steps, adam_steps=0, relax_steps=relax_steps)
    sc = A.s_curve(rmap, grid, h0=h, **kw)
    slopes, n_fit, ci = _arm_slopes(sc)
    mean = float(np.mean(slopes)) if np.all(np.isfinite(slopes)) else float("nan")
    out = {"grid_min": float(geo[0]), "grid_max": float(geo[-1]), "points_per_arm": points,
           "slope_pos": slopes[0], "slope_neg": slopes[1], "n_fit_pos": n_fit[0], "n_fit_neg": n_fit[1],
           "slope_mean": mean, "interval_95": list(ci), "converged": int(np.sum(np.asarray(sc.q) <= FP_TOL)),
           "points_from_relaxation": int(sc.n_relaxed), "zero_alpha_eff": float(sc.zero_alpha_eff)}
    if not np.isfinite(mean):
        out["not_reported"] = f"fewer than {SCURVE_MIN_POINTS} converged S-curve points with α_eff > 0 on an arm"
        return sc, out
    d = 1e-6 * jax.random.normal(jax.random.PRNGKey(7), h.shape, h.dtype)
    sc_p = A.s_curve(rmap, grid, h0=h + d, **kw)
    sp, _, _ = _arm_slopes(sc_p)
    shift = float(abs(np.mean(sp) - mean)) if np.all(np.isfinite(sp)) else float("inf")
    tol = sensitivity_tolerance(ci, THRESHOLD)
    out.update(perturbed_shift=shift, sensitivity_tolerance=tol)
    if shift > tol:
        out["not_reported"] = (f"S-curve slope moves by {shift:.3g} under a 1e-6 perturbation of its start "
                               f"(tolerance {tol:.3g})")
        out["slope_mean"] = None
    return sc, out


def _arm_slopes(sc):
    g = np.abs(np.asarray(sc.grads))
    a = np.asarray(sc.alpha_eff, np.float64)
    ok = (np.asarray(sc.q) <= FP_TOL) & np.isfinite(a) & (a > 0) & (g > 0)
    slopes, n_fit, xs = [], [], []
    for side in (1.0, -1.0):
        m = ok & (side * sc.grads > 0)
        n_fit.append(int(m.sum()))
        if m.sum() >= SCURVE_MIN_POINTS:
            x, y = np.log(g[m]), np.log(a[m])
            slopes.append(float(np.polyfit(x, y, 1)[0]))
            xs.append((x, y))
        else:
            slopes.append(float("nan"))
    if len(xs) == 2:
        rng = np.random.default_rng(0)
        reps = []
        for _ in range(500):
            s = []
            for x, y in xs:
                i = rng.integers(0, x.size, x.size)
                s.append(np.polyfit(x[i], y[i], 1)[0] if np.ptp(x[i]) > 0 else np.nan)
            reps.append(np.mean(s))
        reps = np.asarray(reps)
        reps = reps[np.isfinite(reps)]
        ci = tuple(np.percentile(reps, [2.5, 97.5])) if reps.size else (np.nan, np.nan)
    else:
        ci = (np.nan, np.nan)
    return slopes, n_fit, ci
