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
    "performance": "Loss curves (mean ± s.e. over the test seeds) of the learned optimizer and the tuned Momentum, "
                   "RMSProp and Adam; right: final loss and mean log loss of every optimizer (mean ± s.e.).",
    "momentum": "Left to right: states of the last quarter of a run projected on their first two principal "
                "components, with the convergence fixed point; the update function along the dominant slow mode; "
                "the eigenvalues of the linearization at the fixed point with the unit circle; each mode read as a "
                "momentum term (β_i = λ_i, α_i) with Polyak's optimal heavy ball where it is known.",
    "clipping": "The update function at the initial state h0 over ±10× the largest gradient met, and the density "
                "of the gradients the optimizer meets on the task (all steps, analysis seeds).",
    "schedule": "The autonomous (zero-gradient) trajectory from h0 in its PCA plane, and the effective learning "
                "rate α_eff = −dU/dg at g = 0 along it: the learned schedule.",
    "adaptation": "Fixed points h*(g*) under constant gradients of both signs (the S-curve, PCA), update functions at "
                  "points along it, and α_eff at those points against |g*| (log-log) beside RMSProp's α/|g*|.",
}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
.present{color:#0a6b0a;font-weight:600}.absent{color:#a33;font-weight:600}
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
    rows = []
    for name, r in b["optimizers"].items():
        hp = ", ".join(f"{k} = {v:.4g}" for k, v in r["hyperparameters"].items()) or "(learned)"
        fl, ml = r["final_loss"], r["mean_log_loss"]
        rows.append((f"<b>{_e(name)}</b>" if r["kind"] == "learned" else _e(name), _e(hp),
                     f"{_num(fl['mean'], '.3e')} ± {_num(fl['se'], '.1e')}", _num(fl.get("median"), ".3e"),
                     f"{_num(ml['mean'], '.3f')} ± {_num(ml['se'], '.3f')}", _num(r["diverged"])))
    return _table(("optimizer", "tuned hyperparameters", "final loss (mean ± s.e.)", "final loss (median)",
                   "mean log loss (mean ± s.e.)", "diverged"), rows, num_cols=(2, 3, 4, 5))


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
        d = {"implied β (dominant momentum mode)": m["implied_beta"], "implied α": m["implied_alpha"],
             "timescale (steps)": m["implied_timescale"], "Σ α_i (= α_eff at h*)": m["alpha_eff_sum"],
             "unstable modes": m["n_unstable_modes"]}
        if m["polyak"]:
            p = m["polyak"]
            d.update({"Polyak α*": p["alpha_star"], "Polyak β*": p["beta_star"], "β − β*": p["beta_minus_beta_star"],
                      "α / α*": p["alpha_over_alpha_star"], "distance hypot(β − β*, log10 α/α*)": p["distance"]})
        return (_kv(t["fixed_point"]) + "<p class='small'>Convergence fixed point (above); momentum numbers and "
                "the leading eigenvalues (below).</p>" + _kv(d) + _eigen_table(m))
    if name == "clipping":
        return _kv(t["clipping"])
    if name == "schedule":
        return _kv(t["schedule"])
    a = dict(t["adaptation"])
    a["fit_range"] = f"[{a['fit_range'][0]:.3g}, {a['fit_range'][1]:.3g}]"
    return _kv(a)


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
    walls = [(_e(t), *(_num(w.get(k), ".1f") for k in ("optimizer", "benchmark", "analysis", "figures", "distill")))
             for t, w in r["wall_seconds"]["tasks"].items()]
    parts.append(_table(("task", "optimizer (s)", "benchmark (s)", "analysis (s)", "figures (s)", "distill (s)"),
                        walls, num_cols=(1, 2, 3, 4, 5)))

    parts.append("<h2>Findings</h2>")
    rows = []
    for f in r["findings"]:
        cls = "present" if f["present"] else "absent"
        rows.append((_e(f["task"]), _e(f["mechanism"]),
                     f"<span class='{cls}'>{'present' if f['present'] else 'NOT found'}</span>", _e(f["statement"])))
    parts.append(_table(("task", "mechanism", "verdict", "evidence"), rows))
    parts.append("<p>Decision rules, fixed before any result was seen (the analysis is never tuned to agree with "
                 "the paper):</p><ul>" + "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in r["rules"].items())
                 + "</ul>")
    parts.append(f"<p class='small'>{_e(r['notes']['alpha_eff'])}</p>")

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
        if "distill" in t and "distill" in figures[task]:
            parts.append(f"<h3>Beyond the paper: distillation into known mechanisms — {_e(task)}</h3><figure>"
                         f"{_img(figures[task]['distill'], f'{task} distill')}</figure>")
            parts.append(distill_html(t["distill"]))
        tr = t["trajectories"]
        parts.append(f"<p class='small'>Analyses on {_e(tr['n_seeds'])} analysis seeds × {_e(tr['steps'])} steps "
                     f"({_e(tr['n_coordinates'])} coordinates each); α_eff: {_e(tr['alpha_eff_method'])}.</p>")
    parts.append("</body></html>")
    text = "\n".join(parts)
    with io.atomic_write(path, "w") as f:
        f.write(text)
    return path
