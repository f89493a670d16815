"""The self-contained report: one HTML file, inline CSS, figures as base64 PNG data URIs, no script, no external
address of any kind (so it opens the same anywhere, offline)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from lorex import io
from lorex.distill import distill_html

FIGURES = (("performance", "1 Performance"), ("momentum", "2 Momentum"), ("clipping", "3 Clipping"),
           ("schedule", "4 Schedules"), ("adaptation", "5 Adaptation"))

CAPTIONS = {
    "performance": "The task; loss curves (mean ± s.e. over the test seeds) of the learned optimizer and the tuned "
                   "Momentum, RMSProp and Adam; right: final loss and mean log loss of every optimizer (mean ± s.e.).",
    "momentum": "Left to right: states of the last quarter of a run projected on their first two principal "
                "components, with the convergence fixed point; the update function at states along the dominant slow "
                "mode, spanning the states visited along it; the eigenvalues of the linearization at the fixed point "
                "with the unit circle; each mode read as a momentum term (β_i = λ_i, α_i), the aggregate heavy ball "
                "(β_eff, Σα_i) that decides, and Polyak's optimal heavy ball where it is known.",
    "clipping": "Top: how far the update at the initial state h0 moves for gradients of each sign, against |g| on a "
                "log axis (grey: the 1st–99th percentile of |g| met; dotted: the largest). Bottom, on the same axis: "
                "the share of the gradients met per decade of |g| (all steps, analysis runs).",
    "schedule": "The autonomous (zero-gradient) trajectory from h0 in its PCA plane, and the effective learning "
                "rate α_eff along it (red: the learned schedule, which decides) and at the states visited on the "
                "runs (blue, median over coordinates, one line per run).",
    "adaptation": "On the runs (deciding): α_eff at each coordinate's visited state against its recent RMS gradient, "
                  "and that log-log slope at each fit step; then the S-curve of fixed points h*(g*) under constant "
                  "gradients over the range met (PCA), update functions along it, and α_eff on each arm against "
                  "|g*| beside RMSProp's α/|g*|.",
    "population": "Each member of the population (meta-training seed on the x axis): its deciding number per "
                  "mechanism with the 95 % interval over its analysis runs, coloured by verdict (green present, "
                  "red absent, grey n/a), against the threshold (dashed); right: its margin over the best tuned "
                  "baseline on mean log loss in standard errors (dotted: 2 s.e.).",
}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
.present{color:#0a6b0a;font-weight:600}.absent{color:#a33;font-weight:600}.na{color:#666;font-style:italic}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}.warn{color:#a35d00}.small{font-size:.85em;color:#555}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _num(x, spec=".4g") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, (int, float)):
        return format(x, spec)
    return _e(x)


def _table(header, rows, num_cols=()) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td class='num'>{c}</td>" if i in num_cols else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _kv(d: dict, skip=()) -> str:
    rows = []
    for k, v in d.items():
        if k in skip or isinstance(v, (dict, list)):
            continue
        rows.append((_e(k), _num(v)))
    return _table(("quantity", "value"), rows, num_cols=(1,))


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{data}'>"


def _benchmark_table(b: dict) -> str:
    """One row per optimizer; a task's own metrics of the final parameters (e.g. held-out accuracy) as columns."""
    metric_names = list(dict.fromkeys(m for r in b["optimizers"].values() for m in r.get("metrics", {})))
    rows = []
    for name, r in b["optimizers"].items():
        hp = ", ".join(f"{k} = {v:.4g}" for k, v in r["hyperparameters"].items()) or "(learned)"
        fl, ml = r["final_loss"], r["mean_log_loss"]
        extra = [f"{_num(v['mean'], '.4f')} ± {_num(v['se'], '.4f')}" if v else "—"
                 for v in (r.get("metrics", {}).get(m) for m in metric_names)]
        rows.append((f"<b>{_e(name)}</b>" if r["kind"] == "learned" else _e(name), _e(hp),
                     f"{_num(fl['mean'], '.3e')} ± {_num(fl['se'], '.1e')}", _num(fl.get("median"), ".3e"),
                     f"{_num(ml['mean'], '.3f')} ± {_num(ml['se'], '.3f')}", _num(r["diverged"]), *extra))
    heads = ("optimizer", "tuned hyperparameters", "final loss (mean ± s.e.)", "final loss (median)",
             "mean log loss (mean ± s.e.)", "diverged", *(f"{m.replace('_', ' ')} (mean ± s.e.)" for m in metric_names))
    return _table(heads, rows, num_cols=tuple(range(2, len(heads))))


