"""Matplotlib figures; each function writes PNG and PDF and returns their paths."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"sgd": "tab:gray", "momentum": "tab:blue", "rmsprop": "tab:green", "adam": "tab:orange"}


def save(fig, stem: str | Path) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in paths:  # metadata without matplotlib's URL, so no file of a report names an external address
        meta = {"Software": None} if p.suffix == ".png" else {"Creator": "lorex (matplotlib)"}
        fig.savefig(p, dpi=130, bbox_inches="tight", metadata=meta)
    plt.close(fig)
    return paths


def plot_curves(ax, result: dict, names=None) -> None:
    """Mean loss ± s.e. against iteration, log scale, one line per optimizer."""
    for name, r in result["optimizers"].items():
        if names is not None and name not in names:
            continue
        mean, se = np.asarray(r["curve_mean"]), np.asarray(r["curve_se"])
        t = np.arange(len(mean))
        learned = r["kind"] == "learned"
        color = "tab:red" if learned else COLORS.get(name)
        ax.plot(t, mean, color=color, lw=2.2 if learned else 1.4, label=name)
        lo = np.clip(mean - se, a_min=mean * 1e-3, a_max=None)
        ax.fill_between(t, lo, mean + se, color=color, alpha=0.2, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (mean ± s.e.)")
    ax.set_title(f"{result['task']}: {result['test_seeds']} test seeds")
    ax.legend(frameon=False)


def performance_figure(result: dict, stem) -> list[Path]:
    fig, ax = plt.subplots(figsize=(5, 3.6))
    plot_curves(ax, result)
    return save(fig, stem)


# ----------------------------------------------------------------------------------------- the paper's figures
# Each takes the benchmark result or the (numbers, arrays) of :func:`lorex.report.analyze.analyze_task`.

BASELINES_SHOWN = ("momentum", "rmsprop", "adam")
ARM_COLORS = {1: "tab:blue", -1: "tab:orange"}


def task_performance_figure(result: dict, stem) -> list[Path]:
    """Figure 1: loss curves (mean ± s.e. over the test seeds) of the learned optimizer and the tuned Momentum,
    RMSProp and Adam; beside them the final loss and the mean log loss of every optimizer (mean ± s.e.)."""
    rows = result["optimizers"]
    shown = [n for n, r in rows.items() if r["kind"] == "learned" or n in BASELINES_SHOWN]
    fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw={"width_ratios": [2.2, 1, 1]})
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


def _mark_polyak(ax, polyak):
    if polyak is not None:
        a_s, b_s = polyak
        ax.plot([b_s], [a_s], marker="*", ms=16, color="gold", mec="k", ls="none",
                label=f"Polyak (β*, α*) = ({b_s:.3f}, {a_s:.3g})")


def momentum_figure(numbers: dict, arr: dict, stem) -> list[Path]:
    """Figure 2: late states near the convergence fixed point (PCA); update functions along the slow mode;
    linearization eigenvalues with the unit circle; α_i against β_i with Polyak's optimum (linear regression)."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))
    ax = axes[0]
    lp = np.asarray(arr["late_proj"])  # (L, C, 2)
    for c in range(lp.shape[1]):
        ax.plot(lp[:, c, 0], lp[:, c, 1], color="tab:gray", lw=0.7, alpha=0.6,
                label="late states (one coordinate each)" if c == 0 else None)
    fp = np.asarray(arr["final_proj"])
    ax.plot(fp[:, 0], fp[:, 1], "o", ms=3, color="tab:blue", label="final states")
    op = np.asarray(arr["others_proj"])
    if len(op) > 1:
        ax.plot(op[:, 0], op[:, 1], "x", color="k", label="other fixed points")
    sp = np.asarray(arr["star_proj"])
    ax.plot([sp[0]], [sp[1]], "*", ms=14, color="tab:red", mec="k", label="convergence fixed point")
    v = arr["late_var"]
    ax.set_xlabel(f"PC 1 ({v[0]:.0%} var.)")
    ax.set_ylabel(f"PC 2 ({v[1]:.0%} var.)" if len(v) > 1 else "PC 2")
    ax.set_title("states near the end of optimization")
    ax.legend(frameon=False, fontsize=7)

    ax = axes[1]
    offs, g, U = arr["along_offsets"], arr["along_grads"], np.asarray(arr["along_updates"])
    cmap = plt.get_cmap("viridis")
    for j, s in enumerate(offs):
        ax.plot(g, U[j], color=cmap(j / max(1, len(offs) - 1)), label=f"s = {s:+.2g}")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("gradient g")
    ax.set_ylabel("update U(h* + s·r, g)")
    ax.set_title(f"update along slow mode {arr['along_mode']}")
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
    if arr["dominant"] is not None:
        k = arr["dominant"]
        ax.plot([lam[k].real], [al[k].real], "o", ms=9, mfc="none", mec="tab:red", mew=2, label="dominant mode")
    _mark_polyak(ax, arr["polyak"])
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("momentum β_i = λ_i")
    ax.set_ylabel("learning rate α_i")
    ax.set_title("momentum terms α_i vs β_i")
    ax.legend(frameon=False, fontsize=7)
    fig.suptitle(f"{arr['task']}: momentum", y=1.02)
    fig.tight_layout()
    return save(fig, stem)


def symlog_axis(ax, lo: float, hi: float, decades: int = 4) -> None:
    """Symmetric log x axis from −hi to hi, linear inside ±lo, with at most ``decades`` labelled decades per side."""
    ax.set_xscale("symlog", linthresh=lo, linscale=0.3)
    k_lo, k_hi = int(np.ceil(np.log10(lo))), int(np.floor(np.log10(hi)))
    step = max(1, int(np.ceil((k_hi - k_lo + 1) / decades)))
    ks = list(range(k_hi, k_lo - 1, -step))[::-1]
    ticks = [-(10.0**k) for k in ks[::-1]] + [0.0] + [10.0**k for k in ks]
    ax.set_xticks(ticks, [f"−1e{k}" for k in ks[::-1]] + ["0"] + [f"1e{k}" for k in ks], fontsize=7)
    ax.minorticks_off()


