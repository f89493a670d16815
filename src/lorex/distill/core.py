"""``distill``: build the surrogate, measure how much of the learned optimizer's advantage it explains, ablate it,
and put the reference optimizers through the same lens."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from pathlib import Path

import jax
import numpy as np

from lorex import analysis as A
from lorex import io, lopt, mechanisms as M, seeds
from lorex import tasks as tasks_mod
from lorex.baselines import DEFAULT_OPTIMIZERS, baseline_from_json
from lorex.benchmark import run_benchmark
from lorex.distill import lens as L
from lorex.distill import surrogate as S
from lorex.errors import LorexError
from lorex.evaluate import evaluate as _evaluate
from lorex.evaluate import jit_once
from lorex.evaluate import mean_log_loss
from lorex.evaluate import run as _run
from lorex.progress import say
from lorex.tasks.base import task_name

N_BOOT = 2000
LADDER_KEYS = ("learned", "mechanism_bound", "best_baseline", "gap_closed", "leave_one_out")
REFERENCES = ("momentum", "rmsprop", "adam")
ABLATION_TEXT = {
    "momentum": "plain scaled gradient (one β = 0 term) with the same α_eff",
    "clipping": "φ(g) = g",
    "schedule": "σ(t) ≡ 1",
    "adaptation": "a ≡ 1",
}
LEARNED_ABLATIONS = {
    "start_at_fixed_point": ("schedule", "h₀ replaced by the convergence fixed point h* (no warm-up/decay transient)"),
    "pinned_autonomous": ("momentum + adaptation", "state pinned to the autonomous trajectory h_t = F^t(h₀, 0): "
                          "u_t = R(F(h_t, g_t)); keeps the schedule and the update function's clipping"),
    "pinned_fixed_point": ("momentum + schedule + adaptation", "state pinned at h*: u_t = R(F(h*, g_t)), a "
                           "memoryless update function (only its clipping is left)"),
    "input_linearized": ("clipping (and the g-nonlinearity behind adaptation)", "cell linearized in g: "
                         "h' = F(h, 0) + (∂F/∂g) g"),
}


def _say(progress, msg):
    if progress:
        say(f"[distill] {msg}")


def _load(optimizer):
    """(params, config, metadata, label) from a shipped name, a run folder, or a (params, config) pair."""
    if isinstance(optimizer, tuple) and len(optimizer) == 2:
        params, config = optimizer
        return params, config, {}, "given (params, config)"
    if not isinstance(optimizer, (str, Path)):
        raise LorexError("optimizer", f"got {type(optimizer).__name__}",
                         "a shipped name, a run folder or a (params, LOptConfig) pair")
    params, config, meta = lopt.load_params(optimizer)
    return params, config, meta, str(optimizer)


def _family(family, meta):
    if family is None:
        task = meta.get("task")
        if not isinstance(task, str):
            raise LorexError("task", "not given and the optimizer's metadata names none", tasks_mod.names())
        return tasks_mod.make(task)
    if isinstance(family, str):
        return tasks_mod.make(family)
    return family


def per_seed_mll(losses) -> np.ndarray:
    """Per-run mean log loss (+inf for a run with any non-finite loss)."""
    losses = np.asarray(losses, np.float64)
    fin = np.isfinite(losses).all(axis=1)
    m = np.asarray(mean_log_loss(np.where(fin[:, None], losses, 1.0)), np.float64)
    return np.where(fin, m, np.inf)


def _m_se(x):
    x = np.asarray(x, np.float64)
    if not np.isfinite(x).all():
        return None, None
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0


def explained_fraction(baseline_mll, surrogate_mll, learned_mll, *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """(B − S)/(B − L) on the mean log loss over seeds, with its paired bootstrap standard error.

    Each argument: per-seed mean log loss on the SAME test seeds (n,).  The bootstrap resamples seeds (with
    replacement) jointly for the three, ``n_boot`` times (fixed RNG ``seed``); s.e. = std of the replicates, and the
    2.5/97.5 % percentiles give a 95 % interval.  None where a mean is not finite (a diverged run) or B = L.
    """
    b, s, ll = (np.asarray(x, np.float64) for x in (baseline_mll, surrogate_mll, learned_mll))
    n = b.shape[0]
    out = {"value": None, "se": None, "ci95": None, "method": f"paired bootstrap over the {n} test seeds "
           f"({n_boot} resamples)", "n_seeds": int(n), "baseline_minus_learned": None,
           "baseline_minus_learned_se": None}
    if not all(np.isfinite(x).all() for x in (b, s, ll)):
        out["note"] = "a run diverged: the fraction is undefined"
        return out
    gap = b - ll
    out["baseline_minus_learned"] = float(gap.mean())
    out["baseline_minus_learned_se"] = float(gap.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    den = gap.mean()
    if den == 0:
        out["note"] = "learned = baseline: the fraction is undefined"
        return out
    out["value"] = float((b - s).mean() / den)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = (b[idx] - s[idx]).mean(1) / gap[idx].mean(1)
    reps = reps[np.isfinite(reps)]
    if reps.size > 1:
        out["se"] = float(reps.std(ddof=1))
        out["ci95"] = [float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5))]
    return out


def _row(name, mll, curves, reference=None):
    m, se = _m_se(mll)
    row = {"name": name, "mean_log_loss": m, "se": se, "diverged": int(np.sum(~np.isfinite(mll)))}
    if reference is not None:
        d = np.asarray(mll) - np.asarray(reference)
        row["delta"], row["delta_se"] = _m_se(d)
    c = np.asarray(curves, np.float64)
    c = np.where(np.isfinite(c), c, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all runs diverged at some step: NaN there
        row["curve_mean"] = np.nanmean(c, axis=0).tolist()
    return row


def distill(optimizer, family=None, *, seed: int = 0, test_seeds: int = 128, tuning_seeds: int | None = None,
            benchmark: dict | None = None, analysis: M.Analysis | None = None, progress: bool = True,
            steps: int | None = None, analysis_runs: int = 8, baselines=DEFAULT_OPTIMIZERS,
            n_boot: int = N_BOOT, references: bool = True, bound: bool = False, family_config=None,
            surrogate: bool = True, family_trained: dict | None = None, round_trip: int = 0,
            benchmark_runs: dict | None = None) -> dict:
    """Distil one learned optimizer into its mechanisms on one task; a JSON-ready dict.

    ``optimizer``: shipped name, run folder, or (params, config).  ``family``: a task family or name (default: the
    optimizer's own task).  ``benchmark``: a :func:`lorex.benchmark.run_benchmark` result on this task (tuned
    baselines; its test seeds and steps are used), computed when None.  ``analysis``: the
    :func:`lorex.mechanisms.analyze` result of this optimizer on this task, computed when None (on
    ``analysis_runs`` problems of the analysis stream).  Every surrogate parameter comes from the analysis; none is tuned on test seeds.
    ``references``: also put tuned Momentum, RMSProp and Adam through the same extraction and rebuild them (a check
    of the extraction on optimizers whose mechanisms are known; it costs more than the rest together).
    ``bound``: also meta-train the mechanism family (:mod:`lorex.distill.bound`, ``family_config`` a
    :class:`~lorex.distill.bound.FamilyConfig`, default the task's) and add the ladder: ``learned``,
    ``mechanism_bound``, ``best_baseline`` (mean log loss with 95 % interval each), ``gap_closed``,
    ``leave_one_out``, and ``mechanism_family`` (how it was trained); with ``family_trained`` (a
    :func:`lorex.distill.bound.load_family` record, e.g. the shipped one) its members are only evaluated.
    ``surrogate=False`` skips the extracted surrogate (analysis, ablations, references): the result then holds the
    benchmark's task data and the ladder only.  With the ladder and the surrogate, ``extracted`` (the surrogate as a
    family member) and, unless ``family_trained`` is given (evaluation only), ``extracted_vs_trained`` (the family
    meta-trained from it) are added.  ``round_trip`` > 0: that many random family members through the extraction
    and back (:func:`lorex.distill.roundtrip.round_trip`), as ``round_trip``.  ``benchmark_runs``: the given
    benchmark's test runs ({optimizer: :class:`lorex.benchmark.TestRuns`}, from ``run_benchmark(...,
    return_runs=True)``; its ``"learned"`` entry is this optimizer): the learned optimizer and the tuned baselines
    are then not run again.
    """
    t_start = time.perf_counter()
    walls = {}
    params, config, meta, label = _load(optimizer)
    family = _family(family, meta)
    task = task_name(family)
    tx_learned = lopt.learned_optimizer(params, config)
    t0 = time.perf_counter()
    runs = dict(benchmark_runs or {})
    if benchmark is None:
        _say(progress, f"{task}: benchmark ({test_seeds} test seeds)")
        benchmark, runs = run_benchmark(family, seed=seed, tuning_seeds=tuning_seeds, test_seeds=test_seeds,
                                        optimizers=tuple(baselines), learned={"learned": tx_learned}, steps=steps,
                                        progress=progress, return_runs=True)
    walls["benchmark"] = time.perf_counter() - t0
    T = int(benchmark["steps"])
    n_test = int(benchmark["test_seeds"])
    rows = benchmark["optimizers"]
    base = {k: v for k, v in rows.items() if v["kind"] == "baseline" and v["mean_log_loss"]["mean"] is not None}
    if not base:
        raise LorexError("benchmark", "holds no tuned baseline", list(DEFAULT_OPTIMIZERS))
    best = min(base, key=lambda k: base[k]["mean_log_loss"]["mean"])

    ladder = {}
    if bound:
        from lorex.distill.bound import mechanism_bound

        t0 = time.perf_counter()
        _say(progress, f"{task}: mechanism bound (meta-training the mechanism family)")
        ladder = mechanism_bound(family, benchmark, tx_learned, config=family_config, seed=seed, n_boot=n_boot,
                                 progress=lambda m: _say(progress, m), trained=family_trained, runs=runs)
        ladder = {**{k: ladder.pop(k) for k in LADDER_KEYS}, "mechanism_family": ladder}
        walls["mechanism_bound"] = time.perf_counter() - t0
    if not surrogate:
        if not bound:
            raise LorexError("surrogate", "False with bound False leaves nothing to compute", ["bound=True"])
        walls["total"] = time.perf_counter() - t_start
        return io.json_safe({"task": task, "optimizer": {"source": label, "lopt_config": dataclasses.asdict(config)},
                             "steps": T, "seed": seed, "test_seeds": n_test,
                             "tuning_seeds": benchmark.get("tuning_seeds"), **ladder, "wall_seconds": walls})

    t0 = time.perf_counter()
    rm = lopt.recurrent_map(params, config)
    if analysis is None:
        _say(progress, f"{task}: analysis ({analysis_runs} runs)")
        ev = M.record(rm, family, seeds.keys(seed, "analysis", analysis_runs), T)
        analysis = M.analyze(rm, ev, task=task, polyak=family.polyak() if hasattr(family, "polyak") else None,
                             seed=seed, progress=lambda m: _say(progress, f"{task}: analysis: {m}"))
    walls["analysis"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _say(progress, f"{task}: building the surrogate")
    lens = L.lens_from_analysis(rm, analysis)
    sur, parts = L.build_surrogate(lens, T)
    walls["surrogate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _say(progress, f"{task}: evaluating learned, surrogate, ablations on {n_test} test seeds")
    keys = seeds.keys(seed, "test", n_test)

    def run(tx, name=None):
        """(per-seed mean log loss, curves) of ``tx``: the benchmark's runs of ``name`` where it has them."""
        losses = np.asarray(runs[name].losses if name in runs else _evaluate(tx, family, keys, T), np.float64)
        return per_seed_mll(losses), losses

    bh = base[best]["hyperparameters"]
    mll_b, cur_b = run(baseline_from_json(best, bh), best)
    # the learned optimizer from h* (no schedule transient) and, unless the benchmark ran it, from h0 in one
    # compiled call, and pinned to the autonomous trajectory or to h* in another
    # h*: the convergence fixed point where the mechanisms found a valid one, else the autonomous state at the end
    auto_states = jax.numpy.asarray(A.autonomous(rm, T).states)
    fixed = analysis.momentum.fixed_point
    h_star = jax.numpy.asarray(fixed if fixed is not None else auto_states[-1])
    starts = [h_star] if "learned" in runs else [rm.h0, h_star]
    from_starts = evaluate_batched(lambda h: lopt.learned_optimizer({**params, "h0": h}, config),
                                   jax.numpy.stack(starts), family, keys, T)
    mll_l, cur_l = run(tx_learned, "learned") if "learned" in runs else from_starts[0]
    mll_h, cur_h = from_starts[-1]
    pinned = evaluate_batched(lambda table: L.pinned_learned(rm, table),
                              jax.numpy.stack([auto_states, jax.numpy.broadcast_to(h_star, auto_states.shape)]),
                              family, keys, T)
    learned_runs = {"start_at_fixed_point": (mll_h, cur_h), "pinned_autonomous": pinned[0],
                    "pinned_fixed_point": pinned[1],
                    "input_linearized": run(L.input_linearized_learned(rm, lens.fd_step))}
    # every surrogate (full, ablated, and the references' own) in ONE compiled, vmapped call
    variants = [sur] + [sur.ablate(m) for m in S.MECHANISMS]
    t1 = time.perf_counter()
    refs, ref_surs = _references(base, family, T, lens, seed, progress, task) if references else ({}, {})
    walls["references"] = time.perf_counter() - t1
    all_losses = evaluate_surrogates(variants + list(ref_surs.values()), family, keys, T)
    (mll_s, cur_s), sur_ab = all_losses[0], all_losses[1:len(variants)]
    ef = explained_fraction(mll_b, mll_s, mll_l, n_boot=n_boot, seed=seed)
    perf = {"best_baseline": best, "best_baseline_hyperparameters": bh,
            "rows": {"learned": _row("learned", mll_l, cur_l), "surrogate": _row("surrogate", mll_s, cur_s, mll_l),
                     best: _row(best, mll_b, cur_b, mll_l)},
            "benchmark_check": {"learned": rows.get("learned", {}).get("mean_log_loss", {}).get("mean"),
                                best: base[best]["mean_log_loss"]["mean"]}}
    ablations = []
    for mech, (mll_a, cur_a) in zip(S.MECHANISMS, sur_ab):
        r = _row(f"surrogate − {mech}", mll_a, cur_a, mll_s)
        r.update(model="surrogate", removed=mech, description=ABLATION_TEXT[mech],
                 explained_fraction=explained_fraction(mll_b, mll_a, mll_l, n_boot=n_boot, seed=seed)["value"])
        ablations.append(r)
    for name, (mll_a, cur_a) in learned_runs.items():
        removed, text = LEARNED_ABLATIONS[name]
        r = _row(f"learned: {name}", mll_a, cur_a, mll_l)
        r.update(model="learned", removed=removed, description=text)
        ablations.append(r)
    walls["evaluation"] = time.perf_counter() - t0 - walls["references"]

    for (name, r_num), (mll_rs, _) in zip(refs.items(), all_losses[len(variants):]):
        mll_o, _ = run(baseline_from_json(name, base[name]["hyperparameters"]), name)
        d = _m_se(mll_rs - mll_o)
        r_num["surrogate"].update(mean_log_loss=_m_se(mll_rs)[0], own_mean_log_loss=_m_se(mll_o)[0],
                                  difference=d[0], difference_se=d[1])

    result = {
        "task": task, "optimizer": {"source": label, "lopt_config": dataclasses.asdict(config)},
        "steps": T, "seed": seed, "test_seeds": n_test, "tuning_seeds": benchmark.get("tuning_seeds"),
        "surrogate": parts, "performance": perf, "explained_fraction": ef, "ablations": ablations,
        "references": refs, "learned_lens": {"arrays": _lens_arrays(lens, sur),
                                             "alpha_eff_method": M.evidence.alpha_eff_method_text(lens.fd_step),
                                             "fixed_point": "convergence fixed point" if fixed is not None else
                                             "no valid convergence fixed point: the autonomous state at step T",
                                             "update_at_fixed_point": float(rm.readout(rm.step(
                                                 h_star, jax.numpy.zeros((1,), h_star.dtype))))},
        "notes": {
            "explained_fraction": "(B − S)/(B − L) on the mean log loss over the test seeds; B = the best tuned "
                                  "baseline by test mean log loss, S = surrogate, L = learned; s.e. by paired "
                                  "bootstrap over the test seeds",
            "surrogate": S.__doc__.strip().splitlines()[0],
            "omitted": "the learned optimizer's drift at the fixed point (update at zero gradient) is not modelled",
        },
    }
    result.update(ladder)
    if "mechanism_bound" in ladder:
        from lorex.distill.extracted import extracted_rung

        t0 = time.perf_counter()
        _say(progress, f"{task}: the extracted surrogate as a family member" +
             ("" if family_trained is not None else ", and the family meta-trained from it"))
        result["extracted"], result["extracted_vs_trained"] = extracted_rung(
            family, benchmark, sur, parts, ladder, config=family_config, seed=seed, n_boot=n_boot,
            train=family_trained is None, fit_range=lens.fit_range, surrogate_losses=cur_s,
            progress=lambda m: _say(progress, f"{task}: from extracted: {m}"))
        walls["extracted"] = time.perf_counter() - t0
    if round_trip:
        from lorex.distill.roundtrip import round_trip as _round_trip

        t0 = time.perf_counter()
        result["round_trip"] = _round_trip(family, n_members=int(round_trip), seed=seed, horizon=T,
                                           progress=lambda m: _say(progress, f"{task}: {m}"))
        walls["round_trip"] = time.perf_counter() - t0
    result["findings"] = findings(result)
    walls["total"] = time.perf_counter() - t_start
    result["wall_seconds"] = walls
    return io.json_safe(result)


