"""Generalization table: each shipped reference optimizer outside its training distribution against Adam tuned there.

    python benchmarks/generalization.py [--tasks linreg rosenbrock two_moons] [--test-seeds 128] [--tuning-seeds N]
                                        [--only VARIANT ...] [--json rows.json]
    python benchmarks/generalization.py --from-json rows.json     # the table again, from saved rows

Every row is :func:`lorex.benchmark.run_benchmark` on ``lorex.tasks.make(task, **overrides)``: Adam tuned on the
variant's tuning seeds (the task policy's count unless ``--tuning-seeds``) over its whole learning-rate × b1 grid
(``search="grid"``: every point on every seed, as the table in BENCHMARKS.md was made), then Adam
and ``lorex.load_optimizer(task)`` (the shipped reference, trained on the task's defaults with horizon 200) evaluated
on the same test seeds (128, a stream disjoint from the tuning one). "margin" is (Adam − learned) / s.e. of the
difference on the mean log loss (positive: the learned optimizer is better); a diverged run makes a mean infinite.
The first row of each task is its training distribution, for reference. Prints a markdown table. Cost: about 580 s
of CPU time on 2 cores (17 min wall on a shared machine), 80 % of it the five two_moons rows; ``--tasks linreg
rosenbrock`` takes about 3 min.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import lorex
from lorex import tasks
from lorex.benchmark import run_benchmark

# (name, config overrides): the training distribution first, then what the optimizer never met
VARIANTS = {
    "linreg": [
        ("trained on: n=5, m=10, λ in [1e-3, 1], 200 steps", {}),
        ("5x horizon: 1000 steps", {"steps": 1000}),
        ("larger: n=20, m=40", {"n": 20, "m": 40}),
        ("ill-conditioned: λ in [1e-5, 1]", {"lambda_min": 1e-5}),
        ("noisy targets: noise=0.1", {"noise": 0.1}),
    ],
    "rosenbrock": [
        ("trained on: start in [-2, 2] x [-1, 3], 200 steps", {}),
        ("5x horizon: 1000 steps", {"steps": 1000}),
        ("wider starts: [-3, 3] x [-2, 8]", {"x_range": (-3.0, 3.0), "y_range": (-2.0, 8.0)}),
        ("steeper valley: b=1000", {"b": 1000.0}),
    ],
    "two_moons": [
        ("trained on: MLP 32-32, 256 points, 200 steps", {}),
        ("wider network: 64-64", {"hidden": (64, 64)}),
        ("deeper network: 32-32-32-32", {"hidden": (32, 32, 32, 32)}),
        ("more points: 1024", {"n_points": 1024}),
        ("5x horizon: 1000 steps", {"steps": 1000}),
    ],
}


def fmt_pm(s: dict, spec: str = ".3f") -> str:
    return "inf (diverged)" if not math.isfinite(s["mean"]) else f"{s['mean']:{spec}} ± {s['se']:{spec}}"


def fmt_final(s: dict) -> str:
    """Final loss: mean ± s.e. (median), the median showing what a typical run reaches when a few runs dominate."""
    return f"{fmt_pm(s, '.2g')} ({s['median']:.2g})"


def row(task: str, name: str, overrides: dict, *, test_seeds: int, tuning_seeds: int | None) -> dict:
    family = tasks.make(task, **overrides)
    t0 = time.perf_counter()
    res = run_benchmark(family, test_seeds=test_seeds, tuning_seeds=tuning_seeds, optimizers=("adam",),
                        learned={"learned": lorex.load_optimizer(task)}, progress=False, search="grid")
    opt = res["optimizers"]
    return {"task": task, "variant": name, "overrides": overrides, "steps": res["steps"],
            "tuning_seeds": res["tuning_seeds"], "test_seeds": res["test_seeds"],
            "learned": {k: opt["learned"][k] for k in ("mean_log_loss", "final_loss", "diverged")},
            "adam": {k: opt["adam"][k] for k in ("mean_log_loss", "final_loss", "diverged", "hyperparameters",
                                                  "warnings")},
            "comparison": res["comparison"]["learned"], "wall_seconds": time.perf_counter() - t0}


def table(rows: list[dict]) -> str:
    lines = ["| task | variant | learned mean log loss | tuned Adam mean log loss | margin (s.e.) | learned final loss "
             "(median) | Adam final loss (median) | Adam lr, b1 | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["comparison"]["mean_log_loss"]["margin_in_se"]
        hp = r["adam"]["hyperparameters"]
        edge = " (grid edge)" if r["adam"]["warnings"] else ""
        lines.append(
            f"| {r['task']} | {r['variant']} | {fmt_pm(r['learned']['mean_log_loss'])} | "
            f"{fmt_pm(r['adam']['mean_log_loss'])} | {'n/a' if m is None else f'{m:+.1f}'} | "
            f"{fmt_final(r['learned']['final_loss'])} | {fmt_final(r['adam']['final_loss'])} | "
            f"{hp['learning_rate']:.3g}, {hp['b1']:g}{edge} | {r['wall_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--test-seeds", type=int, default=128)
    ap.add_argument("--tuning-seeds", type=int, default=None, help="default: the task policy's")
    ap.add_argument("--only", nargs="+", default=None, help="variants whose name starts with one of these")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--from-json", default=None, help="only print the table of rows written by --json")
    args = ap.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            print(table(json.load(f)))
        return
    rows = []
    for task in args.tasks:
        for name, overrides in VARIANTS[task]:
            if args.only and not any(name.startswith(o) for o in args.only):
                continue
            rows.append(row(task, name, overrides, test_seeds=args.test_seeds, tuning_seeds=args.tuning_seeds))
            print(f"done: {task} / {name} ({rows[-1]['wall_seconds']:.0f} s)", flush=True)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
