"""The extracted surrogate as a member of the mechanism family, and the "extracted" rung of the ladder.

:func:`to_family` maps a (gated) :class:`~lorex.distill.surrogate.Surrogate` onto family parameters
(:mod:`lorex.distill.family`):

* momentum: the surrogate's trace modes m_i = β_i m_i + φ(g) equal EMA_i/(1 − β_i), so u ∝ Σ c_i m_i becomes
  η₀ Σ_k c_k EMA_k with η₀ = α_eff = Σ Re c_i and c_k = c_i/((1 − β_i) α_eff) (then Σ c_k (1 − β_k) = 1: the first
  step's signal is g).  Exact for real β ∈ (0, 1); β = 0 (the residual term) → β = 10⁻⁴; a complex β → its modulus
  with c = Re c (the family has no rotation); a negative β → 10⁻⁴; terms beyond K: merged into the fastest kept mode.
* schedule: the family's knots ℓ_j = log σ(t_j) at t_j = j (T − 1)/(J − 1) (the table σ(t) sampled; piecewise linear
  in log between them).
* adaptation: the table a(r), r = √ν̂, fitted by a power law a(r) ≈ A r^(−2p) (least squares in log a vs log r over the
  grid points inside the gradients met): the family's exponent p, A folded into η; ρ kept.  The family's ε are fixed
  (its a saturates only below r ≈ 10⁻⁴), and it has no bias correction of ν alone (its ``bias_correction`` also acts
  on the momentum and the bound trains without it): not mapped.
* clipping: the surrogate clips the raw gradient, the family the adapted momentum signal s_t; τ is matched at the first
  step, where s_0 = g/((1 − ρ) g²)^p: τ = s_0 at g = s (exact for p = 0 at the first step).  A hard clip → tanh.

Every approximation is listed in the mapping record (``approximations``) so the "extracted" rung's score is read with it.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from lorex.distill import family as F
from lorex.distill import surrogate as S

BETA_MIN = 1e-4


def _f32(x):
    return jnp.asarray(np.asarray(x, np.float64), jnp.float32)


def to_family(sur: S.Surrogate, horizon: int, *, modes: int = F.DEFAULT_MODES, knots: int = F.DEFAULT_KNOTS,
              fit_range=None) -> tuple[dict, dict]:
    """(family parameters, mapping record) of the surrogate ``sur`` (see the module docstring).  ``fit_range``
    (lo, hi): the |g| met, for the power-law fit of the adaptation (default: the whole grid)."""
    approx, exact = [], []
    # ---------------------------------------------------------------- momentum
    a_eff = sur.alpha_eff
    scale = a_eff if a_eff > 0 else 1.0
    terms = []
    for b, c in zip(np.asarray(sur.betas, complex), np.asarray(sur.weights, complex)):
        if abs(b.imag) > 0:
            approx.append(f"complex mode β = {b.real:.4g}{b.imag:+.4g}i → real β = |β| = {abs(b):.4g}, c = Re c "
                          "(the family has no rotating mode)")
            bb = abs(b)
        elif b.real <= 0:
            if b.real < 0:
                approx.append(f"negative β = {b.real:.4g} → β = {BETA_MIN:g} (the family's β ∈ (0, 1))")
            bb = BETA_MIN
        else:
            bb = b.real
        if bb >= 1:
            approx.append(f"β = {bb:.4g} >= 1 → β = 1 − 1e-6")
            bb = 1 - 1e-6
        terms.append([float(bb), float(c.real) / ((1.0 - float(bb)) * scale)])
    terms.sort(key=lambda t: -t[0])  # slowest first
    if len(terms) > modes:
        extra = terms[modes - 1:]
        approx.append(f"{len(terms)} momentum terms > K = {modes}: the {len(extra)} fastest merged into one mode "
                      f"(β = {extra[0][0]:.4g}, weights summed in EMA units)")
        terms = terms[:modes - 1] + [[extra[0][0], float(sum(t[1] * (1 - t[0]) for t in extra) / (1 - extra[0][0]))]]
    if a_eff <= 0:
        approx.append(f"α_eff = {a_eff:.4g} <= 0: the learning rate's sign cannot be mapped (η > 0); |weights| kept")
    # ---------------------------------------------------------------- adaptation
    grid = np.asarray(sur.adapt_grid, np.float64)
    ratio = np.asarray(sur.adapt_ratio, np.float64)
    if grid.size < 2 or np.allclose(ratio, 1.0):
        p, amp, a_err, a_note = 0.0, 1.0, 0.0, "a ≡ 1: p = 0"
        exact.append("adaptation off (p = 0)")
    else:
        sel = np.ones(grid.size, bool)
        if fit_range is not None:  # grid is in r = √ρ·|g*| units
            r_lo, r_hi = (np.sqrt(max(sur.adapt_rho, S.RHO_GRID[0])) * float(x) for x in fit_range)
            sel = (grid >= r_lo) & (grid <= r_hi)
            sel = sel if sel.sum() >= 2 else np.ones(grid.size, bool)
        sel &= ratio > 0
        lx, ly = np.log(grid[sel]), np.log(ratio[sel])
        slope, icpt = np.polyfit(lx, ly, 1) if lx.size >= 2 else (0.0, 0.0)
        p, amp = float(-slope / 2.0), float(np.exp(icpt))
        a_err = float(np.sqrt(np.mean((ly - (icpt + slope * lx)) ** 2))) if lx.size else 0.0
        a_note = f"power law a(r) ≈ {amp:.4g}·r^{slope:+.4g} over {int(sel.sum())} grid points"
        approx.append(f"adaptation table → power law (RMS log error {a_err:.3g}); the family's ε fixed (no plateau "
                      "of a at small r)")
    if sur.adapt_bias_correction:
        approx.append("bias correction of ν not mapped (the family's bias correction also acts on the momentum and "
                      "the bound trains without it)")
    rho = float(min(max(sur.adapt_rho, 1e-6), 1 - 1e-6))
    # ---------------------------------------------------------------- schedule
    sched = np.asarray(sur.schedule, np.float64)
    tk = np.linspace(0.0, float(max(horizon - 1, 1)), knots)
    ls = np.log(np.maximum(sched, 1e-30))
    ell = np.interp(tk, np.arange(ls.size), ls) if knots > 1 else ls[:1]
    rebuilt = np.interp(np.arange(min(ls.size, horizon)), tk, ell)
    s_err = float(np.sqrt(np.mean((rebuilt - ls[:rebuilt.size]) ** 2)))
    if np.allclose(sched, 1.0):
        exact.append("schedule off (knots 0)")
    else:
        approx.append(f"schedule table → {knots} log-linear knots (RMS log error {s_err:.3g})")
    # ---------------------------------------------------------------- clipping
    if sur.clip_kind == "none":
        tau, c_note = 1e30, "none: τ = 1e30 (inactive)"
        exact.append("no clipping")
    else:
        s = float(sur.clip_threshold)
        tau = s / ((1.0 - rho) * s * s) ** p if p else s
        c_note = f"surrogate {sur.clip_kind}(g) at s = {s:.4g} → family τ = {tau:.4g} (matched at the first step)"
        approx.append("clipping: the surrogate clips the raw gradient, the family the adapted momentum signal; τ "
                      "matched at the first step" + (" (hard clip → tanh)" if sur.clip_kind == "hard" else ""))
    lr = abs(scale) * amp
    params = F.init_params(lr=lr, betas=[t[0] for t in terms], c=[t[1] for t in terms], modes=modes, knots=knots,
                           tau=tau, rho=rho, p=p, schedule=ell)
    record = {"approximations": approx, "exact": exact,
              "momentum": {"alpha_eff": a_eff, "terms": [{"beta": t[0], "c": t[1]} for t in terms]},
              "adaptation": {"note": a_note, "p": p, "amplitude": amp, "rms_log_error": a_err, "rho": rho},
              "schedule": {"knots_log": ell.tolist(), "rms_log_error": s_err},
              "clipping": {"note": c_note, "tau": tau},
              "learning_rate": lr,
              "not_mapped": [a for a in approx if "not mapped" in a or "cannot be mapped" in a]}
    return params, record


def compare_parameters(extracted: dict, trained: dict, bound: dict | None = None) -> list[dict]:
    """Per natural parameter (:func:`lorex.distill.family.describe`): extracted, trained from it, and U's."""
    ex, tr = F.describe(extracted), F.describe(trained)
    bd = F.describe(bound) if bound is not None else {}
    rows = []
    for k in ex:
        xs, ts = ex[k], tr[k]
        us = bd.get(k)
        if isinstance(xs, list):
            for i, (x, t) in enumerate(zip(xs, ts)):
                rows.append({"parameter": f"{k}[{i}]", "extracted": x, "trained": t,
                             "bound": None if us is None else us[i]})
        else:
            rows.append({"parameter": k, "extracted": xs, "trained": ts, "bound": us})
    for r in rows:
        x, t = r["extracted"], r["trained"]
        r["change"] = t - x
        r["log_ratio"] = (math.log(t / x) if x > 0 and t > 0 else None)
    return rows