def _comparison(perf: dict) -> str:
    items = []
    for name, c in perf.get("learned_vs_best", {}).items():
        f, m = c["final_loss"], c["mean_log_loss"]
        items.append(f"<li>{_e(name)} vs best baseline on final loss ({_e(f['best_baseline'])}): ratio "
                     f"learned/best = {_num(f['ratio'])}, margin {_num(f['margin_in_se'], '.1f')} s.e. — "
                     f"{'better' if f['beats_by_2se'] else 'NOT better'} by more than 2 s.e.</li>")
        items.append(f"<li>{_e(name)} vs best baseline on mean log loss ({_e(m['best_baseline'])}): difference "
                     f"{_num(m['difference'], '.3f')} (ratio of geometric-mean losses "
                     f"{_num(m['ratio_geometric_mean_loss'])}), margin {_num(m['margin_in_se'], '.1f')} s.e. — "
                     f"{'better' if m['beats_by_2se'] else 'NOT better'} by more than 2 s.e.</li>")
    return "<ul>" + "".join(items) + "</ul>" if items else ""


def _eigen_table(m: dict) -> str:
    rows = [(_num(e["index"]), _num(e["eigenvalue_re"], ".4f"), _num(e["eigenvalue_im"], ".4f"),
             _num(e["abs"], ".4f"), _num(e["timescale"], ".3g"), _num(e["alpha_re"], ".4g"))
            for e in m["eigenvalues"]]
    return _table(("mode", "Re λ", "Im λ", "|λ|", "timescale (steps)", "α_i (real part)"), rows,
                  num_cols=(0, 1, 2, 3, 4, 5))


def _numbers_for(name: str, t: dict) -> str:
    if name == "performance":
        return ""
    if name == "momentum":
        m = t["momentum"]
        out = _kv(m["gates"])
        if m.get("heavy_ball"):
            hb = m["heavy_ball"]
            d = {"aggregate α = Σα_i": hb["alpha"], "β_eff = 1 − r₀/Σr_k": hb["beta"],
                 "β_eff, 95 % interval over runs": f"[{_num(hb['beta_interval_95'][0])}, "
                                                   f"{_num(hb['beta_interval_95'][1])}]",
                 "timescale (steps)": hb["timescale"],
                 "impulse response decay r_{k+1}/r_k, k = 1..3": ", ".join(
                     _num(v, ".3f") for v in hb["impulse_decay_steps_1_10"][:3])}
            if m.get("polyak"):
                p = m["polyak"]
                d.update({"Polyak α*": p["alpha_star"], "Polyak β*": p["beta_star"], "α / α*": p["alpha_over_alpha_star"],
                          "β_eff − β*": p["beta_minus_beta_star"], "distance": p["distance"]})
            out += _kv(d)
        if m.get("modes"):
            out += _eigen_table(m["modes"])
        return out
    if name == "clipping":
        return _kv(t["clipping"], skip=("kappa_per_run", "gradient_range"))
    if name == "schedule":
        sc = t["schedule"]
        return _kv(sc["autonomous"]) + _kv({k: v for k, v in sc["trajectories"].items() if k != "per_run"})
    a = t["adaptation"]
    return _kv(a["trajectories"]) + "<p class='small'>S-curve (beside it, does not decide):</p>" + _kv(a["s_curve"])


