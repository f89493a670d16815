"""The paper's figures, one function per figure; each writes PNG and PDF and returns their paths."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jax

import numpy as np

from lorex.plotting import COLORS, plot_curves, plt, save
from lorex.tasks.base import task_name

# ----------------------------------------------------------------------------------------- the paper's figures
# Each takes the benchmark result or the (numbers, arrays) of :func:`lorex.report.analyze.analyze_task`.

BASELINES_SHOWN = ("momentum", "rmsprop", "adam")
ARM_COLORS = {1: "tab:blue", -1: "tab:orange"}



def task_schematic(ax, family) -> None:
    """The task itself, as in the top row of the paper's Figure 1: an ill-conditioned quadratic's contours (linear
    regression), the Rosenbrock valley, or the two-moons data; a user task gets its name only."""
    from lorex.tasks.digits import Digits
    from lorex.tasks.linreg import Linreg
    from lorex.tasks.rosenbrock import Rosenbrock
    from lorex.tasks.two_moons import TwoMoons

    if isinstance(family, Linreg):
        lo, hi = family.lambda_min, family.lambda_max
        x, y = np.meshgrid(np.linspace(-1, 1, 200), np.linspace(-1, 1, 200))
        f = 0.5 * (hi * x**2 + max(lo, hi / 30) * y**2)
        ax.contour(x, y, f, levels=np.geomspace(f.max() * 1e-3, f.max(), 10), cmap="viridis", linewidths=0.8)
        ax.set_title(f"linear regression: Hessian eigenvalues in [{lo:g}, {hi:g}]", fontsize=9)
        ax.set_xlabel("top eigendirection")
        ax.set_ylabel("another eigendirection (squeezed)")
    elif isinstance(family, Rosenbrock):
        x, y = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
        f = (family.a - x) ** 2 + family.b * (y - x**2) ** 2
        ax.contour(x, y, np.log10(f + 1e-3), levels=15, cmap="viridis", linewidths=0.8)
        ax.plot([family.a], [family.a**2], "*", ms=12, color="tab:red", mec="k", label="minimum")
        ax.set_title(f"Rosenbrock (a = {family.a:g}, b = {family.b:g}), log contours", fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend(frameon=False, fontsize=7)
    elif isinstance(family, TwoMoons):
        data = family.sample(jax.random.PRNGKey(0))
        xy, lab = np.asarray(data["x"]), np.asarray(data["y"])
        for c, col in ((0, "tab:blue"), (1, "tab:orange")):
            ax.plot(xy[lab == c, 0], xy[lab == c, 1], "o", ms=2.5, color=col, label=f"class {c}")
        ax.set_title(f"two moons: MLP 2→{'→'.join(map(str, family.hidden))}→1", fontsize=9)
        ax.legend(frameon=False, fontsize=7)
    elif isinstance(family, Digits):
        x = np.asarray(family._arrays()["x_train"][:16], np.float64)
        side = x.shape[1]
        tiles = x.reshape(4, 4, side, side).transpose(0, 2, 1, 3).reshape(4 * side, 4 * side)
        ax.imshow(tiles, cmap="gray_r")
        ax.set_title(f"digits: CNN, {side}×{side} images, minibatches of {family.batch}", fontsize=9)
        ax.set_axis_off()
    else:
        ax.text(0.5, 0.5, task_name(family), ha="center", va="center")
        ax.set_axis_off()


def task_performance_figure(result: dict, stem, family=None) -> list[Path]:
    """Figure 1: the task (schematic), loss curves (mean ± s.e. over the test seeds) of the learned optimizer and the
    tuned Momentum, RMSProp and Adam; beside them the final loss and the mean log loss of every optimizer."""
    rows = result["optimizers"]
    shown = [n for n, r in rows.items() if r["kind"] == "learned" or n in BASELINES_SHOWN]
    fig, (ax0, ax, ax2, ax3) = plt.subplots(1, 4, figsize=(17, 3.6),
                                            gridspec_kw={"width_ratios": [1.2, 2.2, 1, 1]})
    task_schematic(ax0, family)
    plot_curves(ax, result, names=shown)
    names = list(rows)
    y = np.arange(len(names))
    for axis, metric, label, log in ((ax2, "final_loss", "final loss", True),
                                     (ax3, "mean_log_loss", "mean log loss over the run", False)):
        for i, n in enumerate(names):
            m, se = rows[n][metric]["mean"], rows[n][metric]["se"]
            if m is None or not np.isfinite(m):
                continue
            color = "tab:red" if rows[n]["kind"] == "learned" else COLORS.get(n, "k")
            axis.errorbar([m], [i], xerr=[[min(se, m * 0.999) if log else se], [se]], fmt="o", color=color)
        axis.set_yticks(y, names)
        axis.invert_yaxis()
        axis.set_xlabel(f"{label} (mean ± s.e.)")
        if log:
            axis.set_xscale("log")
    ax2.set_title("final loss")
    ax3.set_title("mean log loss")
    fig.tight_layout()
    return save(fig, stem)


def _not_applicable(ax, finding: dict | None, what: str) -> None:
    reason = (finding or {}).get("reason") or "no valid operating point"
    ax.text(0.5, 0.5, f"{what}: not applicable\n\n" + textwrap.fill(reason, 45), ha="center", va="center",
            fontsize=7, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def momentum_figure(numbers: dict, arr: dict, stem, finding: dict | None = None) -> list[Path]:
    """Figure 2: late states near the convergence fixed point (PCA); update functions along the slow mode over the
    states visited along it; linearization eigenvalues with the unit circle; α_i against β_i with the aggregate heavy
    ball (Σα_i, β_eff) and Polyak's optimum (linear regression)."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))
    ax = axes[0]
    lp = np.asarray(arr["late_proj"])  # (L, C, 2)
    for c in range(lp.shape[1]):
        ax.plot(lp[:, c, 0], lp[:, c, 1], color="tab:gray", lw=0.7, alpha=0.6,
                label="late states (one coordinate each)" if c == 0 else None)
    fp = np.asarray(arr["final_proj"])
    ax.plot(fp[:, 0], fp[:, 1], "o", ms=3, color="tab:blue", label="final states")
    if arr["star_proj"] is not None:
        sp = np.asarray(arr["star_proj"])
        ax.plot([sp[0]], [sp[1]], "*", ms=14, color="tab:red", mec="k", label="convergence fixed point")
    v = arr["late_var"]
    ax.set_xlabel(f"PC 1 ({v[0]:.0%} var.)")
    ax.set_ylabel(f"PC 2 ({v[1]:.0%} var.)" if len(v) > 1 else "PC 2")
    ax.set_title("states near the end of optimization")
    ax.legend(frameon=False, fontsize=7)
    if arr["eigenvalues"] is None:
        for a in axes[1:]:
            _not_applicable(a, finding, "linearization")
        fig.suptitle(f"{arr['task']}: momentum", y=1.02)
        fig.tight_layout()
        return save(fig, stem)

    ax = axes[1]
    offs, g, U = arr["along_offsets"], arr["along_grads"], np.asarray(arr["along_updates"])
    cmap = plt.get_cmap("viridis")
    for j, s in enumerate(offs):
        ax.plot(g, U[j], color=cmap(j / max(1, len(offs) - 1)), label=f"s = {s:+.2g}")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("gradient g (to the 99th percentile met)")
    ax.set_ylabel("update U(h* + s·r, g)")
    ax.set_title(f"update along slow mode {arr['along_mode']}\n(s spans the visited states, 1st–99th pct.)",
                 fontsize=9)
    ax.legend(frameon=False, fontsize=6, ncol=2)

    ax = axes[2]
    lam = np.asarray(arr["eigenvalues"])
    t = np.linspace(0, 2 * np.pi, 400)
    ax.plot(np.cos(t), np.sin(t), color="k", lw=0.8, label="unit circle")
    ax.plot(lam.real, lam.imag, "o", ms=4, color="tab:blue", label="eigenvalues λ_i")
    if arr["dominant"] is not None:
        d = lam[arr["dominant"]]
        ax.plot([d.real], [d.imag], "o", ms=9, mfc="none", mec="tab:red", mew=2, label="dominant momentum mode")
    ax.set_aspect("equal")
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    ax.set_title("linearization at the fixed point")
    ax.legend(frameon=False, fontsize=7, loc="lower left")

    ax = axes[3]
    al = np.asarray(arr["alphas"])
    real = np.abs(lam.imag) <= 1e-9
    ax.plot(lam.real[real], al.real[real], "o", ms=4, color="tab:blue", label="real modes")
    if (~real).any():
        ax.plot(lam.real[~real], al.real[~real], "o", ms=4, mfc="none", color="tab:purple",
                label="complex modes (real parts)")
    if arr["heavy_ball"] is not None:
        a_hb, b_hb = arr["heavy_ball"]
        ax.plot([b_hb], [a_hb], "D", ms=10, color="tab:red", mec="k",
                label=f"aggregate heavy ball (β_eff, Σα) = ({b_hb:.3f}, {a_hb:.3g})")
    if arr["polyak"] is not None:
        a_s, b_s = arr["polyak"]
        ax.plot([b_s], [a_s], marker="*", ms=16, color="gold", mec="k", ls="none",
                label=f"Polyak (β*, α*) = ({b_s:.3f}, {a_s:.3g})")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("momentum β_i = λ_i")
    ax.set_ylabel("learning rate α_i")
    ax.set_title("momentum terms α_i vs β_i")
    ax.legend(frameon=False, fontsize=7)
    fig.suptitle(f"{arr['task']}: momentum", y=1.02)
    fig.tight_layout()
    return save(fig, stem)


