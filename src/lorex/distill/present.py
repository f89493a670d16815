"""The distillation as a text table, a figure (PNG + PDF), an HTML fragment, and the ``lorex distill`` command."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

REF_COLORS = {"learned": "tab:red", "momentum": "tab:blue", "rmsprop": "tab:green", "adam": "tab:orange"}


def _n(x, spec=".3g"):
    return "n/a" if x is None else format(x, spec)


def _beta(m) -> str:
    return f"{m['beta_re']:.3f}" + (f"{m['beta_im']:+.3f}i" if m["beta_im"] else "")


def _ci(r) -> str:
    if r is None or r.get("mean") is None:
        return f"n/a (diverged on {r.get('diverged') if r else '?'} test seeds)"
    lo, hi = r["ci95"]
    return f"{r['mean']:8.3f} [{lo:.3f}, {hi:.3f}]"


def loo_delta(r: dict) -> str:
    """A leave-one-out row's Δ = variant − U with its interval, and a warning when the variant's member never improved
    on its start (best validation at meta-step 0): then Δ compares U with an untrained optimizer, not with the
    family trained without the mechanism."""
    if r.get("delta_vs_bound") is None:
        return "n/a"
    d = f"{r['delta_vs_bound']:+.3f} [{r['delta_ci95'][0]:+.3f}, {r['delta_ci95'][1]:+.3f}]"
    if r.get("best_meta_step") == 0:
        d += " (its member never improved on its start: U against an untrained variant)"
    return d


def format_ladder(result: dict) -> list[str]:
    """The L / U / B ladder, the gap closed and the leave-one-out table (lines; none without a ladder)."""
    if "mechanism_bound" not in result:
        return []
    U, B, L = result["mechanism_bound"], result["best_baseline"], result["learned"]
    fam = result.get("mechanism_family", {})
    fc = fam.get("family_config", {})
    lines = [f"mechanism bound on {result['test_seeds']} test seeds (mean log loss, 95% paired-bootstrap interval):",
             f"  {'learned L':<30} {_ci(L)}",
             f"  {'mechanism bound U':<30} {_ci(U)}  (seed {U.get('member_seed')}, trained as "
             f"{U.get('trained_as', 'bound')}, from {U.get('start')}, best meta-step {U.get('best_meta_step')})",
             f"  {'best baseline B (' + B['name'] + ')':<30} {_ci(B)}"]
    E = result.get("extracted")
    if E:
        d = E["minus_bound"]
        lines.append(f"  {'extracted (as a family member)':<30} {_ci(E)}  (− U: "
                     f"{_n(d['mean'], '+.3f')} {d['ci95'] and [round(v, 3) for v in d['ci95']]}; gates rejected: "
                     f"{', '.join(E['rejected']) or 'none'}{'' if E['applicable'] else '; NOT APPLICABLE'})")
        if E.get("surrogate_itself"):
            lines.append(f"  {'extracted surrogate itself':<30} {_ci(E['surrogate_itself'])}  (mapping into the "
                         f"family costs {_n(E['mapping_cost']['mean'], '+.3f')} nats)")
    g = result["gap_closed"]
    if g.get("reported"):
        ci = g["ci95"] and f"[{g['ci95'][0]:.2f}, {g['ci95'][1]:.2f}]"
        lines.append(f"  gap closed (B − U)/(B − L) = {g['value']:.2f} {ci}  (B − L = "
                     f"{g['baseline_minus_learned']:.3f} [{g['baseline_minus_learned_ci95'][0]:.3f}, "
                     f"{g['baseline_minus_learned_ci95'][1]:.3f}])")
    else:
        gap = g.get("baseline_minus_learned")
        lines.append(f"  gap closed: not reported — {g.get('note', '')}"
                     + ("" if gap is None else f" (B − L = {gap:.3f} [{g['baseline_minus_learned_ci95'][0]:.3f}, "
                        f"{g['baseline_minus_learned_ci95'][1]:.3f}])"))
    nat = U.get("natural", {})
    lines.append("  U's parameters: " + ", ".join(
        f"{k}={[round(x, 4) for x in v] if isinstance(v, list) else format(v, '.4g')}" for k, v in nat.items()))
    if result.get("leave_one_out"):
        lines.append("  leave-one-out (family retrained without one mechanism; Δ = variant − U, + = worse):")
        for r in result["leave_one_out"]:
            lines.append(f"    without {r['removed']:<12} {_ci(r)}  Δ {loo_delta(r)}")
    vs = result.get("extracted_vs_trained")
    if vs:
        lines.append(f"  family meta-trained from the extracted member ({vs['meta_steps']} meta-steps): {_ci(vs)}  "
                     f"(− U {_n(vs['minus_bound']['mean'], '+.3f')}, − extracted "
                     f"{_n(vs['minus_extracted']['mean'], '+.3f')})")
        lines.append(f"    {'parameter':<24} {'extracted':>11} {'trained':>11} {'U':>11}")
        for r in vs["per_parameter"]:
            lines.append(f"    {r['parameter']:<24} {_n(r['extracted'], '11.4g')} {_n(r['trained'], '11.4g')} "
                         f"{_n(r['bound'], '11.4g')}")
    if E and E["mapping"]["approximations"]:
        lines.append("  extracted → family approximations: " + "; ".join(E["mapping"]["approximations"]))
    if fc:
        secs = fam.get("wall_seconds", {}).get("meta_training")
        how = (f"meta-training {secs:.1f} s" if secs is not None else
               f"trained elsewhere ({_n(fam.get('meta_training_seconds'), '.1f')} s), evaluated here")
        lines.append(f"  family: {fc.get('modes')} momentum modes, {fc.get('knots')} schedule knots; "
                     f"{fc.get('steps')} meta-steps × seeds {fc.get('seeds')}; {how}")
    return lines


def format_table(result: dict) -> str:
    """Explained fraction, mean log losses and the ablation table as plain text (and the mechanism-bound ladder
    where the result has one)."""
    if "explained_fraction" not in result:  # the ladder only (distill(..., surrogate=False))
        return "\n".join([f"distill {result['optimizer']['source']} on {result['task']}: {result['test_seeds']} "
                          f"test seeds, {result['steps']} steps", *format_ladder(result)])
    ef, perf = result["explained_fraction"], result["performance"]
    lines = [f"distill {result['optimizer']['source']} on {result['task']}: {result['test_seeds']} test seeds, "
             f"{result['steps']} steps",
             f"{'model':<34} {'mean log loss':>16} {'Δ (paired)':>18} diverged"]
    for name, r in perf["rows"].items():
        d = "" if r.get("delta") is None else f"{r['delta']:+.3f} ± {_n(r['delta_se'], '.3f')}"
        lines.append(f"{name:<34} {_n(r['mean_log_loss'], '8.3f')} ± {_n(r['se'], '.3f')} {d:>18} {r['diverged']}")
    lines.append(f"explained fraction (best baseline {perf['best_baseline']}): {_n(ef['value'], '.3f')} ± "
                 f"{_n(ef['se'], '.3f')}  95% CI {ef['ci95'] and [round(v, 3) for v in ef['ci95']]}  [{ef['method']}]")
    lines.append("ablations (Δ vs the full surrogate / vs the learned optimizer; + = worse):")
    for a in result["ablations"]:
        d = "n/a" if a.get("delta") is None else f"{a['delta']:+.3f} ± {_n(a['delta_se'], '.3f')}"
        extra = f"  EF {_n(a.get('explained_fraction'), '.2f')}" if a["model"] == "surrogate" else ""
        lines.append(f"  {a['name']:<34} {_n(a['mean_log_loss'], '8.3f')}  Δ {d:<18} div {a['diverged']}{extra}")
    p = result["surrogate"]
    mom = ", ".join(f"β={_beta(m)} c={m['weight_re']:.3g}" for m in p["momentum"]["modes"])
    lines.append(f"surrogate: momentum [{mom}] (α_eff {p['momentum']['alpha_eff']:.4g}); clipping "
                 f"{p['clipping']['kind']} s={_n(p['clipping']['threshold'])} (fit error {_n(p['clipping']['error'])});"
                 f" schedule σ(0)={p['schedule']['initial']:.3g} peak {p['schedule']['peak']:.3g}@"
                 f"{p['schedule']['peak_step']} final {p['schedule']['final']:.3g}; adaptation "
                 f"a∈[{_n(p['adaptation'].get('ratio_min'))}, {_n(p['adaptation'].get('ratio_max'))}] "
                 f"ρ={p['adaptation']['rate']['rho']:.4g}")
    lines += _gate_lines(p)
    for name, r in result["references"].items():
        s = r["surrogate"]
        lines.append(f"reference {name:<9} β_eff={_n((r['momentum']['heavy_ball'] or {}).get('beta'), '.3f')} "
                     f"adaptation slope {_n(r['adaptation']['trajectories']['median_slope'], '.2f')} schedule "
                     f"final/peak {_n(r['schedule']['autonomous']['final_over_peak'], '.3f')}; own surrogate {_n(s['mean_log_loss'], '.3f')} "
                     f"vs itself {_n(s['own_mean_log_loss'], '.3f')}")
    lines += format_ladder(result)
    lines += format_round_trip(result)
    lines += [f"finding: {f}" for f in result["findings"]]
    return "\n".join(lines)


def _gate_lines(parts: dict) -> list[str]:
    """One line per fit-quality gate of the extracted surrogate (none for results written before the gates)."""
    gates = parts.get("gates")
    if not gates:
        return []
    out = [f"fit-quality gates ({'all passed' if not parts.get('rejected') else 'rejected: ' + ', '.join(parts['rejected']) + ' (dropped to neutral)'}"
           f"{'' if parts.get('applicable', True) else '; surrogate NOT APPLICABLE: ' + str(parts.get('not_applicable_reason'))}):"]
    for k, g in gates.items():
        out.append(f"  {k:<11} {'pass' if g['passed'] else 'REJECT'}  {g['criterion']}; value {_n(g['value'], '.4g')}"
                   + ("" if g["passed"] else f" — {g['reason']} → {g['neutral']}"))
    return out


def distill_figure(result: dict, stem) -> list[Path]:
    """Loss curves (learned, surrogate, best baseline), ablation bars, and the four mechanisms of the learned
    optimizer beside Momentum, RMSProp and Adam through the same lens; PNG and PDF."""
    from lorex.plotting import plt, save, symlog_axis

    fig, axes = plt.subplots(2, 3, figsize=(16, 8.4))
    ax = axes[0, 0]
    perf = result["performance"]
    for name, r in perf["rows"].items():
        c = np.asarray(r["curve_mean"], np.float64)
        color = {"learned": "tab:red", "surrogate": "k"}.get(name, "tab:gray")
        ax.plot(np.arange(len(c)), c, color=color, lw=2 if name != perf["best_baseline"] else 1.4,
                ls="--" if name == "surrogate" else "-", label=f"{name} ({_n(r['mean_log_loss'], '.2f')})")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean loss")
    ef = result["explained_fraction"]
    ax.set_title(f"{result['task']}: explained fraction {_n(ef['value'], '.2f')} ± {_n(ef['se'], '.2f')}")
    ax.legend(frameon=False, fontsize=7, title="mean log loss", title_fontsize=7)

    ax = axes[0, 1]
    ab = result["ablations"]
    y = np.arange(len(ab))
    d = np.array([a["delta"] if a.get("delta") is not None else np.nan for a in ab], np.float64)
    e = np.array([a["delta_se"] if a.get("delta_se") is not None else 0.0 for a in ab], np.float64)
    colors = ["k" if a["model"] == "surrogate" else "tab:red" for a in ab]
    ax.barh(y, np.nan_to_num(d), xerr=e, color=colors, alpha=0.7)
    for i, a in enumerate(ab):
        if not np.isfinite(d[i]):
            ax.text(0, i, f" diverged ({a['diverged']})", va="center", fontsize=7)
    ax.set_yticks(y, [a["name"] for a in ab], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel("Δ mean log loss when removed (+ = worse)")
    ax.set_title("ablations (black: surrogate, red: learned)")

    lenses = {"learned": result["learned_lens"]["arrays"]}
    lenses.update({k: v["arrays"] for k, v in result["references"].items()})
    ax = axes[0, 2]
    for name, a in lenses.items():
        b, w = np.asarray(a["betas_abs"]), np.asarray(a["weights_share"])
        ax.plot(b, w, "o", ms=7, color=REF_COLORS.get(name, "k"), label=name, alpha=0.8)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("|β_i| of the kept modes")
    ax.set_ylabel("share of α_eff (c_i/Σc)")
    ax.set_title("momentum")
    ax.legend(frameon=False, fontsize=7)

    ax = axes[1, 0]
    for name, a in lenses.items():
        g, u = np.asarray(a["clip_grads"]), np.asarray(a["clip_norm"], np.float64)
        ax.plot(g, u, color=REF_COLORS.get(name, "k"), lw=2 if name == "learned" else 1.2, label=name)
    g = np.asarray(lenses["learned"]["clip_grads"])
    nz = np.abs(g[g != 0])
    if nz.size:
        symlog_axis(ax, float(nz.min()), float(nz.max()), decades=3)
    s = result["surrogate"]["clipping"]
    ax.set_title(f"clipping: −(U(h0,g) − U(h0,0)) / max; learned fit {s['kind']} (err {_n(s['error'], '.2f')})",
                 fontsize=9)
    ax.set_xlabel("gradient g (symlog)")
    ax.legend(frameon=False, fontsize=7)

    ax = axes[1, 1]
    for name, a in lenses.items():
        sc = np.asarray(a["schedule"], np.float64)
        ax.plot(np.arange(len(sc)), sc / (np.max(np.abs(sc)) or 1.0), color=REF_COLORS.get(name, "k"), label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("σ(t) / max σ")
    ax.set_title("schedule: autonomous α_eff, normalised")
    ax.legend(frameon=False, fontsize=7)

    ax = axes[1, 2]
    for name, a in lenses.items():
        gg, rr = np.asarray(a["adapt_grid"]), np.asarray(a["adapt_ratio"])
        if gg.size > 1:
            m = rr > 0
            ax.plot(gg[m], rr[m], color=REF_COLORS.get(name, "k"), label=name)
    fr = lenses["learned"]["fit_range"]
    ax.axvspan(fr[0], fr[1], color="tab:gray", alpha=0.12, label="|g| met (learned)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("|g*|")
    ax.set_ylabel("α_eff(h*(g*)) / α_eff(h*(0))")
    ax.set_title("adaptation (S-curve)")
    ax.legend(frameon=False, fontsize=7)
    fig.suptitle(f"{result['task']}: distillation of the learned optimizer", y=1.0)
    fig.tight_layout()
    return save(fig, stem)


def _e(x) -> str:
    return html.escape(str(x))


def _table(header, rows) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows]
    return "\n".join(out + ["</table>"])


def distill_html(result: dict) -> str:
    """An HTML fragment (no script, no external address): findings, explained fraction, ablations, surrogate
    parameters and the reference optimizers through the same lens."""
    ef, perf = result["explained_fraction"], result["performance"]
    parts = [f"<h3>Distillation — {_e(result['task'])}</h3>",
             "<ul>" + "".join(f"<li>{_e(f)}</li>" for f in result["findings"]) + "</ul>"]
    rows = [(_e(n), f"{_n(r['mean_log_loss'], '.3f')} ± {_n(r['se'], '.3f')}",
             "" if r.get("delta") is None else f"{r['delta']:+.3f} ± {_n(r['delta_se'], '.3f')}", _e(r["diverged"]))
            for n, r in perf["rows"].items()]
    parts.append(_table(("model", "mean log loss (mean ± s.e.)", "Δ vs learned (paired)", "diverged"), rows))
    parts.append(f"<p>Explained fraction (B − S)/(B − L), B = {_e(perf['best_baseline'])}: "
                 f"<b>{_n(ef['value'], '.3f')} ± {_n(ef['se'], '.3f')}</b> (95 % interval "
                 f"{_e(ef['ci95'] and [round(v, 3) for v in ef['ci95']])}; {_e(ef['method'])}).</p>")
    rows = [(_e(a["name"]), _e(a["removed"]), _e(a["description"]), f"{_n(a['mean_log_loss'], '.3f')}",
             "n/a" if a.get("delta") is None else f"{a['delta']:+.3f} ± {_n(a['delta_se'], '.3f')}",
             _e(a["diverged"]), _n(a.get("explained_fraction"), ".2f") if a["model"] == "surrogate" else "")
            for a in result["ablations"]]
    parts.append(_table(("ablation", "removes", "how", "mean log loss", "Δ (+ = worse)", "diverged",
                         "explained fraction"), rows))
    p = result["surrogate"]
    rows = [(_e("momentum mode"), _e(m["kind"]), _e(f"β = {m['beta_re']:.4f}{m['beta_im']:+.4f}i, c = "
                                                    f"{m['weight_re']:.4g}{m['weight_im']:+.4g}i, τ = "
                                                    f"{m['timescale']:.3g} steps"))
            for m in p["momentum"]["modes"]]
    c = p["clipping"]
    lin = _n(c["fits"]["linear"]["error"]) if "fits" in c else "n/a"
    rows.append(("clipping", _e(c["kind"]),
                 _e(f"s = {_n(c['threshold'])}, relative RMS fit error {_n(c['error'])} (straight line {lin})")))
    s = p["schedule"]
    rows.append(("schedule", _e(s.get("normalised_by", s.get("note", ""))),
                 _e(f"σ(0) = {s['initial']:.3g}, peak {s['peak']:.3g} at step {s['peak_step']}, "
                    f"σ(T) = {s['final']:.3g}")))
    a = p["adaptation"]
    rows.append(("adaptation", _e("from the S-curve" if a.get("derived") else a.get("note", "")),
                 _e(f"a ∈ [{_n(a.get('ratio_min'))}, {_n(a.get('ratio_max'))}], ρ = {a['rate']['rho']:.4g}")))
    parts.append(_table(("part", "kind", "value"), rows))
    if p.get("gates"):
        parts.append("<p>Fit-quality gates of the extracted surrogate (a factor that fails is dropped to its neutral "
                     "value, never used" + ("" if p.get("applicable", True) else
                                             f"; the surrogate is <b>not applicable</b>: "
                                             f"{_e(p.get('not_applicable_reason'))}") + "):</p>")
        parts.append(_table(("factor", "gate", "value", "verdict"), [
            (_e(k), _e(g["criterion"]), _n(g["value"], ".4g"),
             "pass" if g["passed"] else _e(f"rejected: {g['reason']} → {g['neutral']}")) for k, g in p["gates"].items()]))
    rows = []
    for name, r in result["references"].items():
        rows.append((_e(name), _e(", ".join(f"{k} = {v:.4g}" for k, v in r["hyperparameters"].items())),
                     _verdicts(r), _n((r["momentum"]["heavy_ball"] or {}).get("beta"), ".3f"),
                     _n(r["clipping"]["g90_pos"]), _n(r["schedule"]["autonomous"]["final_over_peak"], ".3f"),
                     _n(r["adaptation"]["trajectories"]["median_slope"], ".2f"),
                     f"{_n(r['surrogate']['mean_log_loss'], '.3f')} vs "
                     f"{_n(r['surrogate']['own_mean_log_loss'], '.3f')}"))
    if rows:
        parts.append("<p>Reference optimizers (tuned) through the same lens:</p>")
        parts.append(_table(("optimizer", "hyperparameters", "verdicts (momentum, clipping, schedule, adaptation)",
                             "β_eff", "g90 at h0 (g > 0)", "schedule final/peak", "adaptation slope", "own surrogate vs itself (mean log loss)"), rows))
    else:
        parts.append("<p class='small'>The check of the extraction on tuned Momentum, RMSProp and Adam (rebuilt "
                     f"through the same lens) was not run here: <code>lorex distill --optimizer {_e(result['task'])}"
                     "</code> runs it.</p>")
    parts.append(ladder_html(result))
    parts.append(round_trip_html(result))
    return "\n".join(parts)


def _ci_html(r) -> str:
    if r is None or r.get("mean") is None:
        return "n/a (diverged)"
    return f"{r['mean']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"


def ladder_html(result: dict) -> str:
    """The mechanism-bound ladder as an HTML fragment ('' without one)."""
    if "mechanism_bound" not in result:
        return ""
    U, B, L, g = result["mechanism_bound"], result["best_baseline"], result["learned"], result["gap_closed"]
    rows = [("learned L", _ci_html(L), ""), ("mechanism bound U (trained family)", _ci_html(U),
                                              _e(", ".join(f"{k} = {v}" for k, v in U.get("natural", {}).items()))),
            (_e(f"best tuned baseline B ({B['name']})"), _ci_html(B), "")]
    E, vs = result.get("extracted"), result.get("extracted_vs_trained")
    if E:
        rows.insert(2, ("extracted surrogate (as a family member)", _ci_html(E),
                        _e(f"Δ vs U {_n(E['minus_bound']['mean'], '+.3f')} "
                           f"{E['minus_bound']['ci95'] and [round(v, 3) for v in E['minus_bound']['ci95']]}; "
                           f"gates rejected: {', '.join(E['rejected']) or 'none'}"
                           + ("" if E["applicable"] else "; not applicable"))))
    if E and E.get("surrogate_itself"):
        rows.insert(3, ("extracted surrogate itself (its own optax transformation)", _ci_html(E["surrogate_itself"]),
                        _e(f"mapping into the family costs {_n(E['mapping_cost']['mean'], '+.3f')} nats")))
    if vs:
        rows.insert(4 if E and E.get("surrogate_itself") else 3, (_e(f"family meta-trained from the extracted member ({vs['meta_steps']} meta-steps)"),
                        _ci_html(vs), _e(f"Δ vs U {_n(vs['minus_bound']['mean'], '+.3f')}")))
    rows += [(_e(f"family without {r['removed']}"), _ci_html(r),
              _e("Δ vs U " + loo_delta(r)))
             for r in result.get("leave_one_out", [])]
    gap = (f"gap closed (B − U)/(B − L) = <b>{g['value']:.2f}</b> (95 % interval "
           f"{_e(g['ci95'] and [round(v, 2) for v in g['ci95']])})" if g.get("reported")
           else f"gap closed not reported: {_e(g.get('note', ''))}")
    out = ("<p>Mechanism bound: the four known mechanisms as one trainable optimizer, meta-trained on this task "
           f"(mean log loss, 95 % paired-bootstrap intervals over the test seeds); {gap}.</p>"
           + _table(("optimizer", "mean log loss [95 % interval]", "parameters / Δ"), rows))
    if vs:
        out += ("<p>Extracted vs trained parameters (the family meta-trained from the extracted member; U's value "
                "beside):</p>" + _table(("parameter", "extracted", "trained", "U"), [
                    (_e(r["parameter"]), _n(r["extracted"], ".4g"), _n(r["trained"], ".4g"), _n(r["bound"], ".4g"))
                    for r in vs["per_parameter"]]))
    if E and E["mapping"]["approximations"]:
        out += ("<p class='small'>Extracted → family approximations: " +
                _e("; ".join(E["mapping"]["approximations"])) + "</p>")
    return out


def _verdicts(r: dict) -> str:
    return ", ".join(_e(f["verdict"]) for f in r.get("findings", []))


def format_round_trip(result: dict) -> list[str]:
    """The round trip (random family members → extraction → family) as lines; none without one."""
    rt = result.get("round_trip")
    if not rt:
        return []
    tol = rt["tolerances"]
    lines = [f"round trip ({len(rt['members'])} random family members on {rt['task']}, T = {rt['horizon']}; "
             f"tolerances: β ±{tol['beta']}, shares ±{tol['weight_share']}, schedule ±{tol['schedule']} nats, "
             f"log τ ±{tol['tau']}, p ±{tol['p']}, log(1 − ρ) ±{tol['rho_timescale']}, score ±{tol['score']} nats):"]
    for r in rt["members"]:
        if "error" in r:
            lines.append(f"  #{r['member']} {r['kind']:<30} extraction failed: {r['error']}")
            continue
        c = r["comparison"]
        mark = {k: ("ok" if c[k]["passed"] else "FAIL") for k in c}
        lines.append(f"  #{r['member']} {r['kind']:<30} momentum {mark['momentum']} (slowest β "
                     f"{'ok' if c['momentum']['slowest_beta'] else 'FAIL'}, shares "
                     f"{'ok' if c['momentum']['shares'] else 'FAIL'}), clipping {mark['clipping']}, schedule "
                     f"{mark['schedule']}, adaptation {mark['adaptation']}; score {_n(r['score']['original'], '.3f')} → "
                     f"{_n(r['score']['rebuilt'], '.3f')} ({_n(r['score']['difference'], '+.3f')}, "
                     f"{'ok' if r['score']['passed'] else 'FAIL'})"
                     + (f"; gates rejected {', '.join(r['gates_rejected'])}" if r.get("gates_rejected") else ""))
    return lines


def round_trip_html(result: dict) -> str:
    """The round-trip table as an HTML fragment ('' without one)."""
    rt = result.get("round_trip")
    if not rt:
        return ""

    def cell(ok):
        return "pass" if ok else "<b>fail</b>"

    rows = []
    for r in rt["members"]:
        if "error" in r:
            rows.append((str(r["member"]), _e(r["kind"]), _e(f"extraction failed: {r['error']}"), "", "", "", "", ""))
            continue
        c, sc = r["comparison"], r["score"]
        rows.append((str(r["member"]), _e(r["kind"]),
                     cell(c["momentum"]["passed"]) + _e(f" (β {[round(b, 3) for b in c['momentum']['original']['betas']]}"
                                                       f" → {[round(b, 3) for b in c['momentum']['rebuilt']['betas']]})"),
                     cell(c["clipping"]["passed"]) + _e(f" (τ {c['clipping']['original']:.3g} → "
                                                       f"{c['clipping']['rebuilt']:.3g})"),
                     cell(c["schedule"]["passed"]) + _e(f" (max error {c['schedule']['max_error']:.3f} nats)"),
                     cell(c["adaptation"]["passed"]) + _e(f" (p {c['adaptation']['original']['p']:.3f} → "
                                                         f"{c['adaptation']['rebuilt']['p']:.3f})"),
                     cell(sc["passed"]) + _e(f" ({_n(sc['original'], '.3f')} → {_n(sc['rebuilt'], '.3f')})"),
                     _e(", ".join(r.get("gates_rejected") or []) or "none")))
    tol = rt["tolerances"]
    return (f"<p>Round trip: random members of the mechanism family read as black boxes by lorex.mechanisms, "
            f"extracted, mapped back into the family and compared (tolerances {_e(tol)}).</p>"
            + _table(("member", "mechanisms", "momentum", "clipping", "schedule", "adaptation",
                      "score (mean log loss)", "gates rejected"), rows))


LADDER_RUNGS = (("learned", "learned L", "tab:red"), ("surrogate_itself", "extracted surrogate (gated) itself", "0.4"),
                ("extracted", "extracted, as a family member", "k"),
                ("extracted_vs_trained", "family trained from extracted", "tab:gray"),
                ("mechanism_bound", "mechanism bound U", "tab:blue"), ("best_baseline", "best baseline B", "tab:green"))


def ladder_figure(results, stem) -> list[Path]:
    """The ladder L / extracted / U / B (and the family trained from the extracted member) per task: points with
    their 95 % paired-bootstrap intervals on a mean-log-loss axis, one panel per task; PNG and PDF.  ``results``: one
    :func:`lorex.distill.distill` result with a ladder, or a list of them."""
    from lorex.plotting import plt, save

    results = [results] if isinstance(results, dict) else list(results)
    results = [r for r in results if "mechanism_bound" in r]
    if not results:
        raise ValueError("no result with a mechanism-bound ladder")
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.2), squeeze=False)
    for ax, r in zip(axes[0], results):
        labels = []
        for key, label, color in LADDER_RUNGS:
            rung = (r.get("extracted") or {}).get(key) if key == "surrogate_itself" else r.get(key)
            if not rung:
                continue
            y = len(labels)
            name = label + (f" ({rung['name']})" if key == "best_baseline" else "")
            if rung.get("mean") is None:
                ax.text(0.02, y, f"diverged on {rung.get('diverged')} test seeds", transform=ax.get_yaxis_transform(),
                        va="center", fontsize=7)
            else:
                lo, hi = rung["ci95"]
                ax.errorbar([rung["mean"]], [y], xerr=[[rung["mean"] - lo], [hi - rung["mean"]]], fmt="o",
                            color=color, capsize=3, ms=6)
                ax.annotate(f"{rung['mean']:.2f}", (rung["mean"], y), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize=7)
            labels.append(name)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_xlabel("mean log loss (lower is better), 95 % interval")
        g = r.get("gap_closed", {})
        gap = (f"gap closed {g['value']:.2f}" if g.get("reported") else "gap closed: n/a")
        ax.set_title(f"{r['task']} ({r['test_seeds']} test seeds): {gap}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save(fig, stem)
