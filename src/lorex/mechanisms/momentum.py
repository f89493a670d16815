"""Momentum: the linearization at the convergence fixed point, read as one aggregate heavy ball and as modes.

Around the convergence fixed point h* (zero gradient), δh' = J δh + B g and the update is u = wᵀδh'.  Its impulse
response to a unit gradient is r_k = −wᵀJᵏB (k = 0, 1, …); a heavy ball (α, β) has r_k = αβᵏ.  The aggregate heavy
ball matches the first step and the total response:  α = r_0 = −wᵀB = Σ_i α_i,  β_eff = 1 − r_0/R with
R = Σ_k r_k = −wᵀ(I − J)⁻¹B  (exact for a heavy ball).  Per eigenmode, β_i = λ_i and α_i = −(wᵀr_i)(l_iᵀB).

Gates (else "not applicable"): some runs converged; a zero gradient is met
(:func:`lorex.mechanisms.evidence.zero_input`); the fixed point nearest the converged runs' final states is stable
and lies within their spread (95th percentile of their distances to their centroid); β_eff moves by less than its
interval under 1e-6 perturbations of the seeds.
Interval: each converged run's own fixed point (Newton from the mean of its final states), bootstrapped over runs.
Decision: present iff β_eff > 0.5 (timescale −1/ln β > 1.44 steps).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lorex import analysis as A
from lorex.analysis._common import map_jit
from lorex.mechanisms import evidence as E
from lorex.mechanisms.finding import Finding, bootstrap_mean, finding, sensitivity_tolerance

THRESHOLD = 0.5
FP_TOL = 1e-10
PERTURBATION = 1e-6


class HeavyBall(NamedTuple):
    """Aggregate heavy ball of a linearization (arrays over leading batch axes)."""

    alpha: np.ndarray  # r_0 = Σ α_i
    beta: np.ndarray  # β_eff = 1 − r_0/R
    total: np.ndarray  # R = Σ_k r_k


def aggregate_heavy_ball(jac_state, jac_input, readout_grad) -> HeavyBall:
    """(α, β_eff, R) from J (..., H, H), B (..., H), w (..., H) (float64; see the module docstring)."""
    J = np.asarray(jac_state, np.float64)
    B = np.asarray(jac_input, np.float64)
    w = np.asarray(readout_grad, np.float64)
    eye = np.eye(J.shape[-1])
    r0 = -np.einsum("...h,...h->...", w, B)
    try:
        x = np.linalg.solve(eye - J, B[..., None])[..., 0]
    except np.linalg.LinAlgError:
        x = np.full_like(B, np.nan)
    R = -np.einsum("...h,...h->...", w, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = 1.0 - r0 / R
    return HeavyBall(r0, beta, R)


def impulse_response(jac_state, jac_input, readout_grad, steps: int) -> np.ndarray:
    """r_k = −wᵀJᵏB for k = 0..steps−1 (float64)."""
    J = np.asarray(jac_state, np.float64)
    v = np.asarray(jac_input, np.float64)
    w = np.asarray(readout_grad, np.float64)
    out = np.empty(steps)
    for k in range(steps):
        out[k] = -w @ v
        v = J @ v
    return out


class Momentum(NamedTuple):
    finding: Finding
    fixed_point: np.ndarray | None  # h* (H,)
    gates: dict  # every gate's number (JSON-ready)
    modes: A.MomentumModes | None
    heavy_ball: dict | None  # alpha, beta, total, per-run values, impulse decay
    impulse: np.ndarray | None  # r_k, k < T
    polyak: dict | None


def _na(reason, gates, text="") -> Momentum:
    f = finding("momentum", None, None, THRESHOLD, "above", measure="aggregate heavy ball at the convergence "
                "fixed point", interval_kind="bootstrap over converged runs", text=text, reason=reason)
    return Momentum(f, None, gates, None, None, None, None)


def momentum(rmap, ev: E.Evidence, *, polyak: tuple[float, float] | None = None, seed: int = 0, fp_seeds: int = 256,
             fp_noise: float = 0.01, adam_steps: int = 500, newton_steps: int = 20,
             operating: E.Operating | None = None) -> Momentum:
    """Momentum of the recurrent map ``rmap`` on the runs ``ev`` (see the module docstring).

    ``polyak``: the optimal heavy ball (α*, β*) of the task, when known, to compare with; ``operating``:
    :func:`lorex.mechanisms.evidence.operating` of these runs (computed when None).
    """
    H = ev.states.shape[-1]
    dt = ev.states.dtype
    conv = E.converged_runs(ev)
    op = operating or E.operating(rmap, ev)
    gates: dict = {"runs": ev.n_runs, "converged_runs": int(conv.sum())}
    if not conv.any():
        return _na(f"no run converged (gradients never shrank {1 / E.CONVERGED_SHRINK:.0f}× over a run): there is "
                   "no convergence state to linearize around", gates)
    zero = op.zero
    gates["zero_input_ratio"] = zero.ratio
    if not zero.met:
        return _na(zero.reason + "; the zero-gradient fixed point is not an operating point", gates)
    final = np.asarray(ev.states[conv, -1], np.float64)  # (Sc, N, H)
    pts = final.reshape(-1, H)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    centroid = pts.mean(axis=0)
    dist = np.linalg.norm(pts - centroid, axis=1)
    spread = float(max(np.percentile(dist, 95), 1e-6 * (1.0 + np.linalg.norm(centroid))))
    key = jax.random.PRNGKey(seed)
    seeds = A.sample_seeds(jnp.asarray(pts, dt), fp_seeds, fp_noise, key)
    fps = A.find_fixed_points(rmap.step, seeds, tol=FP_TOL, adam_steps=adam_steps, newton_steps=newton_steps)
    gates.update(fixed_points_found=int(len(fps.q)), fixed_points_stable=int(np.sum(fps.stable)),
                 final_state_spread=spread)
    if len(fps.q) == 0:
        return _na(f"no fixed point of the zero-gradient map near the final states (none of {fp_seeds} seeds "
                   f"reached q <= {FP_TOL:g})", gates)
    d_fp = np.linalg.norm(np.asarray(fps.points, np.float64) - centroid, axis=1)
    pool = np.flatnonzero(fps.stable)
    i = int(pool[np.argmin(d_fp[pool])]) if pool.size else int(np.argmin(d_fp))
    h_star = np.asarray(fps.points[i])
    rho = float(np.max(np.abs(fps.eigenvalues[i])))
    gates.update(q=float(fps.q[i]), stable=bool(fps.stable[i]), spectral_radius=rho,
                 distance_to_final_states=float(d_fp[i]))
    if not fps.stable[i]:
        return _na(f"the fixed point nearest the final states is unstable (spectral radius {rho:.4f} >= 1)", gates)
    if d_fp[i] > spread:
        return _na(f"the nearest stable fixed point lies {d_fp[i]:.3g} from the converged runs' final states, "
                   f"outside their spread {spread:.3g}", gates)

    # per converged run: its own fixed point from the mean of its final states
    run_seeds = jnp.asarray(np.nanmean(final, axis=1), dt)
    zeros = jnp.zeros((run_seeds.shape[0], 1), dt)
    polish = map_jit(lambda step, h, x: A.newton_polish(step, h, x, newton_steps), rmap.step)
    h_r, q_r = polish(run_seeds, zeros)
    per_run = _per_run(rmap, np.asarray(h_r), np.asarray(q_r))
    beta, ci = bootstrap_mean(per_run.beta)
    alpha, a_ci = bootstrap_mean(per_run.alpha)
    noise = PERTURBATION * jax.random.normal(jax.random.fold_in(key, 1), run_seeds.shape, dt)
    h_p, q_p = polish(run_seeds + noise, zeros)
    beta_p = float(np.nanmean(_per_run(rmap, np.asarray(h_p), np.asarray(q_p)).beta))
    moved = abs(beta_p - beta)
    tol = sensitivity_tolerance(ci, THRESHOLD)
    gates.update(runs_with_fixed_point=int(np.sum(np.isfinite(per_run.beta))), perturbed_beta=beta_p,
                 moved_under_perturbation=moved, sensitivity_tolerance=tol)

    mm = A.momentum_modes(rmap, jnp.asarray(h_star))
    hb = aggregate_heavy_ball(mm.jac_state, mm.jac_input, mm.readout_grad)
    T = ev.steps
    imp = impulse_response(mm.jac_state, mm.jac_input, mm.readout_grad, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = imp[1:11] / imp[:10]
    heavy = {"alpha": float(hb.alpha), "beta": float(hb.beta), "total": float(hb.total),
             "alpha_mean_over_runs": alpha, "alpha_interval_95": list(a_ci), "beta_mean_over_runs": beta,
             "beta_interval_95": list(ci), "beta_per_run": per_run.beta.tolist(),
             "alpha_per_run": per_run.alpha.tolist(), "impulse_decay_steps_1_10": ratios.tolist(),
             "timescale": float(-1.0 / np.log(hb.beta)) if 0 < hb.beta < 1 else None}
    pk = None
    text = f"aggregate heavy ball α = Σα_i = {float(hb.alpha):.3g}, β_eff = {float(hb.beta):.3f}"
    if polyak is not None:
        a_s, b_s = (float(v) for v in polyak)
        pk = {"alpha_star": a_s, "beta_star": b_s, "alpha_over_alpha_star": float(hb.alpha) / a_s,
              "beta_minus_beta_star": float(hb.beta) - b_s,
              "distance": float(np.hypot(float(hb.beta) - b_s, np.log10(max(float(hb.alpha), 1e-30) / a_s))),
              "distance_definition": "hypot(β_eff − β*, log10(α/α*)) for the aggregate heavy ball"}
        text += f" vs Polyak's optimum (α*, β*) = ({a_s:.3g}, {b_s:.3f})"
    text += f"; fixed point stable (spectral radius {rho:.3f}), {d_fp[i]:.2g} from the final states (spread {spread:.2g})"
    reason = None
    if moved > tol:
        reason = (f"β_eff moves by {moved:.3g} under 1e-6 perturbations of the fixed-point seeds (more than its "
                  f"interval allows, {tol:.3g})")
    elif not (hb.alpha > 0 and hb.total > 0):
        reason = f"the linearized update does not descend (α = {float(hb.alpha):.3g}, total response {float(hb.total):.3g})"
    f = finding("momentum", beta, ci, THRESHOLD, "above", measure="aggregate heavy ball at the convergence fixed "
                "point", interval_kind="bootstrap over converged runs (each linearized at its own fixed point)",
                text=text, reason=reason)
    return Momentum(f, h_star, gates, mm, heavy, imp, pk)


def _per_run(rmap, h, q) -> HeavyBall:
    ok = np.isfinite(q) & (q <= FP_TOL)
    if not ok.any():
        nan = np.full(h.shape[0], np.nan)
        return HeavyBall(nan, nan, nan)
    mm = A.momentum_modes(rmap, jnp.asarray(h[ok]))
    stable = np.max(np.abs(mm.betas), axis=-1) < 1
    hb = aggregate_heavy_ball(mm.jac_state, mm.jac_input, mm.readout_grad)
    out = [np.full(h.shape[0], np.nan) for _ in range(3)]
    for o, v in zip(out, hb):
        o[np.flatnonzero(ok)] = np.where(stable, v, np.nan)
    return HeavyBall(*out)
