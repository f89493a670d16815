"""The round trip: random members of the mechanism family, read by :mod:`lorex.mechanisms` and the extraction as
black boxes, rebuilt (:func:`lorex.distill.extracted.to_family`) and compared with what they were.

A member is exposed as a recurrent map (:func:`family_maps`) with per-coordinate state h = (m_1..m_K, ν, t):
step(h, g) = (β m + (1 − β) g, ρ ν + (1 − ρ) g², t + 1), readout(h) = −η(t − 1) τ tanh(Σ c m / ((ν + ε_in)^p + ε_out)/τ)
— the optax transformation's update (:func:`lorex.distill.family.mechanism_family`, no bias correction) from the new
state.  Like bias-corrected Adam (:mod:`lorex.distill.lens`) its counter t grows for ever, so it has no fixed point:
it is linearized at its end-of-run state (per-component median) and its S-curve is taken on the map with t held at
the horizon.  Then :func:`lorex.distill.lens.reference_lens_of`'s path: analyze → lens → gated surrogate → family.

Tolerances (:data:`TOLERANCES`, fixed before looking at the results): per mechanism a parameter is "recovered" when
it comes back within them; the score when the rebuilt member's mean log loss is within ``score`` nats of the
original's on the same test problems.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lorex import mechanisms as M
from lorex import seeds
from lorex.analysis import s_curve
from lorex.distill import family as F
from lorex.distill.extracted import to_family
from lorex.distill.lens import build_surrogate, lens_from_analysis
from lorex.errors import LorexError
from lorex.lopt import RecurrentMap
from lorex.tasks.base import task_name

TOLERANCES = {
    "beta": 0.03,  # |Δβ| of each momentum mode (matched slowest to slowest)
    "weight_share": 0.05,  # |Δ| of each mode's share c_k(1 − β_k)/Σ of the first-step signal
    "schedule": 0.15,  # |Δ log η(t_j)/η(t_last)| at every knot, nats
    "tau": 0.25,  # |log τ'/τ| (clipping; only where the original clips within the signals met)
    "p": 0.05,  # |Δp| (adaptation exponent)
    "rho_timescale": 0.25,  # |log((1 − ρ')/(1 − ρ))| (adaptation rate)
    "score": 0.1,  # |Δ mean log loss| between rebuilt and original, nats
}


def family_maps(params: dict, horizon: int, *, eps_in: float = F.EPS_IN, eps_out: float = F.EPS_OUT):
    """(map with the step counter, map with t held at ``horizon``) of the family member ``params`` (all mechanisms
    on, no bias correction)."""
    beta = jax.nn.sigmoid(params["beta_logit"])
    c, p = params["c"], params["p"]
    rho = jax.nn.sigmoid(params["rho_logit"])
    tau = jnp.exp(params["log_tau"])
    K = int(beta.shape[0])

    def make(counter: bool):
        def step(h, x):
            g = x[0]
            m = beta * h[:K] + (1 - beta) * g
            nu = rho * h[K] + (1 - rho) * g * g
            return jnp.concatenate([m, nu[None], h[K + 1:] + 1.0]) if counter else jnp.concatenate([m, nu[None]])

        def readout(h):
            t = h[K + 1] - 1.0 if counter else float(horizon)
            s = jnp.sum(c * h[:K]) / ((h[K] + eps_in) ** p + eps_out)
            return -F.learning_rate(params, t, horizon) * tau * jnp.tanh(s / tau)

        return RecurrentMap(step, readout, jnp.zeros((K + 2 if counter else K + 1,), jnp.float32))

    return make(True), make(False)


def extract_member(params: dict, family, keys, horizon: int):
    """(rebuilt family parameters, mapping record, surrogate parts) of ``params`` read as a black box on the
    problems of ``keys``; rebuilt with as many modes and knots as ``params`` has."""
    modes, knots = int(params["beta_logit"].shape[0]), int(params["schedule"].shape[0])
    rmap, sc_map = family_maps(params, horizon)
    ev = M.record(rmap, family, keys, horizon)
    an = M.analyze(rmap, ev, task="round trip", fp_seeds=32, scurve_points=11, relax_steps=300)
    sc = s_curve(sc_map, np.asarray(an.adaptation.scurve.grads))
    an = an._replace(adaptation=an.adaptation._replace(scurve=sc))
    final = np.asarray(ev.states[:, -1], np.float64).reshape(-1, rmap.h0.shape[0])
    final = final[np.all(np.isfinite(final), axis=1)]
    h_lin = np.median(final, axis=0) if final.size else np.zeros(rmap.h0.shape[0])
    lens = lens_from_analysis(rmap, an, h_lin=h_lin)
    sur, parts = build_surrogate(lens, horizon)
    rebuilt, mapping = to_family(sur, horizon, modes=modes, knots=knots, fit_range=lens.fit_range)
    return rebuilt, mapping, parts


def random_member(rng: np.random.Generator, *, adaptation: bool, clip_level: float, lr: float,
                  modes: int = 2, knots: int = F.DEFAULT_KNOTS) -> dict:
    """A random member: ``modes`` momentum modes (β spread over (0.2, 0.6) … (0.85, 0.97), shares ≥ 0.2), a random
    5-knot schedule (log multipliers in [−1, 0.5]), clipping at τ = ``clip_level`` × U(0.5, 2), and with
    ``adaptation`` p ∈ U(0.25, 0.5), ρ ∈ U(0.9, 0.99) (else p = 0)."""
    lo = np.linspace(0.2, 0.85, modes)
    hi = np.linspace(0.6, 0.97, modes)
    betas = np.sort(rng.uniform(lo, hi))[::-1]
    share = rng.dirichlet(np.full(modes, 3.0)) * (1 - 0.2 * modes) + 0.2
    c = share / (1 - betas)
    p = float(rng.uniform(0.25, 0.5)) if adaptation else 0.0
    rho = float(rng.uniform(0.9, 0.99))
    return F.init_params(lr=lr, betas=list(betas), c=list(c), modes=modes, knots=knots,
                         tau=clip_level * float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))), rho=rho, p=p,
                         schedule=rng.uniform(-1.0, 0.5, knots))


def _modes(d: dict):
    b, c = np.asarray(d["betas"]), np.asarray(d["c"])
    share = c * (1 - b)
    keep = np.abs(share) > 1e-3 * np.sum(np.abs(share))
    b, share = b[keep], share[keep] / np.sum(share[keep])
    o = np.argsort(-b)
    return b[o], share[o]


def compare(original: dict, rebuilt: dict, horizon: int, *, clipping_active: bool = True,
            tol: dict = TOLERANCES) -> dict:
    """Per mechanism: the original and rebuilt values and whether they agree within ``tol``.  An inactive clipping
    (``clipping_active`` False) passes when the rebuilt τ is not smaller (up to ``tol``); an adaptation that is off
    (p = 0) passes when the rebuilt p is within ``tol`` of 0."""
    o, r = F.describe(original), F.describe(rebuilt)
    out = {}
    bo, so = _modes(o)
    br, sr = _modes(r)
    n = min(len(bo), len(br))
    same = len(bo) == len(br)
    slow = bool(n > 0 and abs(bo[0] - br[0]) <= tol["beta"])
    shares = same and bool(np.all(np.abs(so[:n] - sr[:n]) <= tol["weight_share"]))
    every = same and bool(np.all(np.abs(bo[:n] - br[:n]) <= tol["beta"]))
    out["momentum"] = {"original": {"betas": bo.tolist(), "shares": so.tolist()},
                       "rebuilt": {"betas": br.tolist(), "shares": sr.tolist()},
                       "slowest_beta": slow, "shares": shares, "every_beta": every, "passed": slow and shares and every}
    if slow and shares and not every:
        out["momentum"]["note"] = ("a fast mode came back as β ≈ 0: the extraction lumps modes carrying < "
                                   "10 % of the horizon step into one β = 0 term (surrogate.MODE_SHARE)")
    tj = np.linspace(0.0, float(max(horizon - 1, 1)), len(original["schedule"]))
    eo = np.asarray([float(F.learning_rate(original, t, horizon)) for t in tj])
    er = np.asarray([float(F.learning_rate(rebuilt, t, horizon)) for t in tj])
    lo, lr_ = np.log(eo / eo[-1]), np.log(er / er[-1])
    out["schedule"] = {"original": lo.tolist(), "rebuilt": lr_.tolist(),
                       "max_error": float(np.max(np.abs(lo - lr_))),
                       "passed": bool(np.max(np.abs(lo - lr_)) <= tol["schedule"])}
    lt = math.log(r["tau"] / o["tau"]) if r["tau"] > 0 else float("inf")
    out["clipping"] = {"original": o["tau"], "rebuilt": r["tau"], "log_ratio": lt, "active": clipping_active,
                       "passed": bool(abs(lt) <= tol["tau"] if clipping_active else lt >= -tol["tau"])}
    dp = r["p"] - o["p"]
    drt = (math.log((1 - r["rho"]) / (1 - o["rho"])) if o["p"] > 0 else 0.0)
    out["adaptation"] = {"original": {"p": o["p"], "rho": o["rho"]}, "rebuilt": {"p": r["p"], "rho": r["rho"]},
                         "passed": bool(abs(dp) <= tol["p"] and (o["p"] == 0 or abs(drt) <= tol["rho_timescale"]))}
    return out


KINDS = {  # name: (clipping active, adaptation on); momentum (2 modes) and the schedule are always on
    "momentum+schedule": (False, False),
    "momentum+schedule+clipping": (True, False),
    "momentum+schedule+adaptation": (False, True),
    "all four": (True, True),
}


def round_trip(family, *, n_members: int = 4, seed: int = 0, horizon: int | None = None, analysis_runs: int = 4,
               test_runs: int = 16, lr: float | None = None, kinds: tuple = tuple(KINDS), progress=None) -> dict:
    """Draw ``n_members`` random family members (cycling through ``kinds`` of :data:`KINDS`), extract each as a
    black box on ``analysis_runs`` problems, rebuild, and compare parameters (:func:`compare`, :data:`TOLERANCES`)
    and score (mean log loss on ``test_runs`` test problems); a JSON-ready per-member table with a summary per kind
    and mechanism."""
    from lorex.distill import bound as B

    bad = set(kinds) - set(KINDS)
    if bad:
        raise LorexError("kinds", f"got {sorted(bad)}", list(KINDS))
    T = int(horizon or family.steps)
    rng = np.random.default_rng(seed)
    keys = seeds.keys(seed, "analysis", analysis_runs)
    test_keys = seeds.keys(seed, "test", test_runs)
    lr = float(lr) if lr is not None else 0.05
    rows = []
    for i in range(n_members):
        kind = kinds[i % len(kinds)]
        clip, adapt = KINDS[kind]
        p0 = random_member(rng, adaptation=adapt, clip_level=1.0, lr=lr)
        # τ relative to the largest signal this member meets: 0.3 × U(0.5, 2) of it (clipping acts) or 3× (inactive)
        (p_act,) = B.set_clipping_threshold([p0], family, seeds.keys(0, "meta_train", 4), T, 1.0)
        factor = 0.3 * float(np.exp(p0["log_tau"])) if clip else 3.0
        p0 = {**p_act, "log_tau": p_act["log_tau"] + jnp.log(jnp.float32(factor))}
        if progress:
            progress(f"round trip: member {i + 1}/{n_members} ({kind})")
        try:
            rebuilt, mapping, parts = extract_member(p0, family, keys, T)
            err = None
        except Exception as e:  # an extraction that fails is a finding, reported per member
            rebuilt, mapping, parts, err = None, None, None, f"{type(e).__name__}: {e}"
        row = {"member": i, "kind": kind, "clipping_active": clip, "adaptation": adapt, "original": F.describe(p0)}
        if rebuilt is None:
            row.update(error=err, passed=False)
            rows.append(row)
            continue
        cmp_ = compare(p0, rebuilt, T, clipping_active=clip)
        mll = [B.per_seed_mll(c) for c in B.evaluate_members([p0, rebuilt], [F.full_mask()] * 2, family,
                                                              test_keys, T)]
        d = mll[1] - mll[0]
        score = {"original": float(np.mean(mll[0])), "rebuilt": float(np.mean(mll[1])),  # +inf: a run diverged
                 "diverged": [int(np.sum(~np.isfinite(m))) for m in mll],
                 "difference": float(np.mean(d)) if np.isfinite(d).all() else None}
        score["passed"] = score["difference"] is not None and abs(score["difference"]) <= TOLERANCES["score"]
        row.update(rebuilt=F.describe(rebuilt), comparison=cmp_, score=score, gates_rejected={k: parts["gates"][k]["reason"] for k in parts["rejected"]},
                   clipping_fit=parts["clipping"].get("chosen"),
                   approximations=mapping["approximations"],
                   passed=bool(all(v["passed"] for v in cmp_.values()) and score["passed"]))
        rows.append(row)
    summary = {}
    for kind in kinds:
        rs = [r for r in rows if r["kind"] == kind]
        summary[kind] = {k: {"passed": int(sum(r["score"]["passed"] if k == "score" else r["comparison"][k]["passed"]
                                               for r in rs if "comparison" in r)),
                             "of": len(rs)} for k in (*F.MECHANISMS, "score")}
        summary[kind]["momentum"].update({f: int(sum(r["comparison"]["momentum"][f] for r in rs if "comparison" in r))
                                          for f in ("slowest_beta", "shares")})
        summary[kind]["errors"] = int(sum("error" in r for r in rs))
    return {"task": task_name(family), "horizon": T, "seed": seed,
            "members": rows, "summary": summary, "tolerances": dict(TOLERANCES),
            "method": "random family members read as black boxes by lorex.mechanisms, extracted (gated surrogate), "
                      "mapped back into the family, compared per mechanism and by score on the same test problems"}
