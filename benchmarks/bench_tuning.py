"""Baseline tuning: the full grid against successive halving, per task and optimizer, in one process.

Run by hand (not in CI):  python benchmarks/bench_tuning.py [--tasks linreg rosenbrock two_moons] [--warm] [--md FILE]

For each task (its shipped tuning seeds and grids, root seed 0) and optimizer, ``lorex.baselines.tune`` runs with
``search="grid"`` and then ``search="halving"``. Times are wall seconds of the first call (compilation included,
as in a fresh ``lorex reproduce`` without the persistent compilation cache, which this script leaves off) and, with
``--warm``, of a second call (compiled; what a run with a warm compilation cache pays). The ratio is grid / halving
time within this run. ``runs`` counts the tuning runs (grid point × seed) each search evaluated. ``same`` says whether
the two searches selected the same hyperparameters; ``max |Δ|`` is the largest difference of a run's objective
between the two searches' evaluations of the same (point, seed) (0 = bitwise equal), which is what makes the halving
search's final ranking that of the grid. Exits 1 if any selection differs.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

import lorex
from lorex import baselines, seeds
from lorex.baselines import DEFAULT_OPTIMIZERS, default_tuning_seeds, tune


def timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def per_run_diff(optimizer, family, grid, keys, halving) -> float:
    """Largest |grid - halving| over the runs halving evaluated (recomputed with the grid's compiled call, cached)."""
    import jax.numpy as jnp

    full = np.asarray(baselines._grid_objective(optimizer, family, family.steps)(
        jnp.asarray(grid.learning_rates, jnp.float32), jnp.asarray(grid.second, jnp.float32), keys), np.float64)
    per_run, ran = baselines._halving(optimizer, family, family.steps, grid, keys)
    both = ran & np.isfinite(full) & np.isfinite(per_run)
    return float(np.max(np.abs(full - per_run)[both])) if both.any() else 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["linreg", "rosenbrock", "two_moons"])
    p.add_argument("--optimizers", nargs="+", default=list(DEFAULT_OPTIMIZERS))
    p.add_argument("--warm", action="store_true", help="also time a second (compiled) call of each search")
    p.add_argument("--check-runs", action="store_true",
                   help="also report max |Δ| of the per-run objectives (reruns the halving search: slower)")
    p.add_argument("--md", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")  # grid-edge warnings are the same for both searches and not the point here

    head = ["task", "optimizer", "grid selection", "halving selection", "same", "grid runs", "halving runs",
            "grid s", "halving s", "ratio"]
    if args.warm:
        head += ["grid s (warm)", "halving s (warm)", "ratio (warm)"]
    if args.check_runs:
        head += ["max |Δ|"]
    rows, all_same = [], True
    for task in args.tasks:
        family = lorex.tasks.make(task)
        keys = seeds.keys(0, "tuning", default_tuning_seeds(family))
        tot = np.zeros(4)
        for name in args.optimizers:
            g, tg = timed(lambda: tune(name, family, keys, search="grid"))
            h, th = timed(lambda: tune(name, family, keys, search="halving"))
            warm = []
            if args.warm:
                warm = [timed(lambda: tune(name, family, keys, search=s))[1] for s in ("grid", "halving")]
                tot[2:] += warm
            tot[:2] += (tg, th)
            same = g.hyperparameters == h.hyperparameters
            all_same &= same
            fmt = lambda t: ", ".join(f"{k}={v:.4g}" for k, v in t.hyperparameters.items())  # noqa: E731
            row = [task, name, fmt(g), fmt(h), "yes" if same else "NO", str(g.runs), str(h.runs),
                   f"{tg:.2f}", f"{th:.2f}", f"{tg / th:.2f}"]
            if args.warm:
                row += [f"{warm[0]:.2f}", f"{warm[1]:.2f}", f"{warm[0] / warm[1]:.2f}"]
            if args.check_runs:
                row += [f"{per_run_diff(name, family, g.grid, keys, h):.2g}"]
            rows.append(row)
            print(" | ".join(row), flush=True)
        total = [task, "**all**", "", "", "", "", "", f"{tot[0]:.2f}", f"{tot[1]:.2f}", f"{tot[0] / tot[1]:.2f}"]
        if args.warm:
            total += [f"{tot[2]:.2f}", f"{tot[3]:.2f}", f"{tot[2] / tot[3]:.2f}"]
        if args.check_runs:
            total += [""]
        rows.append(total)
        print(" | ".join(total), flush=True)
    md = "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                   + ["| " + " | ".join(r) + " |" for r in rows])
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