def clipping_figure(numbers: dict, arr: dict, stem, finding: dict | None = None) -> list[Path]:
    """Figure 3: how far the update moves, |U(h₀, g) − U(h₀, 0)| for g > 0 and g < 0, against |g| on a log axis;
    below it, on the same axis, the share of the gradients met per decade of |g|."""
    c = numbers["clipping"]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [1.4, 1]})
    g, U = np.asarray(arr["clip_grads"]), np.asarray(arr["clip_updates"], np.float64)
    u0 = np.interp(0.0, g, U)
    for side, name, color in ((1, "g > 0", "tab:blue"), (-1, "g < 0", "tab:orange")):
        m = side * g > 0
        ax.plot(np.abs(g[m]), np.abs(U[m] - u0), color=color, lw=2, label=f"|U(h0, g) − U(h0, 0)|, {name}")
    gm = np.asarray(arr["grads"], np.float64)
    ga = np.abs(gm[gm != 0])
    p1, p99, gmax = arr["met_range"]
    for a in (ax, ax2):
        a.axvspan(p1, p99, color="tab:gray", alpha=0.15, label="1st–99th percentile of |g| met" if a is ax else None)
        a.axvline(gmax, color="tab:gray", ls=":", lw=1, label="largest |g| met" if a is ax else None)
    for v, ls, lab in ((c["g90_pos"], "--", "90 % of saturation within the range met, g > 0"),
                       (c["g90_neg"], "-.", "90 % point, g < 0")):
        if v is not None and np.isfinite(v):
            ax.axvline(v, color="k", ls=ls, lw=1, label=lab)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel("update magnitude")
    ax.set_title(f"update function at h0 (1 − κ = {finding['value']:.3g})" if finding and finding.get("value")
                 is not None else "update function at h0")
    ax.legend(frameon=False, fontsize=7)
    if ga.size:
        edges = np.logspace(np.floor(np.log10(ga.min())), np.ceil(np.log10(ga.max())), 41)
        counts, _ = np.histogram(ga, bins=edges)
        per_decade = counts / ga.size / np.diff(np.log10(edges))
        ax2.stairs(per_decade, edges, fill=True, color="tab:blue", alpha=0.5, label="gradients met")
    ax2.set_xscale("log")
    ax2.set_xlabel("|g| (log)")
    ax2.set_ylabel("share of gradients per decade")
    ax2.legend(frameon=False, fontsize=7)
    fig.suptitle(f"{arr['task']}: clipping", y=1.01)
    fig.tight_layout()
    return save(fig, stem)


