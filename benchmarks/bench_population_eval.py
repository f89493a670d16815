"""Time and peak memory of evaluating a shipped population (five members) on the 128 test seeds in one call.

    python benchmarks/bench_population_eval.py --task digits
    PYTHONPATH=OTHER_CHECKOUT/src python benchmarks/bench_population_eval.py --task digits   # the same for other code

``lorex.evaluate.evaluate_population`` on the task's test seeds: the first call (compilation included) and a second
call on the same seeds in reverse order (warm), the process's peak resident memory (VmHWM) after both, and the
reference member's mean final loss, so that two checkouts can be compared for speed, memory and numbers. Run it with
nothing else on the machine.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

from lorex import evaluate, lopt, seeds, tasks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_meta_step import peak_rss_mib  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="digits")
    p.add_argument("--test-seeds", type=int, default=128)
    args = p.parse_args()
    family = tasks.make(args.task)
    loaded = [lopt.load_params(args.task, seed=s) for s in lopt.member_dirs(args.task)]
    params, config = [p for p, _, _ in loaded], loaded[0][1]  # members share the reference's architecture
    keys = seeds.keys(0, "test", args.test_seeds)
    t0 = time.perf_counter()
    curves, metrics = evaluate.evaluate_population(params, config, family, keys)
    jax.block_until_ready(curves)
    t1 = time.perf_counter()
    jax.block_until_ready(evaluate.evaluate_population(params, config, family, keys[::-1])[0])
    t2 = time.perf_counter()
    print(f"{args.task}: {len(params)} members x {args.test_seeds} test seeds: first call {t1 - t0:.1f} s, "
          f"second {t2 - t1:.1f} s, peak memory {peak_rss_mib() / 1024:.2f} GiB; "
          f"reference mean final loss {float(np.mean(curves[0, :, -1])):.6g}"
          + "".join(f", {k} {float(np.mean(v[0])):.6g}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
