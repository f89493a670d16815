"""Matplotlib basics shared by every figure lorex draws (headless backend, saving, loss curves, axes).

Each figure function writes PNG and PDF and returns their paths.
"""

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


def symlog_axis(ax, lo: float, hi: float, decades: int = 4) -> None:
    """Symmetric log x axis from −hi to hi, linear inside ±lo, with at most ``decades`` labelled decades per side."""
    ax.set_xscale("symlog", linthresh=lo, linscale=0.3)
    k_lo, k_hi = int(np.ceil(np.log10(lo))), int(np.floor(np.log10(hi)))
    step = max(1, int(np.ceil((k_hi - k_lo + 1) / decades)))
    ks = list(range(k_hi, k_lo - 1, -step))[::-1]
    ticks = [-(10.0**k) for k in ks[::-1]] + [0.0] + [10.0**k for k in ks]
    ax.set_xticks(ticks, [f"−1e{k}" for k in ks[::-1]] + ["0"] + [f"1e{k}" for k in ks], fontsize=7)
    ax.minorticks_off()