def schedule_figure(numbers: dict, arr: dict, stem, finding: dict | None = None) -> list[Path]:
    """Figure 4: the autonomous (zero-gradient) trajectory from h₀ in PCA space; α_eff against iteration along it,
    and at the states visited on the runs (median over coordinates, per run)."""
    s = numbers["schedule"]["autonomous"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.7))
    z = np.asarray(arr["auto_proj"])
    k = np.arange(len(z))
    y = z[:, 1] if z.shape[1] > 1 else np.zeros(len(z))
    ax.plot(z[:, 0], y, color="tab:gray", lw=0.8)
    sc = ax.scatter(z[:, 0], y, c=k, cmap="viridis", s=10)
    ax.plot([z[0, 0]], [y[0]], "s", color="tab:red", ms=8, label="h0")
    fig.colorbar(sc, ax=ax, label="iteration")
    v = arr["auto_var"]
    ax.set_xlabel(f"PC 1 ({v[0]:.0%} var.)")
    ax.set_ylabel(f"PC 2 ({v[1]:.0%} var.)" if len(v) > 1 else "PC 2")
    ax.set_title("autonomous dynamics h ← F(h, 0)")
    ax.legend(frameon=False, fontsize=7)
    a = np.asarray(arr["auto_alpha"])
    tr = np.asarray(arr["traj_alpha"])
    for r in tr:
        ax2.plot(np.arange(len(r)), r, color="tab:blue", lw=0.6, alpha=0.4)
    ax2.plot([], [], color="tab:blue", lw=0.6, label="on the runs (median over coordinates, one line per run)")
    ax2.plot(k, a, color="tab:red", lw=2, label="autonomous (decides)")
    ax2.axvline(s["warmup_length"], color="k", ls="--", lw=1, label=f"autonomous peak at step {s['warmup_length']}")
    top = np.nanmax(np.concatenate([a[np.isfinite(a)], tr[np.isfinite(tr)]])) if np.isfinite(a).any() else 1.0
    if np.all(np.isfinite(a)) and a.min() > 0:
        ax2.set_ylim(0, 1.1 * top)  # from 0, so the size of a change reads honestly
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("effective learning rate α_eff")
    title = "learned schedule"
    if finding and finding.get("verdict") == "not applicable":
        title += " (autonomous measure not applicable)"
    ax2.set_title(title)
    ax2.legend(frameon=False, fontsize=7)
    fig.suptitle(f"{arr['task']}: schedule", y=1.02)
    fig.tight_layout()
    return save(fig, stem)


