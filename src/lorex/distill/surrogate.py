"""The mechanistic surrogate: an optax optimizer assembled from the four mechanisms read off an optimizer's analysis.

For a gradient g_t of one coordinate at step t (0-based) the surrogate writes

    m_{i,t+1} = β_i m_{i,t} + φ(g_t)                  aggregated momentum, K modes (complex β_i allowed)
    ν_{t+1}   = ρ ν_t + (1 − ρ) g_t²                   running mean square of the RAW gradient, ν_0 = 0
    ν̂_{t+1}   = ν_{t+1} [/ (1 − ρ^{t+1}) if bias-corrected]
    u_t       = −σ(t) · a(√ν̂_{t+1}) · Re Σ_i c_i m_{i,t+1}

* momentum (β_i, c_i): the stable eigenmodes of the linearization at the convergence fixed point (SPEC §6), β_i = λ_i,
  c_i = α_i.  A complex-conjugate pair is folded exactly into ONE complex mode with c = 2α (the pair contributes
  α m + ᾱ m̄ = 2 Re(α m)), so the surrogate's linear response is the pair's, not an approximation of it.  Modes are
  ranked by their total step over the horizon under a unit constant gradient, |c|·|1 − β^T|/|1 − β|; the smallest
  set carrying :data:`MODE_SHARE` of the total (at most :data:`MAX_MODES`) is kept, and every other mode (the dropped
  fast ones and any unstable one) is lumped into one β = 0 term whose c makes Σ Re c_i = α_eff(h*) exactly.
* clipping φ: fitted to the update function at h₀ after the adaptation the surrogate already applies at step 0 is
  divided out, (U(h₀, g) − U(h₀, 0))/a(r₀(g)) ≈ −A·f(g/s) (r₀ = √ν̂₁ for a first gradient g) with f = tanh
  (φ(g) = s·tanh(g/s)) or f = clip(·, −1, 1) (φ(g) = clip(g, −s, s)); the straight line (φ(g) = g, no clipping)
  wins unless a nonlinearity lowers the relative RMS fit error by more than :data:`CLIP_MARGIN` and to less than
  half.  φ has slope 1 at 0: it only bends.  (Without the division RMSProp, whose first step is already sign-like
  through its adaptation, would be clipped twice.)
* schedule σ(t) = α_eff(h_t^auto)/α_eff(h*): the effective learning rate along the autonomous trajectory, normalised
  by the momentum terms' Σα_i, so that the surrogate's small-gradient learning rate at step t IS the analysed one;
  held at its last value after the horizon (``optax.scale_by_schedule``).
* adaptation a(√ρ·|g*|) = R(|g*|) = α_eff(h*(g*))/α_eff(h*(0)), interpolated log-log (both S-curve arms
  averaged, converged points only, floored at 0, clamped outside the grid).  The √ρ makes the surrogate consistent
  with the S-curve's definition: after many steps of g* a small next gradient sees ν̂ ≈ ρ g*², so its learning rate
  is R(|g*|) (for RMSProp this gives exactly α/√(ν + ε)).  The rate ρ and whether ν is bias-corrected (as in Adam)
  are fitted to how α_eff relaxes under a constant gradient from h₀, relative to the autonomous run
  (:func:`fit_adaptation_rate`), never to test problems.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

MODE_SHARE = 0.9  # kept modes carry at least this share of the total |step| over the horizon
MAX_MODES = 3
CLIP_MARGIN = 0.01  # a clipping nonlinearity must beat the straight line by this much relative RMS error
REAL_TOL = 1e-9  # |Im λ| <= REAL_TOL·max(1, |λ|): a real mode (the same rule as lorex.report.analyze)
MECHANISMS = ("momentum", "clipping", "schedule", "adaptation")
# Fit-quality gates (:func:`gate_schedule`, :func:`gate_adaptation`, :func:`gate_clipping`, :func:`gate_momentum`): a
# factor that fails its gate is dropped to its neutral value (σ ≡ 1, a ≡ 1, φ(g) = g) with the reason recorded; a
# surrogate whose momentum gate fails is marked not applicable.
GATES = {
    "schedule_max_ratio": 100.0,  # σ(t) = α_eff(h_t^auto)/α_eff(h*) must lie in [1/100, 100]: outside, h* is degenerate
    "adaptation_max_floored_fraction": 0.1,  # at most 10 % of the S-curve ratios may be floored (negative α_eff)
    "adaptation_max_rms_log_error": 0.5,  # the rate ρ's fit: RMS error of log α_eff ratio, nats
    "clipping_max_relative_error": 0.5,  # the chosen clipping fit's relative RMS error
}


@dataclasses.dataclass(frozen=True, eq=False)
class Surrogate:
    """Every parameter of the surrogate (host arrays).  See the module docstring for the update rule."""

    betas: np.ndarray  # (K,) complex β_i
    weights: np.ndarray  # (K,) complex c_i; u ∝ −Re Σ c_i m_i
    clip_kind: str  # "none" | "tanh" | "hard"
    clip_threshold: float  # s, in gradient units (inf for "none")
    schedule: np.ndarray  # (T + 1,) σ(t)
    adapt_grid: np.ndarray  # (G,) r ascending (= √ρ·|g*|)
    adapt_ratio: np.ndarray  # (G,) a(r)
    adapt_rho: float  # ρ of the running mean square
    adapt_bias_correction: bool = False  # ν̂ = ν/(1 − ρ^{t+1})

    @property
    def alpha_eff(self) -> float:
        """Σ Re c_i: the small-gradient learning rate with σ = a = 1."""
        return float(np.sum(np.real(self.weights)))

    def ablate(self, mechanism: str) -> Surrogate:
        """The surrogate with one mechanism removed (same α_eff)."""
        if mechanism == "momentum":  # plain scaled gradient: one β = 0 term with the same α_eff
            return dataclasses.replace(self, betas=np.zeros(1, complex), weights=np.array([self.alpha_eff], complex))
        if mechanism == "clipping":
            return dataclasses.replace(self, clip_kind="none", clip_threshold=float("inf"))
        if mechanism == "schedule":
            return dataclasses.replace(self, schedule=np.ones_like(self.schedule))
        if mechanism == "adaptation":
            return dataclasses.replace(self, adapt_ratio=np.ones_like(self.adapt_ratio))
        raise ValueError(f"unknown mechanism {mechanism!r} (allowed: {', '.join(MECHANISMS)})")

    def arrays(self, modes: int | None = None, grid: int | None = None) -> SurrogateArrays:
        """As a :class:`SurrogateArrays`, padded to ``modes`` momentum terms (β = c = 0) and ``grid`` adaptation
        points (the last point repeated) so surrogates can be stacked."""
        K, G = len(self.betas), len(self.adapt_grid)
        k, gg = max(K, modes or 0), max(G, grid or 0)
        b = np.concatenate([self.betas, np.zeros(k - K, complex)])
        w = np.concatenate([self.weights, np.zeros(k - K, complex)])
        lg = np.log(np.asarray(self.adapt_grid, np.float64))
        lg = np.concatenate([lg, lg[-1] + np.arange(1, gg - G + 1)])  # strictly increasing, same clamped value
        r = np.log(np.maximum(np.concatenate([self.adapt_ratio, np.full(gg - G, self.adapt_ratio[-1])]), 1e-30))
        def f32(x):
            return jnp.asarray(np.asarray(x, np.float64), jnp.float32)

        return SurrogateArrays(f32(b.real), f32(b.imag), f32(w.real), f32(w.imag),
                               jnp.asarray(CLIP_CODES[self.clip_kind], jnp.int32),
                               f32(self.clip_threshold if np.isfinite(self.clip_threshold) else 1.0),
                               f32(self.schedule), f32(lg), f32(r), f32(self.adapt_rho),
                               jnp.asarray(bool(self.adapt_bias_correction)))

    def to_json(self) -> dict:
        return {"betas_re": np.real(self.betas).tolist(), "betas_im": np.imag(self.betas).tolist(),
                "weights_re": np.real(self.weights).tolist(), "weights_im": np.imag(self.weights).tolist(),
                "alpha_eff": self.alpha_eff, "clip_kind": self.clip_kind,
                "clip_threshold": self.clip_threshold if np.isfinite(self.clip_threshold) else None,
                "schedule": np.asarray(self.schedule, float).tolist(),
                "adapt_grid": np.asarray(self.adapt_grid, float).tolist(),
                "adapt_ratio": np.asarray(self.adapt_ratio, float).tolist(), "adapt_rho": self.adapt_rho,
                "adapt_bias_correction": bool(self.adapt_bias_correction)}

    def first_step_factor(self, grads) -> np.ndarray:
        """a(√ν̂₁) for a first gradient g (ν₀ = 0): the adaptation the surrogate applies to its first update."""
        g = np.abs(np.asarray(grads, np.float64))
        r = g if self.adapt_bias_correction or self.adapt_rho >= 1 else np.sqrt(1.0 - self.adapt_rho) * g
        return np.exp(np.interp(np.log(np.maximum(r, 1e-300)), np.log(self.adapt_grid),
                                np.log(np.maximum(self.adapt_ratio, 1e-30))))


# --------------------------------------------------------------------------------------------- the optax optimizer

CLIP_CODES = {"none": 0, "tanh": 1, "hard": 2}


class SurrogateArrays(NamedTuple):
    """The surrogate's parameters as arrays (a pytree), so many surrogates of equal shapes can be vmapped."""

    betas_re: jax.Array  # (K,)
    betas_im: jax.Array
    weights_re: jax.Array  # (K,)
    weights_im: jax.Array
    clip_code: jax.Array  # () 0 none, 1 tanh, 2 hard
    clip_threshold: jax.Array  # ()
    schedule: jax.Array  # (T + 1,)
    adapt_log_grid: jax.Array  # (G,) log r, ascending
    adapt_log_ratio: jax.Array  # (G,) log a(r) (a floored at 1e-30)
    adapt_rho: jax.Array  # ()
    adapt_bias_correction: jax.Array  # () bool