def _references(base, family, T, lens, seed, progress, task):
    """Momentum, RMSProp and Adam (those tuned in the benchmark) through the same lens, and their surrogates."""
    refs, surs = {}, {}
    ref_keys = seeds.keys(seed, "analysis", 8)
    for name in REFERENCES:
        if name not in base:
            continue
        _say(progress, f"{task}: reference lens: {name}")
        t0 = time.perf_counter()
        r_lens, r_num = L.reference_lens(name, base[name]["hyperparameters"], family, ref_keys, T)
        r_sur, r_parts = L.build_surrogate(r_lens, T)
        r_num["surrogate"] = {"parts": _compact_parts(r_parts)}
        r_num["arrays"] = _lens_arrays(r_lens, r_sur)
        r_num["wall_seconds"] = time.perf_counter() - t0
        refs[name], surs[name] = r_num, r_sur
    return refs, surs


def evaluate_batched(make_tx, stacked, family, keys, steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(per-seed mean log loss, loss curves)] of ``make_tx(p)`` for each p along the leading axis of the pytree
    ``stacked``, on the problems of ``keys``: one compiled call for all of them."""

    def one(p, key):
        return _run(make_tx(p), family, key, steps)

    f = jit_once(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))
    losses = np.asarray(f(stacked, keys), np.float64)
    return [(per_seed_mll(x), x) for x in losses]


def evaluate_surrogates(surrogates, family, keys, steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`evaluate_batched` for surrogates (padded to equal shapes, then stacked)."""
    K = max(len(s.betas) for s in surrogates)
    G = max(len(s.adapt_grid) for s in surrogates)
    stacked = jax.tree_util.tree_map(lambda *xs: jax.numpy.stack(xs), *[s.arrays(K, G) for s in surrogates])
    return evaluate_batched(S.mechanistic_optimizer, stacked, family, keys, steps)