def adaptation_figure(numbers: dict, arr: dict, stem, finding: dict | None = None) -> list[Path]:
    """Figure 5: on the runs, α_eff against each coordinate's recent RMS gradient (the deciding measure) and its
    slope at each fit step; the S-curve of fixed points under constant gradients (PCA), update functions along it,
    and α_eff on each arm against |g*| beside RMSProp's α/|g*|."""
    tr = numbers["adaptation"]["trajectories"]
    a = numbers["adaptation"]["s_curve"]
    has_sc = "sc_grads" in arr
    fig, axes = plt.subplots(1, 5 if has_sc else 2, figsize=(24 if has_sc else 10, 3.9))
    ax = axes[0]
    x, yv = arr["ad_scatter"]
    x, yv = np.asarray(x) / np.log(10), np.asarray(yv) / np.log(10)
    if x.size > 4000:
        keep = np.linspace(0, x.size - 1, 4000).astype(int)
        x, yv = x[keep], yv[keep]
    ax.plot(x, yv, ".", ms=2, color="tab:blue", alpha=0.4, label="coordinates (all runs)")
    ax.set_xlabel("log10 recent RMS of g")
    ax.set_ylabel("log10 α_eff at the visited state")
    mid = tr["fit_steps"][len(tr["fit_steps"]) // 2]
    ax.set_title(f"on the runs, step {mid}")
    ax.legend(frameon=False, fontsize=7)
    ax = axes[1]
    ax.plot(arr["ad_steps"], arr["ad_slopes"], "o-", color="tab:red", label="slope at each fit step")
    ax.axhline(-1, color="k", ls="--", lw=1, label="RMSProp (−1)")
    ax.axhline(0, color="k", lw=0.5)
    ax.axhline(-0.2, color="tab:gray", ls=":", lw=1, label="threshold (−0.2)")
    ax.set_xlabel("step")
    ax.set_ylabel("log-log slope of α_eff vs recent RMS g")
    ax.set_title(f"median slope {tr['median_slope']:.3g} (decides)" if tr["median_slope"] is not None
                 else "slope not identifiable")
    ax.legend(frameon=False, fontsize=7)
    if has_sc:
        _scurve_panels(fig, axes[2:], a, arr)
    fig.suptitle(f"{arr['task']}: adaptation", y=1.02)
    fig.tight_layout()
    return save(fig, stem)


def _scurve_panels(fig, axes, a, arr):
    g, z, ok = np.asarray(arr["sc_grads"]), np.asarray(arr["sc_proj"]), np.asarray(arr["sc_ok"])
    y = z[:, 1] if z.shape[1] > 1 else np.zeros(len(z))
    gmin = a["grid_min"]
    color = np.sign(g) * np.log10(np.maximum(np.abs(g), gmin) / gmin)
    ax = axes[0]
    ax.plot(z[:, 0], y, color="tab:gray", lw=0.8)
    sc = ax.scatter(z[ok, 0], y[ok], c=color[ok], cmap="coolwarm", s=14, label="converged")
    if (~ok).any():
        ax.scatter(z[~ok, 0], y[~ok], facecolors="none", edgecolors="k", s=14, label="not converged")
    fig.colorbar(sc, ax=ax, label="sign(g*)·log10(|g*|/g_min)")
    v = arr["sc_var"]
    ax.set_xlabel(f"PC 1 ({v[0]:.0%} var.)")
    ax.set_ylabel(f"PC 2 ({v[1]:.0%} var.)" if len(v) > 1 else "PC 2")
    ax.set_title("S-curve: fixed points h*(g*)")
    ax.legend(frameon=False, fontsize=7)
    ax = axes[1]
    cmap = plt.get_cmap("coolwarm")
    picks, gu, U = np.asarray(arr["sc_pick"]), np.asarray(arr["sc_update_grads"]), np.asarray(arr["sc_updates"])
    lim = np.max(np.abs(color)) or 1.0
    for j, gs in enumerate(picks):
        cval = np.sign(gs) * np.log10(max(abs(gs), gmin) / gmin)
        ax.plot(gu, U[j], color=cmap(0.5 + 0.5 * cval / lim), label=f"g* = {gs:+.2g}")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("gradient g")
    ax.set_ylabel("update U(h*(g*), g)")
    ax.set_title("update functions along the S-curve")
    ax.legend(frameon=False, fontsize=6, ncol=2)
    ax = axes[2]
    al = np.asarray(arr["sc_alpha"], np.float64)
    for side, name, slope in ((1, "g* > 0", a["slope_pos"]), (-1, "g* < 0", a["slope_neg"])):
        m = (side * g > 0) & ok & (al > 0)
        lab = f"α_eff, {name}" + (f" (slope {slope:.2f})" if slope is not None and np.isfinite(slope) else "")
        ax.plot(np.abs(g[m]), al[m], "o-", ms=3, color=ARM_COLORS[side], label=lab)
        if m.sum():
            ra = float(np.exp(np.mean(np.log(al[m] * np.abs(g[m])))))
            gg = np.abs(g[side * g > 0])
            ax.plot(gg, ra / gg, ls="--", lw=1, color=ARM_COLORS[side], label=f"RMSProp-like α/|g*|, α = {ra:.2g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    positive = al[ok & (al > 0)]
    if positive.size:
        ax.set_ylim(positive.min() / 10, positive.max() * 10)
    ax.set_xlabel("|g*| (1st–99th percentile of |g| met)")
    ax.set_ylabel("α_eff at h*(g*)")
    note = a.get("not_reported")
    ax.set_title("S-curve α_eff" + (" (slope not reported)" if note else ""))
    ax.legend(frameon=False, fontsize=6)


# ----------------------------------------------------------------------------------------- the population figure

MECHANISM_LABELS = {"momentum": "momentum: β_eff", "clipping": "clipping: 1 − κ",
                    "schedule": "schedule: ln(max/min α_eff)", "adaptation": "adaptation: slope of ln α_eff"}
VERDICT_COLORS = {"present": "tab:green", "absent": "tab:red", "not applicable": "0.55"}


def population_figure(agreements, population: dict, stem) -> list[Path]:
    """The members side by side: per mechanism, each member's deciding number with its 95 % interval, coloured by
    verdict, with the threshold (dashed); not-applicable members marked at the bottom. A fifth panel: each member's
    margin over the best tuned baseline on mean log loss, in standard errors (dotted: the 2-s.e. bar)."""
    fig, axes = plt.subplots(1, len(agreements) + 1, figsize=(3.3 * (len(agreements) + 1), 3.2))
    for ax, a in zip(axes, agreements):
        x = np.arange(a.n)
        for i, (v, iv, verdict) in enumerate(zip(a.values, a.intervals, a.verdicts)):
            c = VERDICT_COLORS[verdict]
            if v is None:
                ax.annotate("n/a", (i, 0), xycoords=("data", "axes fraction"), xytext=(0, 4),
                            textcoords="offset points", ha="center", color=c, fontsize=8)
                continue
            lo, hi = iv if iv is not None else (v, v)
            ax.errorbar([i], [v], yerr=[[max(0.0, v - lo)], [max(0.0, hi - v)]], fmt="o", color=c, capsize=3)
        ax.axhline(a.threshold, color="k", ls="--", lw=0.8)
        ax.set_xticks(x, [str(s) for s in a.seeds])
        ax.set_xlabel("meta-training seed")
        ax.set_title(f"{MECHANISM_LABELS.get(a.mechanism, a.mechanism)}\n{a.summary}", fontsize=9)
        ax.set_xlim(-0.6, a.n - 0.4)
    ax = axes[-1]
    members = population["members"]
    for i, m in enumerate(members):
        c = m["benchmark"]["comparison"].get("mean_log_loss", {})
        if c.get("margin_in_se") is not None:
            ax.bar(i, c["margin_in_se"], color="tab:blue" if c["beats_by_2se"] else "0.6")
    ax.axhline(2.0, color="k", ls=":", lw=0.8)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(np.arange(len(members)), [str(m["seed"]) for m in members])
    ax.set_xlabel("meta-training seed")
    wins = population["wins"]
    ax.set_title(f"margin over best baseline (s.e.)\nmean log loss: {wins['mean_log_loss']} of {len(members)} win",
                 fontsize=9)
    fig.tight_layout()
    return save(fig, stem)