class MechanismState(NamedTuple):
    """State of :func:`scale_by_mechanisms`; momentum leaves have a leading mode axis K."""

    momentum_re: Any
    momentum_im: Any
    sq_avg: Any  # ν, the running mean square of the raw gradient
    count: jax.Array  # () int32, steps taken


def clip_function(code, threshold):
    """φ(g) for clip code 0 (identity), 1 (s·tanh(g/s)) or 2 (clip(g, −s, s)); traceable in both arguments."""
    s = jnp.where(jnp.isfinite(threshold), threshold, 1.0)

    def phi(g):
        s_ = s.astype(g.dtype)
        return jnp.where(code == 1, s_ * jnp.tanh(g / s_), jnp.where(code == 2, jnp.clip(g, -s_, s_), g))

    return phi


def adaptation_function(log_grid, log_ratio):
    """a(r) by linear interpolation of log a in log r (exact for power laws), clamped outside the grid."""

    def a(r):
        return jnp.exp(jnp.interp(jnp.log(jnp.maximum(r, 1e-30)), log_grid, log_ratio))

    return a


def scale_by_mechanisms(p: SurrogateArrays) -> optax.GradientTransformationExtraArgs:
    """Clipping, aggregated momentum and learning-rate adaptation as one optax transformation (no schedule):
    u = −a(√ν) Re Σ_i c_i m_i with the rules of the module docstring.  ``p`` may hold traced values."""
    K = int(jnp.shape(p.betas_re)[0])
    phi = clip_function(p.clip_code, p.clip_threshold)
    adapt = adaptation_function(p.adapt_log_grid, p.adapt_log_ratio)

    def modes(x, v):  # (K,) vector broadcast against a leaf with K leading
        return jnp.reshape(v, (K,) + (1,) * (x.ndim - 1)).astype(x.dtype)

    def init_fn(params):
        zeros_k = jax.tree_util.tree_map(lambda q: jnp.zeros((K,) + jnp.shape(q), jnp.asarray(q).dtype), params)
        return MechanismState(zeros_k, jax.tree_util.tree_map(jnp.zeros_like, zeros_k),
                              jax.tree_util.tree_map(jnp.zeros_like, params), jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        rho_all = p.adapt_rho
        debias = jnp.where(p.adapt_bias_correction, 1.0 - rho_all ** (state.count + 1).astype(rho_all.dtype), 1.0)
        debias = jnp.maximum(debias, 1e-30)

        def leaf(g, mr, mi, nu):
            f = phi(g)[None]
            br, bi = modes(mr, p.betas_re), modes(mr, p.betas_im)
            mr1 = br * mr - bi * mi + f
            mi1 = br * mi + bi * mr
            out = jnp.sum(modes(mr1, p.weights_re) * mr1 - modes(mi1, p.weights_im) * mi1, axis=0)
            rho = p.adapt_rho.astype(g.dtype)
            nu1 = rho * nu + (1.0 - rho) * g * g
            return -adapt(jnp.sqrt(nu1 / debias.astype(g.dtype))).astype(g.dtype) * out, mr1, mi1, nu1

        treedef = jax.tree_util.tree_structure(updates)
        res = [leaf(*xs) for xs in zip(*(treedef.flatten_up_to(t) for t in
                                          (updates, state.momentum_re, state.momentum_im, state.sq_avg)))]
        u, mr, mi, nu = (treedef.unflatten([r[j] for r in res]) for j in range(4))
        return u, MechanismState(mr, mi, nu, state.count + 1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def table_schedule(values):
    """An optax schedule reading ``values[count]``, held at the last value after the table."""
    v = jnp.asarray(values)
    last = v.shape[0] - 1

    def schedule(count):
        return v[jnp.minimum(count, last)]

    return schedule


def mechanistic_optimizer(p: SurrogateArrays) -> optax.GradientTransformationExtraArgs:
    """``optax.chain(scale_by_mechanisms(p), optax.scale_by_schedule(σ))``."""
    return optax.chain(scale_by_mechanisms(p), optax.scale_by_schedule(table_schedule(p.schedule)))


def surrogate_optimizer(s: Surrogate) -> optax.GradientTransformationExtraArgs:
    """The surrogate as an optax transformation (NamedTuple states, pure init/update, works in ``optax.chain``)."""
    return mechanistic_optimizer(s.arrays())


# --------------------------------------------------------------------------------------------- fitting the parts


def select_modes(eigenvalues, alphas, horizon: int, *, share: float = MODE_SHARE, max_modes: int = MAX_MODES):
    """(betas, weights, info): the kept momentum modes (folded pairs) plus the β = 0 residual term."""
    lam = np.asarray(eigenvalues, complex)
    al = np.asarray(alphas, complex)
    total = float(np.sum(al).real)
    real = np.abs(lam.imag) <= REAL_TOL * np.maximum(1.0, np.abs(lam))
    stable = np.abs(lam) < 1.0
    cand = np.flatnonzero(stable & (real | (lam.imag > 0)))
    beta = np.where(real, lam.real, lam)[cand].astype(complex)
    c = np.where(real, al.real, 2.0 * al)[cand].astype(complex)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.abs((1.0 - beta**horizon) / (1.0 - beta))
    weight = np.abs(c) * np.where(np.isfinite(gain), gain, horizon)
    order = np.argsort(-weight, kind="stable")
    wsum = float(weight.sum())
    keep = []
    acc = 0.0
    for j in order:
        if len(keep) >= max_modes or weight[j] <= 0 or (wsum > 0 and acc >= share * wsum):
            break
        keep.append(j)
        acc += weight[j]
    betas = [beta[j] for j in keep]
    weights = [c[j] for j in keep]
    residual = total - float(np.sum(np.real(weights))) if keep else total
    modes = [{"kind": "real" if abs(b.imag) == 0 else "complex pair (folded: c = 2α)", "beta_re": float(b.real),
              "beta_im": float(b.imag), "beta_abs": float(abs(b)),
              "timescale": float(-1.0 / np.log(abs(b))) if 0 < abs(b) < 1 else 0.0,
              "weight_re": float(cc.real), "weight_im": float(cc.imag),
              "horizon_share": float(weight[j] / wsum) if wsum > 0 else None}
             for b, cc, j in zip(betas, weights, keep)]
    if abs(residual) > 1e-9 * max(1.0, abs(total)) or not keep:
        betas.append(0j)
        weights.append(complex(residual))
        modes.append({"kind": "residual (β = 0: every other mode lumped, keeps Σ Re c = α_eff)", "beta_re": 0.0,
                      "beta_im": 0.0, "beta_abs": 0.0, "timescale": 0.0, "weight_re": float(residual),
                      "weight_im": 0.0, "horizon_share": None})
    info = {"modes": modes, "alpha_eff": total, "n_modes_total": int(lam.size), "n_unstable": int(np.sum(~stable)),
            "kept_horizon_share": float(acc / wsum) if wsum > 0 else None,
            "rule": (f"stable modes ranked by |c|·|1 − β^T|/|1 − β| (T = {horizon}); the fewest carrying "
                     f"{share:.0%} of the total, at most {max_modes}; conjugate pairs folded (c = 2α); the rest "
                     "lumped into one β = 0 term so that Σ Re c_i = Σ α_i = α_eff(h*)")}
    return np.asarray(betas, complex), np.asarray(weights, complex), info


def fit_clipping(grads, updates, *, within_step=None, margin: float = CLIP_MARGIN, n_thresholds: int = 600):
    """Fit y(g) ≈ −A f(g/s) (f = tanh or hard clip) and the straight line; (kind, s, info).

    y(g) = (U(g) − U(0))/w(g): the update function at h₀ with the drift U(0) removed and divided by the
    ``within_step`` factor w(g) (the adaptation the surrogate already applies at step 0, a(√(1 − ρ)|g|); 1 if None),
    so that φ models only the saturation the other mechanisms do not.  Errors are relative RMS, ‖residual‖/‖y‖ over
    the grid.  For each threshold s on a log grid the best A is the linear least-squares one; the best s is kept.
    """
    g = np.asarray(grads, np.float64)
    U = np.asarray(updates, np.float64)
    w = np.ones_like(g) if within_step is None else np.asarray(within_step, np.float64)
    order = np.argsort(g)
    g, U, w = g[order], U[order], w[order]
    ok = np.isfinite(U)
    y = U - np.interp(0.0, g[ok], U[ok])
    ok &= np.isfinite(w) & (w > 1e-8)
    g, y = g[ok], y[ok] / w[ok]
    norm = float(np.sqrt(np.mean(y * y)))
    gabs = np.abs(g[g != 0])
    if norm == 0 or gabs.size == 0:
        return "none", float("inf"), {"errors": {"linear": None, "tanh": None, "hard": None},
                                      "note": "the update function at h0 is flat: nothing to fit"}

    def lsq(f):
        ff = float(np.sum(f * f))
        A = -float(np.sum(y * f)) / ff if ff > 0 else 0.0
        r = y + A * f
        return A, float(np.sqrt(np.mean(r * r)) / norm)

    a_lin, e_lin = lsq(g)
    fits = {"linear": {"slope": a_lin, "error": e_lin}}
    ss = np.geomspace(gabs.min() / 10, gabs.max() * 100, n_thresholds)
    for name, f in (("tanh", np.tanh), ("hard", lambda z: np.clip(z, -1.0, 1.0))):
        best = None
        for s in ss:
            A, e = lsq(f(g / s))
            if best is None or e < best[2]:
                best = (s, A, e)
        s, A, e = best
        fits[name] = {"threshold": float(s), "amplitude": float(A), "slope_at_0": float(A / s), "error": float(e)}
    nonlin = min(("tanh", "hard"), key=lambda k: fits[k]["error"])
    e_nl = fits[nonlin]["error"]
    kind = nonlin if (e_nl < e_lin - margin and e_nl < 0.5 * e_lin) else "none"
    if kind != "none" and fits[kind]["threshold"] >= gabs.max():  # saturates only beyond the grid: no clipping
        kind = "none"
    s = fits[kind]["threshold"] if kind != "none" else float("inf")
    info = {"fits": fits, "chosen": kind, "error": fits["linear" if kind == "none" else kind]["error"],
            "rule": (f"(U(h0, g) − U(h0, 0))/a(√(1 − ρ)|g|) ≈ −A f(g/s), f = tanh or clip(·, −1, 1), best s on a log "
                     "grid (the division removes the saturation the adaptation already gives at step 0); the straight "
                     f"line wins unless a nonlinearity lowers the relative RMS error by > {margin:g} and to less than "
                     "half, and saturates inside the grid")}
    return kind, float(s), info


def adaptation_ratio(sc_grads, sc_alpha, sc_ok, zero_alpha):
    """(grid, ratio, info): α_eff(h*(g*))/α_eff(h*(0)) on the |g*| grid, both arms averaged, floored at 0."""
    g = np.asarray(sc_grads, np.float64)
    a = np.asarray(sc_alpha, np.float64)
    ok = np.asarray(sc_ok, bool) & np.isfinite(a) & (g != 0)
    a0 = float(zero_alpha) if zero_alpha is not None else float("nan")
    if not (np.isfinite(a0) and a0 > 0) or ok.sum() < 2:
        return np.ones(1), np.ones(1), {"derived": False,
                                        "note": "no usable S-curve (α_eff(h*(0)) <= 0 or < 2 converged points): a ≡ 1"}
    mags = np.unique(np.abs(g[ok]))
    ratio = np.array([np.mean(a[ok & np.isclose(np.abs(g), m, rtol=1e-9, atol=0)]) for m in mags]) / a0
    n_neg = int(np.sum(ratio < 0))
    ratio = np.maximum(ratio, 0.0)
    return mags, ratio, {"derived": True, "zero_alpha_eff": a0, "n_points": int(mags.size), "n_floored": n_neg,
                         "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max())}


RHO_GRID = np.concatenate([[0.01], 1.0 - np.geomspace(0.99, 1e-4, 300)])


def fit_adaptation_rate(relax_ratio, g_ref, grid, ratio, *, fallback: float = 0.0):
    """(ρ, bias_correction, info) fitted to ``relax_ratio`` (runs, K + 1): the analysed optimizer's α_eff after k
    steps of a constant gradient g_ref[run] (one per row; e.g. ± a few magnitudes) from h₀, divided by α_eff after k
    autonomous steps.

    The surrogate predicts R(√(ν̂_k/ρ)) for it (R the S-curve ratio on ``grid``/``ratio``, |g*| units): plain,
    ν̂_k/ρ = (1 − ρ^k) g²; bias-corrected, ν̂_k/ρ = (1 − ρ^k)/(1 − ρ^{k+1}) g².  Both models are fitted over
    :data:`RHO_GRID` by least squares in log space; the better one is kept (the plain one on a tie).  Returns
    ``fallback`` (plain) when the target moves by less than 5 %.
    """
    rr = np.asarray(relax_ratio, np.float64)
    rr = np.where(np.isfinite(rr) & (rr > 0), rr, np.nan)
    K = rr.shape[-1] - 1
    target = np.log(rr)
    spread = float(np.nanmax(np.abs(target))) if np.isfinite(target).any() else 0.0
    g_ref = np.abs(np.broadcast_to(np.asarray(g_ref, np.float64), rr.shape[:1]))
    if spread < np.log(1.05):
        return float(fallback), False, {"fitted": False, "g_ref": g_ref.tolist(), "note": "α_eff moves < 5 % under a "
                                        "constant gradient: rate irrelevant, ρ = the slowest kept momentum |β|"}
    k = np.arange(K + 1)
    lg, lr = np.log(np.asarray(grid)), np.log(np.maximum(np.asarray(ratio, np.float64), 1e-300))
    fits = {}

    def error(rho, bias):
        x = 1.0 - rho**k
        if bias:
            x = x / (1.0 - rho ** (k + 1))
        model = np.interp(np.log(np.maximum(np.sqrt(x)[None, :] * g_ref[:, None], 1e-300)), lg, lr)
        return float(np.nanmean((target[:, 1:] - model[:, 1:]) ** 2))  # k = 0: 1 = 1 by construction

    for bias in (False, True):
        errs = np.array([error(r, bias) for r in RHO_GRID])
        i = int(np.argmin(errs))
        lo, hi = RHO_GRID[max(i - 1, 0)], RHO_GRID[min(i + 1, len(RHO_GRID) - 1)]
        fine = np.linspace(lo, hi, 101)  # refine between the grid neighbours
        ferrs = np.array([error(r, bias) for r in fine])
        j = int(np.argmin(ferrs))
        best = (float(fine[j]), float(ferrs[j])) if ferrs[j] <= errs[i] else (float(RHO_GRID[i]), float(errs[i]))
        fits["bias_corrected" if bias else "plain"] = {"rho": best[0], "rms_log_error": float(np.sqrt(best[1]))}
    bias = fits["bias_corrected"]["rms_log_error"] < fits["plain"]["rms_log_error"]
    f = fits["bias_corrected" if bias else "plain"]
    rho = f["rho"]
    return rho, bool(bias), {"fitted": True, "g_ref": sorted(set(g_ref.tolist())), "steps": int(K), "fits": fits,
                             "bias_correction": bool(bias), "rms_log_error": f["rms_log_error"],
                             "timescale": float(-1.0 / np.log(rho)) if 0 < rho < 1 else 0.0}


# --------------------------------------------------------------------------------------------- fit-quality gates


def _gate(passed: bool, criterion: str, value, threshold, neutral: str, reason: str | None = None) -> dict:
    return {"passed": bool(passed), "criterion": criterion, "value": None if value is None else float(value),
            "threshold": threshold, "neutral": neutral, "reason": None if passed else reason}


def gate_schedule(schedule, derived: bool, *, max_ratio: float = GATES["schedule_max_ratio"],
                  normalised_by: str = "α_eff(h*)") -> dict:
    """The autonomous α_eff relative to the point the surrogate normalises it by (``schedule``: α_eff(h_t^auto)/α_eff
    at that point) must be finite and within [1/max_ratio, max_ratio] at every step; otherwise the normalisation point
    is degenerate (on Rosenbrock σ(0) ≈ 4508 said h* sat where α_eff is ~0, not that the rate fell 4508×)."""
    crit = f"α_eff(h_t^auto)/{normalised_by} finite and in [1/{max_ratio:g}, {max_ratio:g}] at every step"
    if not derived:
        return _gate(True, crit, None, max_ratio, "σ ≡ 1", None) | {"note": "not derived: σ ≡ 1 already"}
    s = np.asarray(schedule, np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        return _gate(False, crit, None, max_ratio, "σ ≡ 1", "σ(t) is not finite or not positive at some step "
                     "(α_eff(h*) <= 0 or the autonomous α_eff changes sign)")
    worst = float(np.max(np.abs(np.log(s))))
    return _gate(worst <= np.log(max_ratio), crit, float(np.exp(worst)), max_ratio, "σ ≡ 1",
                 f"max(σ, 1/σ) = {np.exp(worst):.4g} > {max_ratio:g}: the normalisation point h* is degenerate")


def gate_adaptation(a_info: dict, *, max_floored: float = GATES["adaptation_max_floored_fraction"],
                    max_error: float = GATES["adaptation_max_rms_log_error"]) -> dict:
    """The S-curve ratio must be floored (α_eff(h*(g*)) <= 0) at no more than ``max_floored`` of its points, and
    the rate ρ's fit (where fitted) must have RMS log error <= ``max_error`` nats."""
    crit = (f"floored S-curve points <= {max_floored:.0%} and the rate fit's RMS log error <= {max_error:g} nats")
    thr = {"max_floored_fraction": max_floored, "max_rms_log_error": max_error}
    if not a_info.get("derived"):
        return _gate(True, crit, None, thr, "a ≡ 1", None) | {"note": "not derived: a ≡ 1 already"}
    frac = a_info["n_floored"] / max(1, a_info["n_points"])
    if frac > max_floored:
        return _gate(False, crit, frac, thr, "a ≡ 1", f"the S-curve ratio is floored to 0 at {a_info['n_floored']} "
                     f"of {a_info['n_points']} points ({frac:.0%} > {max_floored:.0%})")
    err = a_info.get("rate", {}).get("rms_log_error")
    if err is not None and not (np.isfinite(err) and err <= max_error):
        return _gate(False, crit, err, thr, "a ≡ 1", f"the rate fit's RMS log error {err:.4g} > {max_error:g} nats")
    return _gate(True, crit, err, thr, "a ≡ 1")


def gate_clipping(c_info: dict, *, max_error: float = GATES["clipping_max_relative_error"]) -> dict:
    """The chosen clipping fit (tanh, hard, or the straight line) must have relative RMS error <= ``max_error``."""
    crit = f"the chosen fit's relative RMS error <= {max_error:g}"
    err = c_info.get("error")
    if err is None:
        return _gate(True, crit, None, max_error, "φ(g) = g") | {"note": "nothing fitted: φ(g) = g already"}
    return _gate(bool(np.isfinite(err) and err <= max_error), crit, err, max_error, "φ(g) = g",
                 f"the {c_info.get('chosen')} fit's relative RMS error {err:.4g} > {max_error:g}")


def gate_momentum(m_info: dict) -> dict:
    """α_eff(h*) = Σ Re c_i must be finite and positive; otherwise the surrogate descends nowhere: not applicable."""
    a = m_info.get("alpha_eff")
    ok = a is not None and bool(np.isfinite(a) and a > 0)
    return _gate(ok, "α_eff(h*) = Σ α_i finite and > 0", a, 0.0, "none (the surrogate is not applicable)",
                 f"α_eff(h*) = {a} is not positive: the surrogate would not descend")
