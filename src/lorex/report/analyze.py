"""Every analysis of SPEC §6 on one learned optimizer and one task, reduced to the numbers of SPEC §7 and findings.

:func:`analyze_task` records trajectories, finds the convergence fixed point, reads its linearization as momentum
terms, measures the update function's saturation against the gradients met (clipping), runs the autonomous dynamics
(schedule) and walks the S-curve of gradient-dependent fixed points (adaptation).  It returns JSON-ready numbers and
the arrays the figures need.  :func:`findings` turns the numbers into present/absent statements by the fixed rules
below; the rules were fixed before looking at any result and are never adjusted to agree with the paper.

Decision rules (:data:`RULES`)
------------------------------
* momentum: at the convergence fixed point, the *dominant momentum mode* is the real mode with 0 < λ < 1 and α > 0
  of largest weight α(1 − λ^T)/(1 − λ): the total step it contributes over the task's horizon T under a constant unit
  gradient (α/(1 − λ) for modes much faster than T; a near-integrator slower than the run does not dominate).
  Momentum is present iff that mode exists and its β = λ >= 0.5 (timescale −1/ln β >= 1.44 steps).
* clipping: the update function at h₀ over ±10× the largest gradient met.  Clipping is present iff, on both signs,
  90 % of the maximal change of the update is reached at a |g| below the largest |g| the optimizer met on the task
  (a linear update would reach it only at 9× that gradient).
* schedule: α_eff along the autonomous (zero-gradient) trajectory from h₀ for the task's horizon.  A schedule is
  present iff peak/initial > 1.2 (warm-up) or final/peak < 0.8 (decay), i.e. α_eff changes by more than 20 %.
* adaptation: α_eff at the S-curve fixed points h*(g*) against |g*|, a log-log least-squares line on each arm over
  the gradients met on the task (|g*| from the 10th percentile of the nonzero |g| met, or the grid's smallest |g*| if
  larger, to the largest |g| met; converged points only).  Adaptation is present iff the mean slope of the two arms
  is below −0.2 (RMSProp: −1).

For ``log_sign`` input features the update is discontinuous at g = 0 (the sign input jumps), so autodiff at 0 misses
the jump: α_eff (and the input Jacobian B of the linearization) are then taken as central differences
−(U(δ) − U(−δ))/(2δ) with δ = the median nonzero |g| met on the task.  For ``raw`` features they are exact autodiff.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lorex import analysis as A
from lorex import lopt, seeds
from lorex.errors import LorexError
from lorex.evaluate import problem_and_params

MECHANISMS = ("momentum", "clipping", "schedule", "adaptation")
MOMENTUM_MIN_BETA = 0.5
SCHEDULE_TOLERANCE = 0.2
ADAPTATION_MAX_SLOPE = -0.2
CLIP_FRACTION = 0.9
ADAPTATION_FIT_PERCENTILE = 10.0

RULES = {
    "momentum": ("dominant momentum mode at the convergence fixed point (real 0 < λ < 1, α > 0, largest "
                 f"α(1 − λ^T)/(1 − λ) over the horizon T) has β = λ >= {MOMENTUM_MIN_BETA} (timescale >= "
                 f"{-1 / math.log(MOMENTUM_MIN_BETA):.2f} steps)"),
    "clipping": (f"update function at h0 reaches {CLIP_FRACTION:.0%} of its maximal change, on both signs, at a "
                 "|g| below the largest |g| met on the task"),
    "schedule": (f"autonomous α_eff: peak/initial > {1 + SCHEDULE_TOLERANCE:g} or final/peak < "
                 f"{1 - SCHEDULE_TOLERANCE:g}"),
    "adaptation": (f"log-log slope of α_eff(h*(g*)) against |g*| over the gradients met (p{ADAPTATION_FIT_PERCENTILE:g}"
                   f" to max of |g|), mean of both arms, below {ADAPTATION_MAX_SLOPE:g} (RMSProp: −1)"),
}


@dataclasses.dataclass(frozen=True)
class AnalysisOptions:
    """Sizes of the analyses (the defaults are the report's; tests shrink them)."""

    trajectories: int = 16  # analysis seeds (problems) recorded
    state_budget: int = 2**25  # at most this many state floats recorded (fewer seeds on large tasks)
    steps: int | None = None  # horizon of trajectories and of the autonomous run (default: the task's)
    late_fraction: float = 0.25  # "late" = the last quarter of the steps (fixed-point seeds, PCA near convergence)
    fp_seeds: int = 256
    fp_noise: float = 0.01
    fp_adam_steps: int = 500
    fp_newton_steps: int = 20
    fp_tol: float = 1e-10
    grid_decades: float = 5.0  # gradient grids span [gmax·10^(1−decades), 10·gmax] on each sign
    clip_points: int = 101  # per sign
    scurve_points: int = 41  # per arm
    update_offsets: int = 7  # states along the slow mode
    update_curves: int = 7  # states along the S-curve
    relax_steps: int = 2000  # S-curve: iterations of h ← F(h, g*) from h*(0) before the Newton polish
    density_bins: int = 60
    plot_coordinates: int = 32  # coordinates drawn in the state-space plots

    def __post_init__(self):
        for f in ("trajectories", "state_budget", "fp_seeds", "clip_points", "scurve_points", "update_offsets",
                  "update_curves", "relax_steps", "density_bins", "plot_coordinates"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise LorexError(f"analysis_options.{f}", f"got {v!r}", "a positive integer")
        if not 0 < self.late_fraction <= 1:
            raise LorexError("analysis_options.late_fraction", f"got {self.late_fraction!r}", "0 < x <= 1")

    @classmethod
    def make(cls, options) -> "AnalysisOptions":
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        fields = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(options) - fields)
        if bad:
            raise LorexError("analysis_options", f"unknown fields {bad}", sorted(fields))
        return cls(**options)


# --------------------------------------------------------------------------------------------------- helpers


def _f(x) -> float | None:
    """A JSON-safe float: None for NaN/inf."""
    if x is None:
        return None
    x = float(np.real(x))
    return x if math.isfinite(x) else None


def _n_coordinates(family) -> int:
    shape = jax.eval_shape(lambda k: ravel_pytree(problem_and_params(family, k)[1])[0], jax.random.PRNGKey(0))
    return int(shape.shape[0])


def _record(params, config, family, keys, steps):
    f = jax.jit(jax.vmap(lambda k: A.record_trajectory(params, config, family, k, steps)))
    return f(keys)


def _secant_input_jacobian(step, h, delta):
    """(F(h, [δ]) − F(h, [−δ]))/(2δ): the input Jacobian across the sign jump of log_sign features."""
    h = jnp.asarray(h)
    d = jnp.asarray([delta], h.dtype)
    return np.asarray((step(h, d) - step(h, -d)) / (2.0 * delta), np.float64)


def _gradient_stats(g_abs: np.ndarray) -> dict:
    nz = g_abs[g_abs > 0]
    if nz.size == 0:
        return {"count": int(g_abs.size), "share_zero": 1.0, "min_nonzero": None, "p10": None, "median": None,
                "p99": None, "max": None}
    return {"count": int(g_abs.size), "share_zero": float(1 - nz.size / g_abs.size), "min_nonzero": float(nz.min()),
            "p10": float(np.percentile(nz, ADAPTATION_FIT_PERCENTILE)), "median": float(np.median(nz)),
            "p99": float(np.percentile(nz, 99)), "max": float(nz.max())}


# --------------------------------------------------------------------------------------------------- analysis


def analyze_task(params, config: lopt.LOptConfig, family, *, seed: int = 0, options=None,
                 progress=None) -> tuple[dict, dict]:
    """Run every analysis of one optimizer on one task: (numbers, arrays).

    ``numbers`` is JSON-ready (SPEC §7, plus sizes and wall times); ``arrays`` holds what the figures draw.
    ``progress(message)`` is called before each stage when given.  Keys come from the ``analysis`` seed stream.
    """
    opts = AnalysisOptions.make(options)
    say = progress or (lambda msg: None)
    rm = lopt.recurrent_map(params, config)
    H = int(config.hidden)
    T = int(opts.steps or family.steps)
    walls: dict[str, float] = {}
    out: dict[str, Any] = {}
    arr: dict[str, Any] = {"task": getattr(family, "name", type(family).__name__)}
    key_traj, key_fp = jax.random.split(seeds.stream(seed, "analysis"))

    # -------------------------------------------------------------------------------- trajectories
    say("trajectories")
    t0 = time.perf_counter()
    N = _n_coordinates(family)
    n_traj = int(max(1, min(opts.trajectories, opts.state_budget // max(1, T * N * H))))
    tr = _record(params, config, family, jax.random.split(key_traj, n_traj), T)
    states = np.asarray(tr.states)  # (S, T, N, H)
    grads = np.asarray(tr.grads, np.float64)  # (S, T, N)
    losses = np.asarray(tr.losses, np.float64)  # (S, T + 1)
    g_fin = grads[np.isfinite(grads)]
    g_abs = np.abs(g_fin)
    gstats = _gradient_stats(g_abs)
    gmax = gstats["max"] or 1.0
    delta = None if config.features == "raw" else float(gstats["median"] or 1.0)
    late = max(1, int(math.ceil(opts.late_fraction * T)))
    late_states = states[:, -late:]  # (S, L, N, H)
    final_states = states[:, -1].reshape(-1, H)
    out["trajectories"] = {"n_seeds": n_traj, "steps": T, "n_coordinates": N, "hidden": H,
                           "features": config.features, "late_steps": late, "gradient_abs": gstats,
                           "alpha_eff_method": "autodiff at g = 0" if delta is None else
                           f"central difference at δ = median |g| = {delta:.4g}",
                           "alpha_eff_fd_step": delta,
                           "final_loss_median": _f(np.median(losses[:, -1]))}
    arr.update(grads=g_fin, losses=losses)
    walls["trajectories"] = time.perf_counter() - t0

    # -------------------------------------------------------------------------------- convergence fixed point
    say("fixed points")
    t0 = time.perf_counter()
    seeds_ = A.sample_seeds(jnp.asarray(late_states), opts.fp_seeds, opts.fp_noise, key_fp)
    fp_kw = dict(adam_steps=opts.fp_adam_steps, newton_steps=opts.fp_newton_steps)
    fps = A.find_fixed_points(rm.step, seeds_, tol=opts.fp_tol, **fp_kw)
    converged = len(fps.q) > 0
    if not converged:  # nothing reached tol: keep the best candidates anyway, flagged
        fps_all = A.find_fixed_points(rm.step, seeds_, tol=np.inf, **fp_kw)
        cand = fps_all
    else:
        cand = fps
    dist = np.array([np.mean(np.linalg.norm(final_states - p, axis=1)) for p in cand.points])
    pool = np.flatnonzero(cand.stable) if cand.stable.any() else np.arange(len(cand.q))
    i_star = int(pool[np.argmin(dist[pool])])
    h_star = np.asarray(cand.points[i_star])
    u_star = float(rm.readout(rm.step(jnp.asarray(h_star), jnp.zeros((1,), h_star.dtype))))
    out["fixed_point"] = {
        "n_seeds": int(fps.n_seeds), "n_converged": int(fps.n_converged), "n_distinct": int(len(fps.q)),
        "n_stable": int(np.sum(fps.stable)), "tolerance": opts.fp_tol, "converged": bool(converged),
        "selection": "stable point nearest the final states" if cand.stable.any() else
        "no stable point: the point nearest the final states",
        "q": _f(cand.q[i_star]), "stable": bool(cand.stable[i_star]),
        "spectral_radius": _f(np.max(np.abs(cand.eigenvalues[i_star]))),
        "distance_to_final_states": _f(dist[i_star]),
        "final_state_spread": _f(np.mean(np.linalg.norm(final_states - final_states.mean(0), axis=1))),
        "update_at_fixed_point": _f(u_star),
    }
    # PCA of the late states (pooled, subsampled), and a few coordinates of the first seed drawn in that plane
    pool_states = late_states.reshape(-1, H)
    if pool_states.shape[0] > 20000:
        pool_states = pool_states[np.linspace(0, pool_states.shape[0] - 1, 20000).astype(int)]
    p_late = A.pca(pool_states, 2)
    C = min(N, opts.plot_coordinates)
    arr.update(h_star=h_star, late_proj=p_late.project(late_states[0, :, :C]), late_var=p_late.explained_variance_ratio,
               star_proj=p_late.project(h_star), others_proj=p_late.project(np.asarray(cand.points)),
               final_proj=p_late.project(states[0, -1, :C]))
    walls["fixed_points"] = time.perf_counter() - t0

    # -------------------------------------------------------------------------------- momentum
    say("momentum")
    t0 = time.perf_counter()
    mm = A.momentum_modes(rm, jnp.asarray(h_star))
    lam = np.asarray(mm.betas)
    R, L, w = np.asarray(mm.right_eigenvectors), np.asarray(mm.left_eigenvectors), np.asarray(mm.readout_grad)
    B = np.asarray(mm.jac_input) if delta is None else _secant_input_jacobian(rm.step, h_star, delta)
    alphas = -(w @ R) * (B @ L)  # α_i = −(wᵀr_i)(l_iᵀB)
    tau = np.asarray(mm.timescales)
    real = np.abs(lam.imag) <= 1e-9 * np.maximum(1.0, np.abs(lam))
    cand_m = real & (lam.real > 0) & (lam.real < 1) & (alphas.real > 0)
    lam_r = np.clip(lam.real, 0.0, 1.0 - 1e-12)
    weight = np.where(cand_m, alphas.real * (1 - lam_r**T) / (1 - lam_r), -np.inf)
    dom = int(np.argmax(weight)) if cand_m.any() else None
    polyak = family.polyak() if hasattr(family, "polyak") else None

    def mode(i):
        return {"index": int(i), "eigenvalue_re": float(lam[i].real), "eigenvalue_im": float(lam[i].imag),
                "abs": float(abs(lam[i])), "timescale": _f(tau[i]), "alpha_re": float(alphas[i].real),
                "alpha_im": float(alphas[i].imag)}

    mom = {"eigenvalues": [mode(i) for i in range(min(8, H))], "slowest": mode(0),
           "n_unstable_modes": int(np.sum(np.abs(lam) >= 1)),
           "alpha_eff_sum": float(np.sum(alphas).real),
           "dominant_mode": None, "implied_beta": None, "implied_alpha": None, "implied_timescale": None,
           "polyak": None}
    if dom is not None:
        mom["dominant_mode"] = {**mode(dom), "weight": float(weight[dom]),
                                "weight_share": float(weight[dom] / np.sum(weight[cand_m]))}
        mom["implied_beta"], mom["implied_alpha"] = float(lam[dom].real), float(alphas[dom].real)
        mom["implied_timescale"] = _f(tau[dom])
    if polyak is not None:
        a_s, b_s = (float(v) for v in polyak)
        p = {"alpha_star": a_s, "beta_star": b_s, "beta_minus_beta_star": None, "alpha_over_alpha_star": None,
             "distance": None,
             "distance_definition": "hypot(β − β*, log10(α/α*)) for the dominant momentum mode"}
        if dom is not None:
            a, b = mom["implied_alpha"], mom["implied_beta"]
            p.update(beta_minus_beta_star=b - b_s, alpha_over_alpha_star=a / a_s,
                     distance=float(np.hypot(b - b_s, np.log10(a / a_s))))
        mom["polyak"] = p
    out["momentum"] = mom
    # update functions along the slow (momentum) mode, and the late states for the PCA picture
    i_dir = dom if dom is not None else 0
    direction = np.real(R[:, i_dir])
    coord = np.real((late_states.reshape(-1, H) - h_star) @ L[:, i_dir])
    span = float(2.5 * np.std(coord)) if np.std(coord) > 1e-6 else 0.1
    offsets = np.linspace(-span, span, opts.update_offsets)
    g_hi = float(gstats["p99"] or 1.0)
    g_lin = np.linspace(-g_hi, g_hi, 101)
    sl = A.update_along(rm, jnp.asarray(h_star), direction, offsets, g_lin)
    arr.update(eigenvalues=lam, alphas=alphas, dominant=dom, polyak=polyak, along_offsets=offsets,
               along_grads=g_lin, along_updates=np.asarray(sl.updates), along_mode=i_dir)
    walls["momentum"] = time.perf_counter() - t0

    # -------------------------------------------------------------------------------- clipping
    say("clipping")
    t0 = time.perf_counter()
    geo = np.geomspace(gmax * 10.0 ** (1 - opts.grid_decades), 10 * gmax, opts.clip_points)
    g_clip = np.concatenate([-geo[::-1], [0.0], geo])
    h0 = np.asarray(rm.h0)
    U0 = np.asarray(A.update_function(rm, jnp.asarray(h0), g_clip), np.float64)
    sat = A.saturation(g_clip, U0, fraction=CLIP_FRACTION)
    g90p, g90n = float(sat.g90_pos), float(sat.g90_neg)
    g_pos_max = float(np.max(g_fin)) if np.any(g_fin > 0) else 0.0
    g_neg_max = float(-np.min(g_fin)) if np.any(g_fin < 0) else 0.0
    n_g = max(1, g_fin.size)
    beyond_p = float(np.sum(g_fin > g90p) / n_g) if np.isfinite(g90p) else None
    beyond_n = float(np.sum(g_fin < -g90n) / n_g) if np.isfinite(g90n) else None
    a_h0 = float(A.effective_lr(rm, jnp.asarray(h0), fd_step=delta))
    out["clipping"] = {
        "grid_max": float(geo[-1]), "max_gradient_met": gmax, "max_positive_gradient_met": g_pos_max,
        "max_negative_gradient_met": g_neg_max, "fraction": CLIP_FRACTION,
        "level_pos": _f(sat.level_pos), "level_neg": _f(sat.level_neg),
        "g90_pos": _f(g90p), "g90_neg": _f(g90n),
        "update_at_grid_max": _f(sat.limit_pos), "update_at_grid_min": _f(sat.limit_neg),
        "update_at_zero": _f(np.interp(0.0, g_clip, U0)),
        "share_beyond_g90": (None if beyond_p is None or beyond_n is None else beyond_p + beyond_n),
        "share_beyond_g90_pos": beyond_p, "share_beyond_g90_neg": beyond_n,
        "alpha_eff_h0": _f(a_h0),
    }
    edges, dens = A.gradient_density(g_fin, bins=opts.density_bins)
    arr.update(clip_grads=g_clip, clip_updates=U0, density_edges=edges, density=dens, g90=(g90p, g90n))
    walls["clipping"] = time.perf_counter() - t0

    # -------------------------------------------------------------------------------- schedule
    say("schedule")
    t0 = time.perf_counter()
    au = A.autonomous(rm, T, fd_step=delta)
    a_sched = np.asarray(au.alpha_eff, np.float64)
    s = A.schedule_summary(a_sched)
    out["schedule"] = {"steps": T, "warmup_length": int(s.warmup), "initial": _f(s.initial), "peak": _f(s.peak),
                       "final": _f(s.final), "peak_over_initial": _f(s.peak_over_initial),
                       "final_over_peak": _f(s.final_over_peak),
                       "alpha_eff_min": _f(np.nanmin(a_sched))}
    auto_states = np.asarray(au.states)
    p_auto = A.pca(auto_states, 2)
    arr.update(auto_alpha=a_sched, auto_proj=p_auto.project(auto_states), auto_var=p_auto.explained_variance_ratio)
    walls["schedule"] = time.perf_counter() - t0

    # -------------------------------------------------------------------------------- adaptation (S-curve)
    say("S-curve")
    t0 = time.perf_counter()
    geo_s = np.geomspace(gmax * 10.0 ** (1 - opts.grid_decades), 10 * gmax, opts.scurve_points)
    g_s = np.concatenate([-geo_s[::-1], [0.0], geo_s])
    sc = A.s_curve(rm, g_s, h0=jnp.asarray(h_star), fd_step=delta, newton_steps=opts.fp_newton_steps, adam_steps=0,
                   relax_steps=int(opts.relax_steps))
    n_relaxed = sc.n_relaxed
    fit = (max(float(gstats["p10"] or 0.0), float(geo_s[0])), float(gmax))  # gradients met, within the grid
    summ = A.s_curve_summary(sc, fit_range=fit, tol=opts.fp_tol)
    ok = np.asarray(sc.q) <= opts.fp_tol
    slopes = [v for v in (summ.slope_pos, summ.slope_neg) if np.isfinite(v)]
    slope_mean = float(np.mean(slopes)) if slopes else float("nan")
    out["adaptation"] = {
        "grid_min": float(geo_s[0]), "grid_max": float(geo_s[-1]), "points_per_arm": opts.scurve_points,
        "method": SCURVE_METHOD.format(n=opts.relax_steps), "points_from_relaxation": n_relaxed,
        "converged_pos": int(np.sum(ok & (g_s > 0))), "converged_neg": int(np.sum(ok & (g_s < 0))),
        "zero_alpha_eff": _f(sc.zero_alpha_eff), "fit_range": list(fit),
        "slope_pos": _f(summ.slope_pos), "slope_neg": _f(summ.slope_neg), "slope_mean": _f(slope_mean),
        "n_fit_pos": int(summ.n_fit_pos), "n_fit_neg": int(summ.n_fit_neg),
        "rmsprop_slope": -1.0, "slope_minus_rmsprop": _f(slope_mean + 1.0),
        "rmsprop_alpha_pos": _f(summ.rmsprop_alpha_pos), "rmsprop_alpha_neg": _f(summ.rmsprop_alpha_neg),
        "alpha_eff_ratio_max_over_min_fit": _alpha_range(sc, fit, ok),
    }
    pick = np.unique(np.linspace(0, len(g_s) - 1, opts.update_curves).round().astype(int))
    g_u = np.linspace(-g_hi, g_hi, 101)
    U_s = np.asarray(A.update_function(rm, jnp.asarray(sc.points[pick]), g_u))
    arr.update(sc_grads=g_s, sc_proj=np.asarray(sc.projection), sc_alpha=np.asarray(sc.alpha_eff), sc_ok=ok,
               sc_var=sc.pca.explained_variance_ratio, sc_fit=fit, sc_summary=summ, sc_pick=g_s[pick],
               sc_update_grads=g_u, sc_updates=U_s, sc_zero_alpha=sc.zero_alpha_eff)
    walls["s_curve"] = time.perf_counter() - t0
    out["wall_seconds"] = walls
    return out, arr


SCURVE_METHOD = ("per g*, the lower-q of Newton continuation from the neighbouring point (analysis.s_curve) and "
                 "relaxation ({n} iterations of h ← F(h, g*) from the convergence fixed point h*(0)) followed by the "
                 "same Newton polish")


def _alpha_range(sc, fit, ok):
    g = np.abs(sc.grads)
    a = np.asarray(sc.alpha_eff, np.float64)
    m = ok & (g >= fit[0]) & (g <= fit[1]) & np.isfinite(a) & (a > 0)
    return _f(a[m].max() / a[m].min()) if m.sum() >= 2 else None


# --------------------------------------------------------------------------------------------------- findings


def _fmt(x, spec=".3g"):
    return "n/a" if x is None else format(x, spec)


def findings(task: str, numbers: dict) -> list[dict]:
    """Present/absent for each mechanism on one task, with the deciding number and the rule (see :data:`RULES`)."""
    out = []
    m = numbers["momentum"]
    fp = numbers["fixed_point"]
    fp_note = (f"convergence fixed point {'stable' if fp['stable'] else 'UNSTABLE'}, spectral radius "
               f"{_fmt(fp['spectral_radius'], '.3f')}, {fp['n_converged']}/{fp['n_seeds']} seeds converged")
    b = m["implied_beta"]
    present = b is not None and b >= MOMENTUM_MIN_BETA
    if b is None:
        text = "no real mode with 0 < λ < 1 and α > 0"
    else:
        text = (f"dominant momentum mode β = {b:.3f} (timescale {_fmt(m['implied_timescale'], '.1f')} steps), "
                f"α = {m['implied_alpha']:.3g}")
        horizon = numbers.get("trajectories", {}).get("steps")
        if horizon and (m["implied_timescale"] is None or m["implied_timescale"] > horizon):
            text += f" (slower than the {horizon}-step run: an integrator more than a decaying momentum)"
        if m["polyak"] is not None:
            p = m["polyak"]
            text += f" vs Polyak (α*, β*) = ({p['alpha_star']:.3g}, {p['beta_star']:.3f})"
    out.append(_finding(task, "momentum", present, b, f"{text}; {fp_note}"))

    c = numbers["clipping"]
    g90 = [c["g90_pos"], c["g90_neg"]]
    present = all(v is not None for v in g90) and c["g90_pos"] < c["max_gradient_met"] \
        and c["g90_neg"] < c["max_gradient_met"]
    text = (f"90 % of the update's saturation reached at |g| = {_fmt(c['g90_pos'])} (g > 0) / {_fmt(c['g90_neg'])} "
            f"(g < 0) vs largest |g| met {c['max_gradient_met']:.3g}; share of gradients met beyond it "
            f"{_fmt(c['share_beyond_g90'], '.2%')}")
    out.append(_finding(task, "clipping", present, max((v for v in g90 if v is not None), default=None), text))

    s = numbers["schedule"]
    po, fo = s["peak_over_initial"], s["final_over_peak"]
    warm = po is not None and po > 1 + SCHEDULE_TOLERANCE
    decay = fo is not None and fo < 1 - SCHEDULE_TOLERANCE
    kind = " and ".join(k for k, on in (("warm-up", warm), ("decay", decay)) if on) or "flat"
    text = (f"{kind}: α_eff peak/initial = {_fmt(po)} (peak at step {s['warmup_length']}), final/peak = {_fmt(fo)}")
    out.append(_finding(task, "schedule", warm or decay, po if warm or not decay else fo, text))

    a = numbers["adaptation"]
    sm = a["slope_mean"]
    present = sm is not None and sm < ADAPTATION_MAX_SLOPE
    text = (f"log-log slope of α_eff vs |g*| = {_fmt(sm)} (g* > 0: {_fmt(a['slope_pos'])}, g* < 0: "
            f"{_fmt(a['slope_neg'])}; RMSProp −1) over |g*| in [{a['fit_range'][0]:.3g}, {a['fit_range'][1]:.3g}]"
            f"; {a['converged_pos']}+{a['converged_neg']} of 2×{a['points_per_arm']} S-curve points converged")
    out.append(_finding(task, "adaptation", present, sm, text))
    return out


def _finding(task, mechanism, present, value, text):
    return {"task": task, "mechanism": mechanism, "present": bool(present), "value": _f(value),
            "statement": f"{mechanism}: {'present' if present else 'NOT found'} — {text}",
            "rule": RULES[mechanism]}