def _compact_parts(parts):
    p = dict(parts)
    p.pop("parameters", None)
    return p


def _lens_arrays(lens: L.Lens, sur: S.Surrogate) -> dict:
    """What the figure draws for one optimizer (normalised so optimizers of any scale share an axis)."""
    g, U = np.asarray(lens.clip_grads), np.asarray(lens.clip_updates, np.float64)
    y = U - np.interp(0.0, np.sort(g), U[np.argsort(g)])
    level = float(np.max(np.abs(y))) if np.isfinite(y).all() and np.max(np.abs(y)) > 0 else 1.0
    return {"clip_grads": g.tolist(), "clip_norm": (-y / level).tolist(),
            "schedule": np.asarray(sur.schedule, float).tolist(),
            "adapt_grid": np.asarray(sur.adapt_grid, float).tolist(),
            "adapt_ratio": np.asarray(sur.adapt_ratio, float).tolist(),
            "betas_abs": np.abs(sur.betas).tolist(),
            "weights_share": (np.real(sur.weights) / sur.alpha_eff if sur.alpha_eff else np.real(sur.weights)).tolist(),
            "fit_range": list(lens.fit_range)}


def _fmt(x, spec=".3g"):
    return "n/a" if x is None else format(x, spec)


def findings(result: dict) -> list[str]:
    """Plain sentences: how much the surrogate explains, which mechanism matters most, what the references show."""
    out = []
    parts = result["surrogate"]
    if parts.get("applicable") is False:
        out.append(f"The extracted surrogate is not applicable: {parts.get('not_applicable_reason')}; its numbers "
                   "below are shown but support no statement.")
    for k in parts.get("rejected", []):
        g = parts["gates"][k]
        out.append(f"The extracted {k} failed its fit-quality gate ({g['reason']}) and is dropped to {g['neutral']}.")
    ef, perf = result["explained_fraction"], result["performance"]
    best = perf["best_baseline"]
    gap, gap_se = ef["baseline_minus_learned"], ef["baseline_minus_learned_se"]
    v, se = ef["value"], ef["se"]
    if gap is None:
        out.append(f"The explained fraction is undefined: {ef.get('note', 'a run diverged')}.")
    elif gap_se is not None and gap <= 2 * gap_se:
        out.append(f"The learned optimizer does not beat the best tuned baseline ({best}) by 2 s.e. on the mean log "
                   f"loss (advantage {gap:.3f} ± {gap_se:.3f}): there is no advantage to explain, so the explained "
                   f"fraction ({_fmt(v)}) is not meaningful.")
    else:
        verdict = ("more than accounts for" if v > 1.2 else "explains most of" if v >= 0.8 else
                   "explains part of" if v >= 0.3 else "explains little of" if v >= 0 else "explains none of")
        tail = f" — it is worse than {best} itself" if v < 0 else ""
        out.append(f"The mechanistic surrogate {verdict} the learned optimizer's advantage over {best}{tail}: "
                   f"explained fraction {v:.2f} ± {_fmt(se, '.2f')} (advantage {gap:.3f} ± {gap_se:.3f} in mean "
                   "log loss).")
    sur_ab = [a for a in result["ablations"] if a["model"] == "surrogate" and a.get("delta") is not None]
    listing = ", ".join(f"{a['removed']} {a['delta']:+.3f} ± {_fmt(a['delta_se'], '.3f')}" for a in sur_ab)
    if sur_ab and max(a["delta"] for a in sur_ab) > 0:
        worst = max(sur_ab, key=lambda a: a["delta"])
        out.append(f"In the surrogate, removing {worst['removed']} costs the most (Δ mean log loss when removed, "
                   f"+ = worse: {listing}).")
    elif sur_ab:
        out.append(f"Removing any single mechanism does not hurt the surrogate (Δ mean log loss when removed: "
                   f"{listing}): its mechanisms, as extracted, do not help it on this task.")
    for a in result["ablations"]:
        if a["diverged"]:
            out.append(f"{a['name']} diverges on {a['diverged']}/{result['test_seeds']} test seeds.")
    lr_ab = [a for a in result["ablations"] if a["model"] == "learned" and a.get("delta") is not None]
    if lr_ab:
        out.append("The learned optimizer with mechanisms suppressed (Δ mean log loss, + = worse): " + "; ".join(
            f"{a['name'].split(': ')[1]} (removes {a['removed']}) {a['delta']:+.3f}" for a in lr_ab) + ".")
    sch = result["surrogate"]["schedule"]
    if sch.get("derived") and (max(abs(sch["initial"]), abs(sch["peak"])) > 10 or 0 < abs(sch["initial"]) < 0.1):
        out.append(f"The small-gradient learning rate early in the run is {sch['initial']:.3g}× the one at the "
                   "convergence fixed point: the linearization there (the surrogate's β_i) describes the end of the "
                   "run, not its beginning, so the separable surrogate (fixed β_i, scaled α) is a poor model of it.")
    for name, r in result["references"].items():
        s = r["surrogate"]
        m, a, sch = r["momentum"], r["adaptation"], r["schedule"]
        verdicts = ", ".join(f"{f['mechanism']} {f['verdict']}" for f in r["findings"])
        out.append(f"{name} through the same lens: {verdicts}; α_eff-sum at its end-of-run state "
                   f"{_fmt(m['alpha_eff_sum'])}; schedule final/peak {_fmt(sch['autonomous']['final_over_peak'])}; "
                   f"adaptation slope {_fmt(a['trajectories']['median_slope'], '.2f')}; its own surrogate differs "
                   f"from it by {_fmt(s['difference'], '+.3f')} ± {_fmt(s['difference_se'], '.3f')} in mean log loss.")
    return out