def _interval(f) -> str:
    iv = f.get("interval_95")
    return "—" if not iv or iv[0] is None else f"[{_num(iv[0], '.3g')}, {_num(iv[1], '.3g')}]"


def _findings_tables(findings: list) -> list[str]:
    rows, sens = [], []
    for f in findings:
        cls = {"present": "present", "absent": "absent"}.get(f["verdict"], "na")
        rows.append((_e(f["task"]), _e(f["mechanism"]), f"<span class='{cls}'>{_e(f['verdict'])}</span>",
                     _num(f["value"], ".3g"), _interval(f), f"{_e('>' if f['direction'] == 'above' else '<')} "
                     f"{_num(f['threshold'], '.3g')}", _num(f["margin"], ".3g"),
                     "—" if f["decisive"] is None else ("yes" if f["decisive"] else "no (interval straddles)"),
                     _e(f["reason"] or f["statement"])))
        sens.append((_e(f["task"]), _e(f["mechanism"]), _num(f["margin"], ".3g"),
                     *(_e(f["sensitivity"][k]) for k in ("threshold_x0.5",)), _e(f["verdict"]),
                     _e(f["sensitivity"]["threshold_x1.5"])))
    return [_table(("task", "mechanism", "verdict", "value", "95 % interval", "threshold", "margin", "decisive",
                    "evidence / reason"), rows, num_cols=(3, 6)),
            "<h3>Sensitivity to the thresholds</h3><p>Each verdict again with its threshold moved by ±50 % (every "
            "threshold is in units where 0 means no such mechanism).</p>",
            _table(("task", "mechanism", "margin", "threshold × 0.5", "threshold × 1", "threshold × 1.5"), sens,
                   num_cols=(2,))]


def _verdict(v: str) -> str:
    return f"<span class='{ {'present': 'present', 'absent': 'absent'}.get(v, 'na')}'>{_e(v)}</span>"


def _agreement_table(agreement: list, findings: list) -> str:
    """Task × mechanism → k of n present, the spread over members, and the reference member's own value and
    interval (from its analysis runs)."""
    ref = {(f["task"], f["mechanism"]): f for f in findings}
    rows = []
    for a in agreement:
        f = ref.get((a["task"], a["mechanism"]), {})
        spread = "—" if a["median"] is None else (f"{_num(a['median'], '.3g')} [{_num(a['min'], '.3g')}, "
                                                  f"{_num(a['max'], '.3g')}]")
        rows.append((_e(a["task"]), _e(a["mechanism"]), f"<b>{_e(a['summary'])}</b>", spread,
                     f"{_e('>' if a['direction'] == 'above' else '<')} {_num(a['threshold'], '.3g')}",
                     _verdict(f.get("verdict", "")), f"{_num(f.get('value'), '.3g')} {_interval(f)}" if f else "—"))
    return _table(("task", "mechanism", "members", "deciding number: median [min, max] over members", "threshold",
                   "reference", "reference: value [95 % interval over its runs]"), rows, num_cols=(3,))


def _population_html(pop: dict) -> str:
    rows = []
    for m in pop["members"]:
        b = m["benchmark"]
        cells = [_e(m["seed"]) + (" (reference)" if m["reference"] else "")]
        for metric in ("mean_log_loss", "final_loss"):
            c = b["comparison"].get(metric)
            cells.append("—" if c is None else f"{_num(c['learned'], '.4g')} vs {_num(c['baseline'], '.4g')} "
                         f"({_e(c['best_baseline'])}): {_num(c['margin_in_se'], '.1f')} s.e."
                         f"{' ✓' if c['beats_by_2se'] else ''}")
        cells += [_verdict(f["verdict"]) + f" {_num(f['value'], '.3g')}" for f in m["findings"]]
        rows.append(cells)
    mechs = [f["mechanism"] for f in pop["members"][0]["findings"]]
    w = pop["wins"]
    return (f"<p>{_e(pop['n'])} optimizers of the same configuration meta-trained from different root seeds, each "
            f"benchmarked against the baselines tuned once above (✓: better by more than 2 s.e.; "
            f"{_e(w['mean_log_loss'])} of {_e(pop['n'])} win on mean log loss, {_e(w['final_loss'])} of "
            f"{_e(pop['n'])} on final loss), and each analysed by <code>lorex.mechanisms</code> on the same analysis "
            "runs.</p>"
            + _table(("seed", "mean log loss: member vs best baseline", "final loss: member vs best baseline",
                      *mechs), rows))