def clipping_figure(numbers: dict, arr: dict, stem) -> list[Path]:
    """Figure 3: the update function at h₀ over a wide gradient range, beside the density of gradients met."""
    c = numbers["clipping"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.7))
    g, U = np.asarray(arr["clip_grads"]), np.asarray(arr["clip_updates"])
    ax.plot(g, U, color="tab:red", lw=2, label="U(h0, g)")
    symlog_axis(ax, float(np.min(np.abs(g[g != 0]))), float(np.max(np.abs(g))))
    gm = c["max_gradient_met"]
    ax.axvspan(-c["max_negative_gradient_met"], c["max_positive_gradient_met"], color="tab:gray", alpha=0.15,
               label="gradients met")
    for v, lab in ((c["g90_pos"], "90 % of saturation"), (-c["g90_neg"] if c["g90_neg"] else None, None)):
        if v is not None:
            ax.axvline(v, color="k", ls="--", lw=1, label=lab)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("gradient g (symlog)")
    ax.set_ylabel("update U(h0, g)")
    ax.set_title(f"update function at h0 (grid to ±{10 * gm:.3g})")
    ax.legend(frameon=False, fontsize=7)
    edges, dens = np.asarray(arr["density_edges"]), np.asarray(arr["density"])
    ax2.stairs(dens, edges, fill=True, color="tab:blue", alpha=0.5, label="density of |g| met")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    for v, ls, lab in ((c["g90_pos"], "--", "90 % point, g > 0"), (c["g90_neg"], ":", "90 % point, g < 0")):
        if v:
            ax2.axvline(v, color="k", ls=ls, lw=1, label=lab)
    ax2.set_xlabel("|g| (log)")
    ax2.set_ylabel("density")
    ax2.set_title("gradients met on the task")
    ax2.legend(frameon=False, fontsize=7)
    fig.suptitle(f"{arr['task']}: clipping", y=1.02)
    fig.tight_layout()
    return save(fig, stem)


def schedule_figure(numbers: dict, arr: dict, stem) -> list[Path]:
    """Figure 4: the autonomous (zero-gradient) trajectory from h₀ in PCA space; α_eff against iteration."""
    s = numbers["schedule"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.7))
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
    ax2.plot(k, a, color="tab:red", lw=2, label="α_eff")
    ax2.axvline(s["warmup_length"], color="k", ls="--", lw=1, label=f"peak at step {s['warmup_length']}")
    if np.all(np.isfinite(a)) and a.min() > 0:
        ax2.set_ylim(0, 1.1 * a.max())  # from 0, so the size of a change reads honestly
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("effective learning rate α_eff")
    ax2.set_title("learned schedule")
    ax2.legend(frameon=False, fontsize=7)
    fig.suptitle(f"{arr['task']}: schedule", y=1.02)
    fig.tight_layout()
    return save(fig, stem)


def adaptation_figure(numbers: dict, arr: dict, stem) -> list[Path]:
    """Figure 5: the S-curve of fixed points under constant gradients (PCA); update functions at points along it;
    α_eff on each arm against |g*| (log-log) beside RMSProp's α/|g*|."""
    a = numbers["adaptation"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    g, z, ok = np.asarray(arr["sc_grads"]), np.asarray(arr["sc_proj"]), np.asarray(arr["sc_ok"])
    y = z[:, 1] if z.shape[1] > 1 else np.zeros(len(z))
    color = np.sign(g) * np.log10(np.maximum(np.abs(g), a["grid_min"]) / a["grid_min"])
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
        cval = np.sign(gs) * np.log10(max(abs(gs), a["grid_min"]) / a["grid_min"])
        ax.plot(gu, U[j], color=cmap(0.5 + 0.5 * cval / lim), label=f"g* = {gs:+.2g}")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("gradient g")
    ax.set_ylabel("update U(h*(g*), g)")
    ax.set_title("update functions along the S-curve")
    ax.legend(frameon=False, fontsize=6, ncol=2)
    ax = axes[2]
    al = np.asarray(arr["sc_alpha"], np.float64)
    for side, name, slope, ra in ((1, "g* > 0", a["slope_pos"], a["rmsprop_alpha_pos"]),
                                  (-1, "g* < 0", a["slope_neg"], a["rmsprop_alpha_neg"])):
        m = (side * g > 0) & ok & (al > 0)
        lab = f"α_eff, {name} (slope {slope:.2f})" if slope is not None else f"α_eff, {name}"
        ax.plot(np.abs(g[m]), al[m], "o-", ms=3, color=ARM_COLORS[side], label=lab)
        if ra is not None:
            gg = np.abs(g[side * g > 0])
            ax.plot(gg, ra / gg, ls="--", lw=1, color=ARM_COLORS[side],
                    label=f"RMSProp-like α/|g*|, α = {ra:.2g}")
    ax.axvspan(*a["fit_range"], color="tab:gray", alpha=0.12, label="fit range (gradients met)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    positive = al[ok & (al > 0)]
    if positive.size:
        ax.set_ylim(positive.min() / 10, positive.max() * 10)
    ax.set_xlabel("|g*|")
    ax.set_ylabel("α_eff at h*(g*)")
    ax.set_title("learning-rate adaptation")
    ax.legend(frameon=False, fontsize=6)
    fig.suptitle(f"{arr['task']}: adaptation", y=1.02)
    fig.tight_layout()
    return save(fig, stem)
