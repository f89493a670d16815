"""One lens for every optimizer: the four mechanisms read off a recurrent map, and the surrogate built from them.

:func:`learned_lens` takes the learned optimizer's parts from :func:`lorex.report.analyze.analyze_task` (its
eigenmodes at the convergence fixed point, update function at h₀, autonomous α_eff, S-curve); :func:`map_lens` runs
the same analyses (``lorex.analysis``) on any recurrent map, e.g. the reference optimizers of
:mod:`lorex.analysis.reference`, whose state layouts are: heavy ball h = (v,); RMSProp h = (s, g_last); Adam
h = (m, v, t) with bias correction and (m, v) without (used for its S-curve: the bias-corrected map has no fixed point
under a constant gradient, its step counter t grows for ever).

A reference optimizer has no zero-gradient fixed point of interest (RMSProp's and Adam's second moment decays to 0,
where α_eff = α/√ε), so it is linearized at the state it ends its runs in (the per-component median of the final
states over the analysis problems and coordinates).  Its α_eff is exact autodiff at g = 0 everywhere, as for
raw-gradient learned optimizers: at a zero second moment that is the true slope α/√ε (RMSProp) or α/ε (Adam), huge
but the one that makes the surrogate's σ(t)·a(r) reproduce α/√(r² + ε).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lorex import analysis as A
from lorex.distill import surrogate as S

FP_TOL = 1e-10


class Lens(NamedTuple):
    """What the surrogate is built from (host arrays, plus the map for the relaxation under constant gradients)."""

    eigenvalues: np.ndarray  # (H,) at the linearization point
    alphas: np.ndarray  # (H,) α_i
    clip_grads: np.ndarray  # (G,)
    clip_updates: np.ndarray  # (G,) U(h0, g)
    auto_alpha: np.ndarray  # (T + 1,) α_eff along the autonomous trajectory
    sc_grads: np.ndarray  # S-curve g*
    sc_alpha: np.ndarray
    sc_ok: np.ndarray
    sc_zero_alpha: float
    step: Callable  # the map itself (for the relaxation under constant gradients)
    readout: Callable
    h0: np.ndarray
    fd_step: float | None
    fit_range: tuple[float, float]  # gradients met: (p10, max) of |g|


def relaxation_ratio(lens: Lens, grads, steps: int) -> np.ndarray:
    """α_eff(h_k)/α_eff(h_k^auto) for h_{k+1} = F(h_k, g) from h₀, k = 0..steps, for each constant g in ``grads``:
    shape (len(grads), steps + 1); the autonomous α_eff is ``lens.auto_alpha`` (same α_eff method)."""
    step, alpha = lens.step, A.alpha_eff_fn((lens.step, lens.readout), fd_step=lens.fd_step)
    h0 = jnp.asarray(lens.h0)

    def run(g):
        x = jnp.reshape(g, (1,)).astype(h0.dtype)

        def body(h, _):
            h1 = step(h, x)
            return h1, alpha(h1)

        _, a = jax.lax.scan(body, h0, None, length=steps)
        return jnp.concatenate([alpha(h0)[None], a])

    a = np.asarray(jax.jit(jax.vmap(run))(jnp.asarray(grads, h0.dtype)), np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / np.asarray(lens.auto_alpha[: steps + 1], np.float64)[None, :]


def build_surrogate(lens: Lens, horizon: int) -> tuple[S.Surrogate, dict]:
    """The surrogate and a JSON-ready account of every part: values, fit errors, rules."""
    betas, weights, m_info = S.select_modes(lens.eigenvalues, lens.alphas, horizon)
    a_star = m_info["alpha_eff"]
    auto = np.asarray(lens.auto_alpha, np.float64)
    if np.isfinite(a_star) and a_star > 0 and np.all(np.isfinite(auto)):
        sched = auto / a_star
        s_info = {"derived": True, "normalised_by": "α_eff(h*) = Σ α_i", "alpha_eff_star": a_star}
    else:
        sched = np.ones_like(auto)
        s_info = {"derived": False, "note": "α_eff(h*) <= 0 or α_eff along the autonomous run not finite: σ ≡ 1"}
    s_info.update(initial=float(sched[0]), peak=float(np.max(sched)), final=float(sched[-1]),
                  peak_step=int(np.argmax(sched)), steps=int(len(sched) - 1))
    grid, ratio, a_info = S.adaptation_ratio(lens.sc_grads, lens.sc_alpha, lens.sc_ok, lens.sc_zero_alpha)
    slow = [abs(b) for b, k in zip(betas, m_info["modes"]) if not k["kind"].startswith("residual")]
    fallback = float(max(slow)) if slow else 0.0
    bias = False
    if a_info["derived"]:
        g_ref = _reference_gradients(grid, lens.fit_range)
        g_ref = np.concatenate([g_ref, -g_ref])
        rr = relaxation_ratio(lens, g_ref, min(horizon, len(lens.auto_alpha) - 1))
        rho, bias, r_info = S.fit_adaptation_rate(rr, g_ref, grid, ratio, fallback=fallback)
    else:
        rho, r_info = fallback, {"fitted": False, "note": "no adaptation: ρ irrelevant"}
    a_info["rate"] = {"rho": rho, **r_info}
    a_info["rule"] = ("a(√ρ·|g*|) = R(|g*|) = α_eff(h*(g*))/α_eff(h*(0)) (arms averaged, converged points, floored at "
                      "0, clamped outside the grid), evaluated at √ν̂, ν ← ρν + (1 − ρ)g² (ν̂ bias-corrected or not); "
                      "ρ and the bias correction fitted (log space) to α_eff under constant gradients ±g_ref from h0 "
                      "relative to the autonomous run, over the horizon; g_ref = the S-curve grid points at the "
                      "20/50/80 % quantiles of those in the range of gradients met")
    shifted = grid * np.sqrt(max(rho, S.RHO_GRID[0]))
    sur = S.Surrogate(betas, weights, "none", float("inf"), sched, shifted, ratio, rho, bias)
    kind, thr, c_info = S.fit_clipping(lens.clip_grads, lens.clip_updates,
                                       within_step=sur.first_step_factor(lens.clip_grads))
    sur = dataclasses.replace(sur, clip_kind=kind, clip_threshold=thr)
    info = {"momentum": m_info, "clipping": {"kind": kind, "threshold": thr if np.isfinite(thr) else None, **c_info},
            "schedule": s_info, "adaptation": a_info, "parameters": sur.to_json()}
    return sur, info


def _reference_gradients(grid, fit_range) -> np.ndarray:
    """The S-curve grid points at the 20/50/80 % quantiles of those inside the range of gradients met."""
    lo, hi = fit_range
    g = grid[(grid >= lo) & (grid <= hi)]
    g = grid if g.size == 0 else g
    return np.unique(g[np.round(np.array([0.2, 0.5, 0.8]) * (g.size - 1)).astype(int)])


def learned_lens(rmap, numbers: dict, arrays: dict) -> Lens:
    """The learned optimizer's lens from :func:`lorex.report.analyze.analyze_task` outputs (nothing recomputed but
    the relaxation, done later on demand)."""
    g = numbers["trajectories"]["gradient_abs"]
    fit = tuple(numbers["adaptation"]["fit_range"])
    return Lens(np.asarray(arrays["eigenvalues"]), np.asarray(arrays["alphas"]), np.asarray(arrays["clip_grads"]),
                np.asarray(arrays["clip_updates"]), np.asarray(arrays["auto_alpha"]), np.asarray(arrays["sc_grads"]),
                np.asarray(arrays["sc_alpha"]), np.asarray(arrays["sc_ok"]), float(arrays["sc_zero_alpha"]),
                rmap.step, rmap.readout, np.asarray(rmap.h0),
                numbers["trajectories"]["alpha_eff_fd_step"], (float(fit[0] or g["p10"]), float(fit[1] or g["max"])))


def map_lens(rmap, h_lin, horizon: int, clip_grads, sc_grads, fit_range, *, fd_step: float | None = None,
             sc_map=None) -> tuple[Lens, dict]:
    """The same analyses on any recurrent map: modes at ``h_lin``, U at h₀ over ``clip_grads``, autonomous α_eff
    for ``horizon`` steps, S-curve of ``sc_map`` (default ``rmap``) over ``sc_grads``; (lens, JSON numbers).

    S-curve points count as converged when q <= 1e-10·max(1, ‖h*‖²) (relative: a reference optimizer's state holds
    g*², far from O(1) in float32)."""
    sc_map = rmap if sc_map is None else sc_map
    h_lin = jnp.asarray(h_lin, jnp.float32)
    mm = A.momentum_modes(rmap, h_lin)
    lam, al = np.asarray(mm.betas), np.asarray(mm.alphas)
    g_clip = np.asarray(clip_grads, np.float64)
    h0 = jnp.asarray(rmap.h0, jnp.float32)
    U0 = np.asarray(A.update_function(rmap, h0, jnp.asarray(g_clip, jnp.float32)), np.float64)
    sat = A.saturation(g_clip, U0)
    au = A.autonomous(rmap, horizon, fd_step=fd_step)
    a_auto = np.asarray(au.alpha_eff, np.float64)
    sch = A.schedule_summary(a_auto)
    sc = A.s_curve(sc_map, np.asarray(sc_grads), fd_step=fd_step, adam_steps=0)
    pts = np.asarray(sc.points, np.float64)
    q_rel = np.asarray(sc.q, np.float64) / np.maximum(1.0, np.sum(pts * pts, axis=1))
    ok = q_rel <= FP_TOL
    summ = A.s_curve_summary(sc._replace(q=q_rel), fit_range=tuple(fit_range), tol=FP_TOL)
    lens = Lens(lam, al, g_clip, U0, a_auto, np.asarray(sc.grads), np.asarray(sc.alpha_eff), ok,
                float(sc.zero_alpha_eff), rmap.step, rmap.readout, np.asarray(rmap.h0), fd_step,
                tuple(float(v) for v in fit_range))
    real = np.abs(lam.imag) <= S.REAL_TOL * np.maximum(1.0, np.abs(lam))
    cand = real & (lam.real > 0) & (lam.real < 1) & (al.real > 0)
    lam_r = np.clip(lam.real, 0.0, 1.0 - 1e-12)
    weight = np.where(cand, al.real * (1 - lam_r**horizon) / (1 - lam_r), -np.inf)
    dom = int(np.argmax(weight)) if cand.any() else None
    slopes = [v for v in (summ.slope_pos, summ.slope_neg) if np.isfinite(v)]
    numbers = {
        "linearization_state": np.asarray(h_lin).tolist(),
        "momentum": {"eigenvalues_re": lam.real.tolist(), "eigenvalues_im": lam.imag.tolist(),
                     "alphas_re": al.real.tolist(), "alpha_eff_sum": float(np.sum(al).real),
                     "implied_beta": None if dom is None else float(lam[dom].real),
                     "implied_alpha": None if dom is None else float(al[dom].real)},
        "clipping": {"g90_pos": _f(sat.g90_pos), "g90_neg": _f(sat.g90_neg), "level_pos": _f(sat.level_pos),
                     "level_neg": _f(sat.level_neg), "alpha_eff_h0": _f(a_auto[0])},
        "schedule": {"warmup_length": int(sch.warmup), "initial": _f(sch.initial), "peak": _f(sch.peak),
                     "final": _f(sch.final), "peak_over_initial": _f(sch.peak_over_initial),
                     "final_over_peak": _f(sch.final_over_peak)},
        "adaptation": {"slope_pos": _f(summ.slope_pos), "slope_neg": _f(summ.slope_neg),
                       "slope_mean": _f(np.mean(slopes)) if slopes else None, "fit_range": list(lens.fit_range),
                       "converged": int(ok.sum()), "points": int(ok.size), "zero_alpha_eff": _f(sc.zero_alpha_eff)},
        "alpha_eff_method": "autodiff at g = 0" if fd_step is None else f"central difference at δ = {fd_step:.4g}",
    }
    return lens, numbers


def _f(x):
    x = float(np.real(x))
    return x if np.isfinite(x) else None


# ------------------------------------------------------------------------------------------ reference optimizers


def reference_maps(name: str, hp: dict):
    """(map, S-curve map, state layout) of a tuned optax baseline written as a recurrent map."""
    lr = float(hp["learning_rate"])
    if name == "momentum":
        m = A.reference.heavy_ball(lr, float(hp["momentum"]))
        return m, m, "h = (v,): v' = βv + g, u = −α v'"
    if name == "rmsprop":
        m = A.reference.rmsprop(lr, float(hp["decay"]), 1e-8, eps_in_sqrt=True)
        return m, m, "h = (s, g_last): s' = ρs + (1−ρ)g², u = −α g/√(s' + ε)"
    if name == "adam":
        b1 = float(hp["b1"])
        return (A.reference.adam(lr, b1, 0.999, 1e-8), A.reference.adam(lr, b1, 0.999, 1e-8, bias_correction=False),
                "h = (m, v, t): bias-corrected Adam (optax.adam, b2 = 0.999, ε = 1e-8); S-curve on (m, v) without "
                "bias correction")
    if name == "sgd":
        m = A.reference.heavy_ball(lr, 0.0)
        return m, m, "h = (v,): v' = g, u = −α v'"
    raise ValueError(name)


def reference_lens(name: str, hp: dict, family, keys, horizon: int, clip_grads, sc_grads) -> tuple[Lens, dict]:
    """Record the reference optimizer on the analysis problems, then :func:`map_lens` at its end-of-run state."""
    rmap, sc_map, layout = reference_maps(name, hp)
    tr = jax.jit(jax.vmap(lambda k: A.record_map_trajectory(rmap, family, k, horizon)))(keys)
    g = np.abs(np.asarray(tr.grads, np.float64))
    g = g[np.isfinite(g) & (g > 0)]
    final = np.asarray(tr.states[:, -1], np.float64).reshape(-1, rmap.h0.shape[0])
    final = final[np.all(np.isfinite(final), axis=1)]
    h_lin = np.median(final, axis=0) if final.size else np.zeros(rmap.h0.shape[0])
    delta = float(np.median(g)) if g.size else 1.0
    fit = (float(np.percentile(g, 10)), float(g.max())) if g.size else (1e-3, 1.0)
    lens, numbers = map_lens(rmap, h_lin, horizon, clip_grads, sc_grads, fit, sc_map=sc_map)
    numbers = {"hyperparameters": dict(hp), "state_layout": layout,
               "linearized_at": "per-component median of the final states (analysis problems × coordinates)",
               "gradient_abs_median": delta, **numbers}
    return lens, numbers


# ------------------------------------------------------------------------------------------ learned, suppressed


class CountState(NamedTuple):
    count: jax.Array


def _flat(updates):
    from jax.flatten_util import ravel_pytree

    return ravel_pytree(updates)


def pinned_learned(rmap, states) -> Any:
    """The learned optimizer with its state pinned: update at step t = readout(F(states[min(t, last)], g)).

    ``states`` (T + 1, H) (the autonomous trajectory: no gradient history, so no momentum and no adaptation) or
    (H,) (one state: a memoryless update function)."""
    import optax

    table = jnp.asarray(states)
    table = table[None] if table.ndim == 1 else table
    last = table.shape[0] - 1
    cell = jax.vmap(lambda h, g: rmap.readout(rmap.step(h, g[None].astype(h.dtype))), in_axes=(None, 0))

    def init_fn(params):
        del params
        return CountState(jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        g, unravel = _flat(updates)
        u = cell(table[jnp.minimum(state.count, last)], g)
        return unravel(u.astype(g.dtype)), CountState(state.count + 1)

    return optax.GradientTransformation(init_fn, update_fn)


class HiddenState(NamedTuple):
    hidden: jax.Array


def input_linearized_learned(rmap, fd_step: float | None) -> Any:
    """The learned optimizer with its cell linearized in the gradient: h' = F(h, 0) + B(h) g, u = R(h'), with
    B = ∂F/∂g at g = 0 (the secant at ±δ for log_sign features).  No saturation in g: no clipping."""
    import optax

    def one(h, g):
        z = jnp.zeros((1,), h.dtype)
        if fd_step is None:
            f0, b = jax.jvp(lambda x: rmap.step(h, x), (z,), (jnp.ones((1,), h.dtype),))
        else:
            d = jnp.full((1,), fd_step, h.dtype)
            f0, b = rmap.step(h, z), (rmap.step(h, d) - rmap.step(h, -d)) / (2.0 * fd_step)
        h1 = f0 + b * g.astype(h.dtype)
        return h1, rmap.readout(h1)

    cell = jax.vmap(one)
    h0 = jnp.asarray(rmap.h0)

    def init_fn(params):
        flat, _ = _flat(params)
        return HiddenState(jnp.broadcast_to(h0, (flat.size, h0.shape[0])))

    def update_fn(updates, state, params=None):
        del params
        g, unravel = _flat(updates)
        h, u = cell(state.hidden, g)
        return unravel(u.astype(g.dtype)), HiddenState(h)

    return optax.GradientTransformation(init_fn, update_fn)