def _paper_html(paper: dict, reference_findings: list) -> str:
    b, cfg = paper["benchmark"], paper["lopt_config"]
    ref = {f["mechanism"]: f for f in reference_findings}
    rows = [(_e(f["mechanism"]), _verdict(f["verdict"]) + f" {_num(f['value'], '.3g')} {_interval(f)}",
             _verdict(ref[f["mechanism"]]["verdict"]) + f" {_num(ref[f['mechanism']]['value'], '.3g')}")
            for f in paper["findings"]]
    cmp_ = []
    for metric in ("mean_log_loss", "final_loss"):
        c = b["comparison"].get(metric)
        if c:
            cmp_.append(f"{metric.replace('_', ' ')} {_num(c['learned'], '.4g')} vs {_num(c['baseline'], '.4g')} "
                        f"({_e(c['best_baseline'])}), margin {_num(c['margin_in_se'], '.1f')} s.e.")
    return (f"<p>The paper's configuration: GRU-{_e(cfg['hidden'])} ({_e(paper['source'])}; "
            f"{_e(paper.get('meta_steps'))} meta-steps). {_e('; '.join(cmp_))}</p>"
            + _table(("mechanism", f"GRU-{cfg['hidden']}", "reference (small)"), rows))


def write_report(results: dict, figures: dict, path) -> Path:
    """Write ``report.html`` from the results dict and {task: {figure name: PNG path}}; returns its path."""
    path = Path(path)
    r = results
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>lorex reproduction report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>Reverse engineering learned optimizers: reproduction report</h1>",
             "<p>Reproduces the figures and numbers of Maheswaranathan et al., “Reverse engineering learned "
             "optimizers reveals known and novel mechanisms” (arXiv 2011.02159, NeurIPS 2021) with lorex. "
             "Every number on this page is in <code>results.json</code> beside it.</p>",
             "<h2>How this report was made</h2>",
             f"<p>Command:</p><pre>{_e(r['command'])}</pre>",
             f"<p class='small'>Generated {_e(r['generated_utc'])} (UTC); total wall time "
             f"{_num(r['wall_seconds']['total'], '.1f')} s.</p>"]
    s = r["seeds"]
    parts.append(_table(("seeds", "value"), [
        ("root seed", _num(r["seed"])),
        ("streams (disjoint, folded into the root seed)", _e(", ".join(f"{k}={v}" for k, v in s["streams"].items()))),
        ("tuning seeds per task", _e(json.dumps(s["tuning"]))), ("test seeds per task", _e(json.dumps(s["test"]))),
        ("analysis seeds per task (trajectories)", _e(json.dumps(s["analysis"])))]))
    parts.append(_table(("package", "version"), [(_e(k), _e(v)) for k, v in r["versions"].items()]))
    stages = ("optimizer", "benchmark", "analysis", "figures", "population", "distill")
    walls = [(_e(t), *(_num(w.get(k), ".1f") for k in stages)) for t, w in r["wall_seconds"]["tasks"].items()]
    parts.append(_table(("task", *(f"{k} (s)" for k in stages)), walls, num_cols=tuple(range(1, len(stages) + 1))))

    parts.append("<h2>Findings</h2>")
    parts += _findings_tables(r["findings"])
    parts.append("<p>Decision rules (from <code>lorex.mechanisms</code>; a verdict is “not applicable” when a "
                 "validity gate fails: every probe sits at states and gradients the optimizer meets):</p><ul>" + "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in r["rules"].items())
                 + "</ul>")
    parts.append(f"<p class='small'>{_e(r['notes']['alpha_eff'])}</p>")
    if r.get("agreement"):
        parts.append("<h3>Across meta-training seeds</h3><p>Each finding on every member of the task's population "
                     "(optimizers of one configuration meta-trained from different seeds): how many show the "
                     "mechanism, and the spread of the deciding number over members beside the reference "
                     "optimizer's own interval.</p>")
        parts.append(_agreement_table(r["agreement"], r["findings"]))

    for task, t in r["tasks"].items():
        o = t["optimizer"]
        parts.append(f"<h2>Task: {_e(task)}</h2>")
        parts.append(f"<p>Learned optimizer: {_e(o['source'])} (<code>{_e(o['path'])}</code>); GRU with "
                     f"H = {_e(o['lopt_config']['hidden'])} units, features {_e(o['lopt_config']['features'])}, "
                     f"input scale {_e(o['lopt_config']['input_scale'])}, output scale "
                     f"{_e(o['lopt_config']['output_scale'])}; meta-steps {_e(o.get('meta_steps'))}. "
                     "The paper's size is H = 256.</p>")
        b = t["benchmark"]
        parts.append(f"<h3>Benchmark</h3><p>{_e(b['test_seeds'])} test seeds, {_e(b['steps'])} steps; baselines "
                     f"tuned on {_e(b['tuning_seeds'])} tuning seeds.</p>")
        parts.append(_benchmark_table(b))
        parts.append(_comparison(t["performance"]))
        for w in b["warnings"]:
            parts.append(f"<p class='warn'>WARNING: {_e(w)}</p>")
        for name, title in FIGURES:
            png = figures[task][name]
            parts.append(f"<h3>Figure {_e(title)} — {_e(task)}</h3><figure>{_img(png, f'{task} {name}')}"
                         f"<figcaption>{_e(CAPTIONS[name])}</figcaption></figure>")
            parts.append(_numbers_for(name, t))
        if "population" in t and "population" in figures[task]:
            parts.append(f"<h3>Population — {_e(task)}</h3><figure>"
                         f"{_img(figures[task]['population'], f'{task} population')}<figcaption>"
                         f"{_e(CAPTIONS['population'])}</figcaption></figure>")
            parts.append(_population_html(t["population"]))
        if "paper" in t:
            parts.append(f"<h3>The paper's configuration — {_e(task)}</h3>")
            parts.append(_paper_html(t["paper"], [f for f in r["findings"] if f["task"] == task]))
        if "distill" in t and "distill" in figures[task]:
            parts.append(f"<h3>Beyond the paper: distillation into known mechanisms — {_e(task)}</h3><figure>"
                         f"{_img(figures[task]['distill'], f'{task} distill')}</figure>")
            if "ladder" in figures[task]:
                parts.append(f"<figure>{_img(figures[task]['ladder'], f'{task} ladder')}<figcaption>The ladder: "
                             "learned L, the extracted surrogate (gated, as a member of the mechanism family), the "
                             "mechanism bound U and the best tuned baseline B, mean log loss with 95 % paired-"
                             "bootstrap intervals over the test seeds.</figcaption></figure>")
            parts.append(distill_html(t["distill"]))
        ev = t["evidence"]
        parts.append(f"<p class='small'>Analyses on {_e(ev['n_runs'])} analysis runs × {_e(ev['steps'])} steps "
                     f"({_e(ev['n_coordinates'])} coordinates each; {_e(ev['converged_runs'])} converged); α_eff: "
                     f"{_e(ev['alpha_eff_method'])}.</p>")
    parts.append("</body></html>")
    text = "\n".join(parts)
    with io.atomic_write(path, "w") as f:
        f.write(text)
    return path
