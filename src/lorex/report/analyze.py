"""One learned optimizer on one task: :mod:`lorex.mechanisms` on its recorded runs, plus what the figures draw.

:func:`analyze_task` records the analysis runs (:func:`lorex.mechanisms.record`), runs the four mechanisms
(:func:`lorex.mechanisms.analyze`, where every decision rule, validity gate and interval is defined) and adds the
descriptive pictures: states near convergence in PCA space, update functions along the slow mode, the update
function at h₀ over a wide range, the autonomous trajectory, the S-curve.  :data:`RULES` states each rule in words.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lorex import analysis as A
from lorex import lopt, mechanisms as M, seeds
from lorex.errors import LorexError
from lorex.evaluate import problem_and_params
from lorex.tasks.base import task_name

MECHANISMS = M.MECHANISMS
RULES = M.RULES


@dataclasses.dataclass(frozen=True)
class AnalysisOptions:
    """Sizes of the analyses (the defaults are the report's; tests shrink them)."""

    trajectories: int = 16  # analysis runs (problems) recorded
    state_budget: int = 2**25  # at most this many state floats recorded (fewer runs on large tasks)
    steps: int | None = None  # horizon of the runs and of the autonomous system (default: the task's)
    fp_seeds: int = 256
    scurve_points: int = 21  # per arm
    relax_steps: int = 2000
    update_offsets: int = 7  # states along the slow mode
    update_curves: int = 7  # states along the S-curve
    clip_points: int = 101  # per sign, wide grid of the clipping figure
    plot_coordinates: int = 32

    def __post_init__(self):
        for f in ("trajectories", "state_budget", "fp_seeds", "scurve_points", "relax_steps", "update_offsets",
                  "update_curves", "clip_points", "plot_coordinates"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise LorexError(f"analysis_options.{f}", f"got {v!r}", "a positive integer")
        if self.steps is not None:
            if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps <= 0:
                raise LorexError("analysis_options.steps", f"got {self.steps!r}", "a positive integer or None")

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


class TaskAnalysis(NamedTuple):
    analysis: M.Analysis
    numbers: dict  # JSON-ready
    arrays: dict  # what the figures draw


def _f(x) -> float | None:
    if x is None:
        return None
    x = float(np.real(x))
    return x if math.isfinite(x) else None


def n_coordinates(family) -> int:
    shape = jax.eval_shape(lambda k: ravel_pytree(problem_and_params(family, k)[1])[0], jax.random.PRNGKey(0))
    return int(shape.shape[0])


def analysis_runs(family, hidden: int, opts: AnalysisOptions) -> int:
    """How many analysis runs fit the state budget (at least 2, for the intervals)."""
    T = int(opts.steps or family.steps)
    return int(max(2, min(opts.trajectories, opts.state_budget // max(1, T * n_coordinates(family) * hidden))))


def mechanisms_of(rmap, family, *, task: str, seed: int = 0, options=None,
                  progress=None) -> tuple[M.Evidence, M.Analysis, dict]:
    """Record ``rmap`` on the task's analysis problems (seed stream "analysis") and run :func:`lorex.mechanisms.analyze`
    on them: (evidence, analysis, wall seconds of each part)."""
    opts = AnalysisOptions.make(options)
    say = progress or (lambda msg: None)
    walls: dict[str, float] = {}
    T = int(opts.steps or family.steps)
    H = int(np.shape(rmap.h0)[-1])
    n = analysis_runs(family, H, opts)
    say(f"recording {n} analysis runs")
    t0 = time.perf_counter()
    ev = M.record(rmap, family, seeds.keys(seed, "analysis", n), T)
    walls["record"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    polyak = family.polyak() if hasattr(family, "polyak") else None
    an = M.analyze(rmap, ev, task=task, polyak=polyak, seed=seed, fp_seeds=opts.fp_seeds,
                   scurve_points=opts.scurve_points, relax_steps=opts.relax_steps, progress=say)
    walls["mechanisms"] = time.perf_counter() - t0
    return ev, an, walls


def analyze_map(rmap, family, *, task: str, seed: int = 0, options=None, progress=None) -> TaskAnalysis:
    """Record ``rmap`` on the task's analysis problems and run every mechanism and picture on it."""
    opts = AnalysisOptions.make(options)
    ev, an, walls = mechanisms_of(rmap, family, task=task, seed=seed, options=opts, progress=progress)
    t0 = time.perf_counter()
    numbers, arrays = _pictures(rmap, ev, an, opts, task)
    walls["pictures"] = time.perf_counter() - t0
    numbers["wall_seconds"] = walls
    return TaskAnalysis(an, numbers, arrays)


def analyze_task(params, config: lopt.LOptConfig, family, *, seed: int = 0, options=None,
                 progress=None) -> TaskAnalysis:
    """:func:`analyze_map` on the learned optimizer (``params``, ``config``)."""
    task = task_name(family)
    ta = analyze_map(lopt.recurrent_map(params, config), family, task=task, seed=seed, options=options,
                     progress=progress)
    ta.numbers["evidence"]["features"] = config.features
    return ta


def _modes(mm, T):
    lam, al = np.asarray(mm.betas), np.asarray(mm.alphas)
    real = np.abs(lam.imag) <= 1e-9 * np.maximum(1.0, np.abs(lam))
    cand = real & (lam.real > 0) & (lam.real < 1) & (al.real > 0)
    lam_r = np.clip(lam.real, 0.0, 1.0 - 1e-12)
    weight = np.where(cand, al.real * (1 - lam_r**T) / (1 - lam_r), -np.inf)
    dom = int(np.argmax(weight)) if cand.any() else None
    tau = np.asarray(mm.timescales)

    def mode(i):
        return {"index": int(i), "eigenvalue_re": float(lam[i].real), "eigenvalue_im": float(lam[i].imag),
                "abs": float(abs(lam[i])), "timescale": _f(tau[i]), "alpha_re": float(al[i].real),
                "alpha_im": float(al[i].imag)}

    out = {"eigenvalues": [mode(i) for i in range(min(8, lam.size))],
           "n_unstable_modes": int(np.sum(np.abs(lam) >= 1)), "alpha_sum": float(np.sum(al).real),
           "dominant_mode": None if dom is None else {**mode(dom), "weight": float(weight[dom])},
           "dominant_mode_rule": "real mode with 0 < λ < 1, α > 0 and the largest α(1 − λ^T)/(1 − λ) (descriptive)"}
    return out, lam, al, dom


def _pictures(rmap, ev: M.Evidence, an: M.Analysis, opts: AnalysisOptions, task: str) -> tuple[dict, dict]:
    S, T, N, H = ev.states.shape
    gr = an.gradients
    g_fin = np.asarray(ev.grads, np.float64)
    g_fin = g_fin[np.isfinite(g_fin)]
    conv = M.evidence.converged_runs(ev)
    numbers: dict[str, Any] = {
        "evidence": {"n_runs": S, "steps": T, "n_coordinates": N, "hidden": H, "converged_runs": int(conv.sum()),
                     "gradient_abs": {k: _f(v) for k, v in gr._asdict().items()},
                     "zero_gradient_met": bool(an.zero_input.met), "zero_input_ratio": _f(an.zero_input.ratio),
                     "zero_input_reason": an.zero_input.reason,
                     "alpha_eff_method": M.evidence.alpha_eff_method_text(an.fd_step),
                     "final_loss_median": _f(np.median(ev.losses[:, -1]))}}
    arr: dict[str, Any] = {"task": task, "grads": g_fin, "losses": ev.losses,
                           "met_range": (gr.p1, gr.p99, gr.max)}

    # momentum: late states in PCA space, linearization, updates along the slow mode
    mo = an.momentum
    late = max(1, T // 4)
    late_states = np.asarray(ev.states[:, -late:], np.float64)
    pool = late_states.reshape(-1, H)
    if pool.shape[0] > 20000:
        pool = pool[np.linspace(0, pool.shape[0] - 1, 20000).astype(int)]
    p_late = A.pca(pool, 2)
    C = min(N, opts.plot_coordinates)
    mom = {"gates": mo.gates, "heavy_ball": mo.heavy_ball, "polyak": mo.polyak,
           "impulse_response": None if mo.impulse is None else mo.impulse[:50].tolist()}
    arr.update(late_proj=p_late.project(late_states[0, :, :C]), late_var=p_late.explained_variance_ratio,
               final_proj=p_late.project(ev.states[0, -1, :C]), star_proj=None, eigenvalues=None, alphas=None,
               dominant=None, polyak=None if mo.polyak is None else (mo.polyak["alpha_star"], mo.polyak["beta_star"]),
               heavy_ball=None, impulse=mo.impulse, along_offsets=None)
    if mo.modes is not None:
        modes, lam, al, dom = _modes(mo.modes, T)
        mom["modes"] = modes
        h_star = np.asarray(mo.fixed_point)
        i_dir = dom if dom is not None else 0
        R = np.asarray(mo.modes.right_eigenvectors)
        direction = np.real(R[:, i_dir])
        direction = direction / (np.linalg.norm(direction) or 1.0)
        # offsets spanning the visited states along that mode (1st to 99th percentile of their coordinate on it)
        coord = (np.asarray(ev.states, np.float64).reshape(-1, H)[:: max(1, S * T * N // 50000)] - h_star) @ direction
        lo, hi = np.percentile(coord[np.isfinite(coord)], [1, 99])
        offsets = np.linspace(lo, hi, opts.update_offsets)
        g_lin = np.linspace(-gr.p99, gr.p99, 101)
        sl = A.update_along(rmap, jnp.asarray(h_star), direction, offsets, g_lin)
        mom["along_mode"] = {"mode": i_dir, "offset_range": [float(lo), float(hi)]}
        arr.update(star_proj=p_late.project(h_star), eigenvalues=lam, alphas=al, dominant=dom,
                   heavy_ball=(mo.heavy_ball["alpha"], mo.heavy_ball["beta"]), along_offsets=offsets,
                   along_grads=g_lin, along_updates=np.asarray(sl.updates), along_mode=i_dir)
    numbers["momentum"] = mom

    # clipping: the update function at h₀ over a wide range (the range met shaded in the figure)
    cl = an.clipping
    geo = np.geomspace(gr.max * 1e-4, 10 * gr.max, opts.clip_points)
    g_wide = np.concatenate([-geo[::-1], [0.0], geo])
    U_wide = np.asarray(A.update_function(rmap, jnp.asarray(ev.h0), g_wide), np.float64)
    numbers["clipping"] = {**cl.numbers, "kappa_per_run": cl.kappa_per_run.tolist(),
                           "max_positive_gradient_met": float(np.max(g_fin, initial=0.0)),
                           "max_negative_gradient_met": float(-np.min(g_fin, initial=0.0))}
    arr.update(clip_grads=g_wide, clip_updates=U_wide, clip_met_grads=cl.grads, clip_met_updates=cl.updates,
               g90=(cl.numbers["g90_pos"], cl.numbers["g90_neg"]))

    # schedule
    sc = an.schedule
    p_auto = A.pca(sc.autonomous_states, 2)
    numbers["schedule"] = sc.numbers
    arr.update(auto_alpha=sc.autonomous_alpha, auto_proj=p_auto.project(sc.autonomous_states),
               auto_var=p_auto.explained_variance_ratio, traj_alpha=sc.trajectory_alpha)

    # adaptation
    ad = an.adaptation
    numbers["adaptation"] = {"trajectories": ad.numbers, "s_curve": ad.scurve_numbers}
    arr.update(ad_steps=ad.steps, ad_slopes=ad.slopes, ad_scatter=ad.scatter, sc_numbers=ad.scurve_numbers)
    if ad.scurve is not None:
        curve = ad.scurve
        ok = np.asarray(curve.q) <= M.FP_TOL
        g_s = np.asarray(curve.grads)
        pick = np.unique(np.linspace(0, len(g_s) - 1, opts.update_curves).round().astype(int))
        g_u = np.linspace(-gr.p99, gr.p99, 101)
        U_s = np.asarray(A.update_function(rmap, jnp.asarray(curve.points[pick]), g_u))
        arr.update(sc_grads=g_s, sc_proj=np.asarray(curve.projection), sc_alpha=np.asarray(curve.alpha_eff),
                   sc_ok=ok, sc_var=curve.pca.explained_variance_ratio, sc_pick=g_s[pick], sc_update_grads=g_u,
                   sc_updates=U_s, sc_zero_alpha=curve.zero_alpha_eff)
    return numbers, arr


def findings(analysis: TaskAnalysis | M.Analysis) -> list[dict]:
    """The four findings of one task, JSON-ready (task, mechanism, verdict, value, interval_95, threshold, margin,
    reason, statement, sensitivity, rule)."""
    an = analysis.analysis if isinstance(analysis, TaskAnalysis) else analysis
    return [{**f.to_json(), "rule": RULES[f.mechanism]} for f in an.findings]
