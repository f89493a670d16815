"""One lens for every optimizer: the four mechanisms read off a recurrent map, and the surrogate built from them.

:func:`lens_from_analysis` takes any recurrent map's parts from :func:`lorex.mechanisms.analyze` (its eigenmodes at
the convergence fixed point, update function at h₀ over the gradients met, autonomous α_eff, S-curve), for the
learned optimizer and for the reference optimizers of :mod:`lorex.analysis.reference`, whose state layouts are:
heavy ball h = (v,); RMSProp h = (s, g_last); Adam h = (m, v, t) with bias correction and (m, v) without (used for its S-curve: the bias-corrected map has no fixed point
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
import optax

from lorex import analysis as A
from lorex import mechanisms as M
from lorex.distill import surrogate as S
from lorex.evaluate import jit_once

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

    a = np.asarray(jit_once(jax.vmap(run))(jnp.asarray(grads, h0.dtype)), np.float64)
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
    gates = {"momentum": S.gate_momentum(m_info)}
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
    gates["adaptation"] = S.gate_adaptation(a_info)
    if not gates["adaptation"]["passed"]:
        a_info["rejected"] = gates["adaptation"]["reason"]
        grid, ratio, rho, bias = np.ones(1), np.ones(1), fallback, False
    # the schedule's gate: σ(t)·a(r)·Σ c_i = α_eff(h_t^auto)·α_eff(h*(g*))/α_eff(h*(0)) at small gradients, so with the
    # adaptation on α_eff(h*) cancels and the normalisation that matters is the S-curve's zero point α_eff(h*(0))
    if a_info["derived"] and gates["adaptation"]["passed"] and s_info["derived"]:
        gates["schedule"] = S.gate_schedule(auto / a_info["zero_alpha_eff"], True,
                                            normalised_by="α_eff(h*(0)) (the adaptation's zero point)")
    else:
        gates["schedule"] = S.gate_schedule(sched, s_info["derived"], normalised_by="α_eff(h*)")
    if not gates["schedule"]["passed"]:
        sched = np.ones_like(auto)
        s_info["rejected"] = gates["schedule"]["reason"]
    shifted = grid * np.sqrt(max(rho, S.RHO_GRID[0]))
    sur = S.Surrogate(betas, weights, "none", float("inf"), sched, shifted, ratio, rho, bias)
    kind, thr, c_info = S.fit_clipping(lens.clip_grads, lens.clip_updates,
                                       within_step=sur.first_step_factor(lens.clip_grads))
    gates["clipping"] = S.gate_clipping(c_info)
    if not gates["clipping"]["passed"]:
        c_info["rejected"] = gates["clipping"]["reason"]
        kind, thr = "none", float("inf")
    sur = dataclasses.replace(sur, clip_kind=kind, clip_threshold=thr)
    applicable = gates["momentum"]["passed"]
    info = {"momentum": m_info, "clipping": {"kind": kind, "threshold": thr if np.isfinite(thr) else None, **c_info},
            "schedule": s_info, "adaptation": a_info, "parameters": sur.to_json(),
            "gates": {k: gates[k] for k in S.MECHANISMS}, "gate_thresholds": dict(S.GATES),
            "applicable": applicable,
            "rejected": [k for k in S.MECHANISMS if not gates[k]["passed"]],
            "not_applicable_reason": None if applicable else gates["momentum"]["reason"]}
    return sur, info


def _reference_gradients(grid, fit_range) -> np.ndarray:
    """The S-curve grid points at the 20/50/80 % quantiles of those inside the range of gradients met."""
    lo, hi = fit_range
    g = grid[(grid >= lo) & (grid <= hi)]
    g = grid if g.size == 0 else g
    return np.unique(g[np.round(np.array([0.2, 0.5, 0.8]) * (g.size - 1)).astype(int)])


def lens_from_analysis(rmap, an: M.Analysis, *, h_lin=None) -> Lens:
    """The surrogate's parts from :func:`lorex.mechanisms.analyze` of ``rmap``: the modes at the convergence fixed
    point (or at ``h_lin`` when given: :func:`lorex.analysis.momentum_modes` there), U at h₀ over the gradients met,
    the autonomous α_eff, the S-curve.  Without a valid linearization the momentum part is a single β = 0 term
    carrying the final autonomous α_eff (no momentum extracted)."""
    if h_lin is not None:
        mm = A.momentum_modes(rmap, jnp.asarray(h_lin, jnp.float32))
        lam, al = np.asarray(mm.betas), np.asarray(mm.alphas)
    elif an.momentum.modes is not None:
        lam, al = np.asarray(an.momentum.modes.betas), np.asarray(an.momentum.modes.alphas)
    else:
        lam, al = np.zeros(1, complex), np.asarray([an.schedule.autonomous_alpha[-1]], complex)
    sc = an.adaptation.scurve
    if sc is None:
        sc_g, sc_a, sc_ok, sc_zero = np.zeros(0), np.zeros(0), np.zeros(0, bool), float("nan")
    else:
        sc_g, sc_a = np.asarray(sc.grads), np.asarray(sc.alpha_eff)
        pts = np.asarray(sc.points, np.float64)
        q_rel = np.asarray(sc.q, np.float64) / np.maximum(1.0, np.sum(pts * pts, axis=1))
        sc_ok, sc_zero = q_rel <= FP_TOL, float(sc.zero_alpha_eff)
    gr = an.gradients
    return Lens(lam, al, np.asarray(an.clipping.grads), np.asarray(an.clipping.updates),
                np.asarray(an.schedule.autonomous_alpha, np.float64), sc_g, sc_a, sc_ok, sc_zero,
                rmap.step, rmap.readout, np.asarray(rmap.h0), an.fd_step, (float(gr.p10), float(gr.max)))


def lens_numbers(lens: Lens, an: M.Analysis) -> dict:
    """JSON-ready numbers of a lens: its findings and the parts the surrogate is built from."""
    lam, al = lens.eigenvalues, lens.alphas
    return {"findings": [f.to_json() for f in an.findings],
            "momentum": {"eigenvalues_re": lam.real.tolist(), "eigenvalues_im": lam.imag.tolist(),
                         "alphas_re": al.real.tolist(), "alpha_eff_sum": float(np.sum(al).real),
                         "heavy_ball": an.momentum.heavy_ball},
            "clipping": an.clipping.numbers, "schedule": an.schedule.numbers,
            "adaptation": {"trajectories": an.adaptation.numbers, "s_curve": an.adaptation.scurve_numbers},
            "alpha_eff_method": M.evidence.alpha_eff_method_text(lens.fd_step)}


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


def reference_lens(name: str, hp: dict, family, keys, horizon: int) -> tuple[Lens, dict]:
    """Record the reference optimizer on the analysis problems of ``keys``, then :func:`reference_lens_of`."""
    rmap, _, _ = reference_maps(name, hp)
    return reference_lens_of(name, hp, M.record(rmap, family, keys, horizon))


def reference_lens_of(name: str, hp: dict, ev: M.Evidence, h_lin=None) -> tuple[Lens, dict]:
    """:func:`lorex.mechanisms.analyze` of the reference optimizer on its runs ``ev``, and its lens linearized at
    ``h_lin`` (default: its end-of-run state, the per-component median of the final states): RMSProp's and Adam's
    zero-gradient fixed point has a zero second moment, where α_eff = α/ε, so it is no operating point for a
    surrogate (the mechanisms' gates report the momentum verdict there)."""
    rmap, sc_map, layout = reference_maps(name, hp)
    an = M.analyze(rmap, ev, task=name, fp_seeds=32, scurve_points=11, relax_steps=300)
    if sc_map is not rmap:  # bias-corrected Adam has no fixed point under a constant gradient: its (m, v) part
        sc = A.s_curve(sc_map, np.asarray(an.adaptation.scurve.grads), adam_steps=0)
        an = an._replace(adaptation=an.adaptation._replace(scurve=sc))
    if h_lin is None:
        final = np.asarray(ev.states[:, -1], np.float64).reshape(-1, rmap.h0.shape[0])
        final = final[np.all(np.isfinite(final), axis=1)]
        h_lin = np.median(final, axis=0) if final.size else np.zeros(rmap.h0.shape[0])
    h_lin = np.asarray(h_lin, np.float64)
    lens = lens_from_analysis(rmap, an, h_lin=h_lin)
    numbers = {"hyperparameters": dict(hp), "state_layout": layout,
               "linearized_at": "per-component median of the final states (analysis problems × coordinates)",
               "linearization_state": h_lin.tolist(), **lens_numbers(lens, an)}
    return lens, numbers


# ------------------------------------------------------------------------------------------ learned, suppressed


class CountState(NamedTuple):
    count: jax.Array


def _coordinatewise(fn, *leaves):
    """``fn`` vmapped over the coordinates of equally shaped leaves (trailing state axes kept): a tuple of leaves."""
    shape = jnp.shape(leaves[-1])
    flat = [jnp.reshape(x, (-1, *jnp.shape(x)[len(shape):])) for x in leaves]
    return tuple(jnp.reshape(y, (*shape, *y.shape[1:])) for y in jax.vmap(fn)(*flat))


def pinned_learned(rmap, states) -> optax.GradientTransformationExtraArgs:
    """The learned optimizer with its state pinned: update at step t = readout(F(states[min(t, last)], g)).

    ``states`` (T + 1, H) (the autonomous trajectory: no gradient history, so no momentum and no adaptation) or
    (H,) (one state: a memoryless update function)."""
    table = jnp.asarray(states)
    table = table[None] if table.ndim == 1 else table
    last = table.shape[0] - 1

    def init_fn(params):
        del params
        return CountState(jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        h = table[jnp.minimum(state.count, last)]

        def leaf(g):
            (u,) = _coordinatewise(lambda x: (rmap.readout(rmap.step(h, x[None].astype(h.dtype))),), g)
            return u.astype(g.dtype)

        return jax.tree_util.tree_map(leaf, updates), CountState(state.count + 1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class HiddenState(NamedTuple):
    hidden: Any  # a pytree like the parameters, each leaf (*leaf.shape, H)


def input_linearized_learned(rmap, fd_step: float | None) -> optax.GradientTransformationExtraArgs:
    """The learned optimizer with its cell linearized in the gradient: h' = F(h, 0) + B(h) g, u = R(h'), with
    B = ∂F/∂g at g = 0 (the secant at ±δ for log_sign features).  No saturation in g: no clipping."""
    def one(h, g):
        z = jnp.zeros((1,), h.dtype)
        if fd_step is None:
            f0, b = jax.jvp(lambda x: rmap.step(h, x), (z,), (jnp.ones((1,), h.dtype),))
        else:
            d = jnp.full((1,), fd_step, h.dtype)
            f0, b = rmap.step(h, z), (rmap.step(h, d) - rmap.step(h, -d)) / (2.0 * fd_step)
        h1 = f0 + b * g.astype(h.dtype)
        return h1, rmap.readout(h1)

    h0 = jnp.asarray(rmap.h0)

    def init_fn(params):
        return HiddenState(jax.tree_util.tree_map(lambda x: jnp.broadcast_to(h0, (*jnp.shape(x), h0.shape[-1])),
                                                  params))

    def leaf(h, g):
        h1, u = _coordinatewise(one, h, g)
        return h1, u.astype(g.dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        treedef = jax.tree_util.tree_structure(updates)
        out = [leaf(h, g) for h, g in zip(treedef.flatten_up_to(state.hidden), treedef.flatten_up_to(updates))]
        return treedef.unflatten([u for _, u in out]), HiddenState(treedef.unflatten([h for h, _ in out]))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