def extracted_rung(family, benchmark: dict, sur: S.Surrogate, parts: dict, ladder: dict, *, config=None,
                   task_config=None, seed: int = 0, n_boot: int = 2000, train: bool = True, fit_range=None,
                   surrogate_losses=None, progress=None) -> tuple[dict, dict | None]:
    """(``extracted``, ``extracted_vs_trained``): the surrogate mapped into the family (:func:`to_family`) scored on
    the benchmark's test seeds beside U (mean log loss, 95 % paired-bootstrap interval, Δ vs U), and, with ``train``,
    the family meta-trained from it (the bound's :class:`~lorex.distill.bound.FamilyConfig` and objective, one
    member, the config's first seed) with its parameters beside the extracted ones and U's.  ``surrogate_losses``:
    the surrogate's own loss curves on the same test problems, so the cost of the mapping is reported."""
    import time

    from lorex import seeds
    from lorex.distill import bound as B

    t0 = time.perf_counter()
    T = int(benchmark["steps"])
    config = config or B.default_family_config(family)
    params, mapping = to_family(sur, T, modes=config.modes, knots=config.knots, fit_range=fit_range)
    U = ladder["mechanism_bound"]
    u_params, u_mask = F.params_from_json(U["parameters"]), B._record_mask(U, "bound")
    members, masks = [params, u_params], [F.full_mask(), u_mask]
    trained = None
    if train:
        start = params
        if sur.clip_kind == "none":  # inactive but trainable, as the bound's starts
            start = B.set_clipping_threshold([params], family, seeds.keys(0, "meta_train", 8), T,
                                             config.tau_factor)[0]
        tcfg = B.family_task_config(family, T, task_config)
        tr = B.train_members(family, tcfg, [start], [F.full_mask()], [config.seeds[0]], config, val_seed=seed,
                             progress=progress)
        trained = tr["params"][0]
        members.append(trained)
        masks.append(F.full_mask())
    n_test = int(benchmark["test_seeds"])
    keys = seeds.keys(int(benchmark.get("seed", seed)), "test", n_test)
    mll = [B.per_seed_mll(c) for c in B.evaluate_members(members, masks, family, keys, T)]
    idx = np.random.default_rng(seed).integers(0, n_test, size=(n_boot, n_test))  # the ladder's resamples

    def delta(a, b):  # paired: the same resampled seeds for both
        d = B._interval(a - b, idx)
        return {"mean": d["mean"], "ci95": d["ci95"]}

    ext = {**B._interval(mll[0], idx), "minus_bound": delta(mll[0], mll[1]),
           "applicable": parts.get("applicable", True), "gates": parts.get("gates"),
           "rejected": parts.get("rejected", []), "parameters": F.params_to_json(params),
           "natural": F.describe(params), "mapping": mapping,
           "method": "the extracted surrogate (after its fit-quality gates) mapped onto the mechanism family, "
                     "evaluated on the ladder's test seeds; minus_bound = extracted − U (paired, + = worse)"}
    if surrogate_losses is not None:
        own = B.per_seed_mll(surrogate_losses)
        ext["surrogate_itself"] = B._interval(own, idx)
        ext["mapping_cost"] = delta(mll[0], own)  # + = the family member is worse than the surrogate it maps
    vs = None
    if trained is not None:
        vs = {**B._interval(mll[2], idx), "minus_bound": delta(mll[2], mll[1]),
              "minus_extracted": delta(mll[2], mll[0]),
              "meta_steps": config.steps, "member_seed": int(config.seeds[0]),
              "validation": tr["validation"][0], "start_validation": tr["start_validation"][0],
              "best_meta_step": int(tr["best_step"][0]), "parameters": F.params_to_json(trained),
              "per_parameter": compare_parameters(params, trained, u_params),
              "wall_seconds": tr["wall_seconds"],
              "method": "the family meta-trained from the extracted member with the bound's FamilyConfig and "
                        "objective (one member); per parameter: extracted, trained, and U's value"}
    ext["wall_seconds"] = time.perf_counter() - t0
    return ext, vs
