"""Schedule: how the effective learning rate α_eff changes with the iteration when the gradients stay small.

Deciding measure, the autonomous system: h_{k+1} = F(h_k, 0) from h₀ for the task's horizon, α_eff(h_k) along
it.  Its log-amplitude A = ln(max α_eff / min α_eff) over the run is 0 for a constant α_eff; a schedule is present
iff A > ln 1.25 (α_eff changes by more than 25 %: a warm-up, a decay, or a dip then a rise, as a warm-up from a
trough).  Gates (else "not applicable"): a zero gradient is met,
and the autonomous trajectory runs among the visited states over most of the run (at >= 75 % of the steps, so
the first steps, which meet the largest gradients, may lie elsewhere, its distance to the nearest
state visited at that step is at most the median distance of the visited states to their centroid).  The
autonomous system does not depend on the analysis runs, so its interval is the range of A under 1e-6
perturbations of h₀ (floating point only); a value that moves more than 1e-3 × threshold is not reported.

Beside it, measured on the trajectories: per run, the median over coordinates of α_eff at the visited states at
each step, its log-amplitude, bootstrapped over runs.  That measure also moves when the gradients shrink
(adaptation), so it does not decide.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lorex import analysis as A
from lorex.analysis._common import map_jit
from lorex.analysis.update_function import fd_argument
from lorex.mechanisms import evidence as E
from lorex.mechanisms.finding import Finding, bootstrap_mean, finding, sensitivity_tolerance

THRESHOLD = math.log(1.25)
WITHIN_SHARE = 0.75
PERTURBATION = 1e-6


class Shape(NamedTuple):
    warmup: int  # step of the peak
    peak_over_initial: float
    final_over_peak: float
    trough: int  # step of the minimum
    log_amplitude: float  # ln(max/min)


def shape(alpha) -> Shape:
    """Peak and trough steps, ratios and log-amplitude of an α_eff curve (NaN if it is not positive)."""
    a = np.asarray(alpha, np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        return Shape(0, float("nan"), float("nan"), 0, float("nan"))
    k, j = int(np.argmax(a)), int(np.argmin(a))
    return Shape(k, float(a[k] / a[0]), float(a[-1] / a[k]), j, float(np.log(a[k] / a[j])))


class Schedule(NamedTuple):
    finding: Finding
    autonomous_alpha: np.ndarray  # (T + 1,)
    autonomous_states: np.ndarray  # (T + 1, H)
    trajectory_alpha: np.ndarray  # (S, T) median over coordinates of α_eff at the visited states
    numbers: dict


def schedule(rmap, ev: E.Evidence, *, alpha_visited: np.ndarray | None = None, seed: int = 0,
             operating: E.Operating | None = None) -> Schedule:
    """Schedule of ``rmap`` on the runs ``ev``; ``alpha_visited`` (S, T, N) α_eff at the states each gradient met and
    ``operating`` (:func:`lorex.mechanisms.evidence.operating`) are computed when None."""
    op = operating or E.operating(rmap, ev)
    zero, fd = op.zero, op.fd_step
    T = ev.steps
    # h₀ and four 1e-6 perturbations of it in one compiled call (floating-point sensitivity of the measure)
    h0 = jnp.asarray(ev.h0)
    noise = PERTURBATION * jax.random.normal(jax.random.PRNGKey(seed), (4,) + h0.shape, h0.dtype)
    states, alphas = _autonomous_batch(rmap, T, jnp.concatenate([h0[None], h0[None] + noise]), fd)
    a_auto, auto_states = alphas[0], states[0]
    sh = shape(a_auto)
    moved = np.asarray([shape(a).log_amplitude for a in alphas[1:]])
    interval = (float(np.min(np.append(moved, sh.log_amplitude))), float(np.max(np.append(moved, sh.log_amplitude))))
    shift = float(np.max(np.abs(moved - sh.log_amplitude))) if np.all(np.isfinite(moved)) else float("inf")
    tol = sensitivity_tolerance(None, THRESHOLD)
    # the autonomous trajectory among the visited states
    within = _within_visited(auto_states[1:], ev.states)
    # on trajectories
    if alpha_visited is None:
        alpha_visited = E.alpha_eff_at(rmap, ev.states_before(), fd)
    a_traj = np.median(alpha_visited, axis=2)  # (S, T)
    per_run = np.array([shape(r).log_amplitude for r in a_traj])
    t_val, t_ci = bootstrap_mean(per_run)
    traj_shape = shape(np.median(a_traj, axis=0))
    numbers = {"alpha_eff_method": E.alpha_eff_method_text(fd), "steps": T,
               "autonomous": {"warmup_length": sh.warmup, "peak_over_initial": sh.peak_over_initial,
                              "final_over_peak": sh.final_over_peak, "trough_step": sh.trough,
                              "max_over_min": float(np.exp(sh.log_amplitude)), "log_amplitude": sh.log_amplitude,
                              "initial": float(a_auto[0]), "peak": float(np.max(a_auto)), "final": float(a_auto[-1]),
                              "share_of_steps_among_visited_states": within, "perturbed_shift": shift},
               "trajectories": {"log_amplitude_mean": t_val, "interval_95": list(t_ci),
                                "per_run": per_run.tolist(), "median_curve_warmup_length": traj_shape.warmup,
                                "median_curve_peak_over_initial": traj_shape.peak_over_initial,
                                "median_curve_final_over_peak": traj_shape.final_over_peak},
               "zero_input_ratio": zero.ratio}
    reason = None
    if not zero.met:
        reason = zero.reason + "; the autonomous (zero-gradient) system is not an operating regime"
    elif within < WITHIN_SHARE:
        reason = (f"the autonomous trajectory runs among the visited states at only {within:.0%} of the steps "
                  f"(needed {WITHIN_SHARE:.0%})")
    elif shift > tol:
        reason = f"the log-amplitude moves by {shift:.3g} under 1e-6 perturbations of h₀ (tolerance {tol:.3g})"
    kind = []
    if sh.trough < sh.warmup and np.exp(sh.log_amplitude) > 1.25:
        kind.append(f"warm-up ×{np.exp(sh.log_amplitude):.3g} from step {sh.trough} to step {sh.warmup}")
    if sh.final_over_peak < 0.8:
        kind.append(f"decay to {sh.final_over_peak:.3g} of the peak")
    text = (f"autonomous α_eff: {' then '.join(kind) or 'flat'} (max/min {np.exp(sh.log_amplitude):.3g}, peak/initial "
            f"{sh.peak_over_initial:.3g}, final/peak {sh.final_over_peak:.3g}); on trajectories log-amplitude {t_val:.3g} [{t_ci[0]:.3g}, {t_ci[1]:.3g}]")
    f = finding("schedule", sh.log_amplitude, interval, THRESHOLD, "above",
                measure="log-amplitude of α_eff along the autonomous trajectory",
                interval_kind="range under 1e-6 perturbations of h₀ (the autonomous system does not depend on the "
                              "analysis runs)", text=text, reason=reason)
    return Schedule(f, a_auto, auto_states, a_traj, numbers)


def _autonomous_batch(rmap, steps: int, h0s, fd_step):
    """States (B, T + 1, H) and α_eff (B, T + 1) of h_{k+1} = F(h_k, 0) from each of the initial states ``h0s``."""
    autodiff = fd_step is None

    def run(rmap, h0s, d):
        alpha = A.alpha_eff_fn(rmap, fd_step=None if autodiff else d)
        x0 = jnp.zeros((1,), h0s.dtype)

        def one(h0):
            def body(h, _):
                h1 = rmap.step(h, x0)
                return h1, h1

            _, hs = jax.lax.scan(body, h0, None, length=steps)
            hs = jnp.concatenate([h0[None], hs])
            return hs, jax.vmap(alpha)(hs)

        return jax.vmap(one)(h0s)

    states, alphas = map_jit(run, rmap)(h0s, fd_argument(fd_step, h0s.dtype))
    return np.asarray(states), np.asarray(alphas, np.float64)


def _within_visited(auto_states, visited) -> float:
    """Share of steps t at which the autonomous state is within the cloud of states visited at step t."""
    S, T, N, H = visited.shape
    hits = 0
    for t in range(T):
        v = np.asarray(visited[:, t], np.float64).reshape(-1, H)
        v = v[np.all(np.isfinite(v), axis=1)]
        if v.shape[0] == 0:
            continue
        c = np.median(v, axis=0)
        spread = np.median(np.linalg.norm(v - c, axis=1))
        nearest = np.min(np.linalg.norm(v - auto_states[t], axis=1))
        hits += nearest <= max(spread, 1e-6 * (1.0 + np.linalg.norm(c)))
    return hits / T
