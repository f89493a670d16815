"""Compile and run time of lorex's evaluation programs at LLVM -O1 (``lorex.evaluate.jit_once``) against XLA's default.

Run by hand (not in CI):  python benchmarks/bench_compile.py [--tasks ...] [--repeat 3] [--md FILE]

Per task, the program of ``lorex.evaluate.evaluate`` (one run per test seed, vmapped, in one compiled call) for tuned-
looking Adam and for the task's shipped learned optimizer on 128 test seeds, compiled twice in this process: with
``jax.jit`` as is (XLA's default backend optimization level) and with ``lorex.evaluate.ONCE_COMPILER_OPTIONS``.
Reported: compile time (lower + compile; JAX's persistent cache is not turned on here), run time (the fastest of
``--repeat`` calls after the first), and how far the two programs' results are apart: the largest difference of a
run's mean log loss, and the mean log loss over the test seeds of each (0 where the curves are bitwise equal; float32
rounding of reordered arithmetic otherwise, which a run near divergence or at losses near the float32 floor
amplifies).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax

from lorex import lopt, seeds, tasks
from lorex.evaluate import ONCE_COMPILER_OPTIONS, mean_log_loss, run

sys.path.insert(0, str(Path(__file__).parent))
from bench_meta_step import append_md  # noqa: E402

ADAM_LR = {"linreg": 0.1, "rosenbrock": 0.01, "two_moons": 0.05, "digits": 0.0178}


def measure(fn, keys, repeat: int, options: dict | None):
    t0 = time.perf_counter()
    compiled = (jax.jit(fn, compiler_options=options) if options else jax.jit(fn)).lower(keys).compile()
    t_compile = time.perf_counter() - t0
    out = np.asarray(compiled(keys))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(keys))
        times.append(time.perf_counter() - t0)
    return t_compile, min(times), out


def mll(curves: np.ndarray) -> np.ndarray:
    return np.asarray(mean_log_loss(curves), np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["linreg", "rosenbrock", "two_moons", "digits"])
    ap.add_argument("--test-seeds", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--md", help="append the markdown table to this file")
    args = ap.parse_args()
    cpu = platform.processor() or platform.machine()
    head = (f"evaluation programs, XLA default vs {ONCE_COMPILER_OPTIONS}: {cpu}, {os.cpu_count()} cores, "
            f"jax {jax.__version__}, {args.test_seeds} test seeds")
    print(head, flush=True)
    rows = ["| task | optimizer | compile default | compile -O1 | run default | run -O1 | run -O1 / default | "
            "largest Δ of a run's mean log loss | mean log loss default / -O1 |",
            "|---|---|---|---|---|---|---|---|---|"]
    totals = np.zeros(4)
    for task in args.tasks:
        family = tasks.make(task)
        keys = seeds.keys(0, "test", args.test_seeds)
        for name, tx in (("adam", optax.adam(ADAM_LR[task])), ("learned", lopt.load_optimizer(task))):
            fn = jax.vmap(lambda k, tx=tx: run(tx, family, k, family.steps))
            c2, r2, out2 = measure(fn, keys, args.repeat, None)
            c1, r1, out1 = measure(fn, keys, args.repeat, ONCE_COMPILER_OPTIONS)
            totals += (c2, c1, r2, r1)
            m2, m1 = mll(out2), mll(out1)
            rows.append(f"| {task} | {name} | {c2:.2f} s | {c1:.2f} s | {r2:.3f} s | {r1:.3f} s | {r1 / r2:.2f} | "
                        f"{np.max(np.abs(m2 - m1)):.1e} | {m2.mean():.4f} / {m1.mean():.4f} |")
            print(rows[-1], flush=True)
    rows.append(f"| all | | {totals[0]:.1f} s | {totals[1]:.1f} s | {totals[2]:.2f} s | {totals[3]:.2f} s | "
                f"{totals[3] / totals[2]:.2f} | | |")
    print("\n" + "\n".join(rows))
    append_md(args.md, head, rows)


if __name__ == "__main__":
    main()
