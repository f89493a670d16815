"""Meta-step time, throughput, FLOP utilization and memory of lorex meta-training.

Run by hand (not in CI):  python benchmarks/bench_meta_step.py [--tasks ...] [--hidden 32 64 128 256] [--md FILE]

* time: median wall time of ``--repeat`` meta-steps after compilation (block_until_ready);
* throughput: coordinate-steps per second = batch × T × (optimizee parameters) / time (forward + backward);
* FLOPs: counted analytically for the GRU matmuls (2·3H·(H + D) per coordinate-step, times 3 passes: forward,
  two backward matmuls; times 4 with rematerialization), which dominate; XLA's cost analysis is printed beside it
  but counts a scan body once, not T times;
* utilization: achieved GRU FLOP/s over the peak float32 matmul FLOP/s measured in the same process just before;
* memory: XLA's memory analysis of the compiled step (temporaries + arguments + outputs).

Before/after mode:  python benchmarks/bench_meta_step.py --before OLD/src [--configs default paper32 linreg32]
[--repeat 10]  times this checkout's meta-step against another checkout's (``OLD/src``, e.g. a ``git worktree`` of
an earlier commit) on the same configs. Each side runs in its own process (its own ``lorex``); the two processes
take meta-steps in turn (before, after, before, …), so a machine shared with other jobs slows both alike, and the
ratio is of the medians. Both start from the same initial state and see the same problem keys; the table gives the
largest difference of their parameters (relative to the largest parameter) after the first and after the last
meta-step, and each process's peak resident memory (VmHWM, compilation included).
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from lorex import meta
from lorex.evaluate import problem_and_params


def matmul_peak(n: int, repeat: int = 10) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f(a).block_until_ready()
        ts.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(ts)


def n_params(family) -> int:
    _, p = problem_and_params(family, jax.random.PRNGKey(0))
    return ravel_pytree(p)[0].size


def bench(task: str, hidden: int, remat: bool, batch: int, repeat: int, unroll: int | None = None,
          task_overrides: tuple = ()) -> dict:
    cfg = meta.default_config(task, hidden=hidden, remat=remat, batch=batch, unroll=unroll,
                              task_overrides=task_overrides)
    family = cfg.family()
    st = meta.init_state(cfg)
    step = meta.make_meta_step(cfg, family)
    keys = meta.step_keys(cfg, 0)
    t0 = time.perf_counter()
    compiled = step.lower(st.params, st.opt_state, keys).compile()
    t_compile = time.perf_counter() - t0
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        xla_flops = float(cost.get("flops", float("nan")))
    except Exception:  # cost analysis is optional per backend
        xla_flops = float("nan")
    try:
        m = compiled.memory_analysis()
        mem = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
    except Exception:
        mem = float("nan")
    params, opt_state = st.params, st.opt_state
    params, opt_state, loss = step(params, opt_state, keys)  # warm-up
    jax.block_until_ready(loss)
    ts = []
    for i in range(repeat):
        t = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, meta.step_keys(cfg, i + 1))
        jax.block_until_ready((params, loss))
        ts.append(time.perf_counter() - t)
    sec = statistics.median(ts)
    T, N, D = cfg.horizon(), n_params(family), cfg.lopt_config().input_dim
    coord_steps = batch * T * N
    gru_flops = coord_steps * 2 * 3 * hidden * (hidden + D) * (4 if remat else 3)
    return {"task": task, "hidden": hidden, "remat": remat, "batch": batch, "T": T, "params": N,
            "seconds": sec, "compile_seconds": t_compile, "coord_steps_per_s": coord_steps / sec,
            "gru_flops": gru_flops, "gru_flops_per_s": gru_flops / sec, "xla_flops": xla_flops,
            "memory_bytes": mem}


# Before/after configs: name -> default_config arguments (the task's shipped defaults, then these).
COMPARE_CONFIGS = {
    "default": ("two_moons", {}),  # two moons as shipped: GRU-16, 8 problems, first order
    "paper32": ("two_moons", {"hidden": 32, "batch": 32}),  # two moons GRU-32, 32 problems, first order
    "linreg32": ("linreg", {"hidden": 32, "batch": 32}),  # second order
    "linreg256": ("linreg", {"hidden": 256, "batch": 32}),
}


def append_md(path: str | None, head: str, rows: list[str]) -> None:
    """Append the table ``rows`` under the line ``head`` to the markdown file ``path`` (nothing when None)."""
    if path:
        with open(path, "a") as f:
            f.write(f"\n{head}\n\n" + "\n".join(rows) + "\n")


def proc_status_kib(field: str) -> int:
    """A memory field of this process's /proc/self/status (e.g. VmRSS, VmHWM) in KiB; -1 where there is none."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    kib = proc_status_kib("VmHWM")
    return kib / 1024 if kib >= 0 else float("nan")


def worker(name: str) -> None:
    """One side of the before/after comparison: compile, then one meta-step per line read from stdin."""
    task, fields = COMPARE_CONFIGS[name]
    cfg = meta.default_config(task, **fields)
    st = meta.init_state(cfg)
    step = meta.make_meta_step(cfg, cfg.family())
    params, opt_state = st.params, st.opt_state
    t0 = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, meta.step_keys(cfg, 0))
    jax.block_until_ready(loss)
    print(json.dumps({"compile_and_first": time.perf_counter() - t0,
                      "params": [float(v) for v in ravel_pytree(params)[0]]}), flush=True)
    i = 1
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, meta.step_keys(cfg, i))
        jax.block_until_ready((params, loss))
        print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)
        i += 1
    flat = [float(v) for v in ravel_pytree(params)[0]]
    print(json.dumps({"params": flat, "peak_rss_mib": peak_rss_mib()}), flush=True)


def compare(before_src: str, names: list[str], repeat: int) -> list[str]:
    here = str(Path(__file__).resolve().parents[1] / "src")
    rows = ["| config | before s/step | after s/step | speed-up | before peak RSS MiB | after peak RSS MiB | "
            "max rel. param difference after 1 / after all meta-steps |", "|---|---|---|---|---|---|---|"]
    for name in names:
        procs, first = {}, {}
        for side, src in (("before", before_src), ("after", here)):
            env = {**os.environ, "PYTHONPATH": src}
            procs[side] = subprocess.Popen([sys.executable, __file__, "--worker", name], env=env, text=True,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            first[side] = json.loads(procs[side].stdout.readline())  # compiled (one side at a time)
        times = {side: [] for side in procs}
        for _ in range(repeat):
            for side, p in procs.items():
                p.stdin.write("step\n")
                p.stdin.flush()
                times[side].append(json.loads(p.stdout.readline())["seconds"])
        end = {}
        for side, p in procs.items():
            p.stdin.write("quit\n")
            p.stdin.flush()
            end[side] = json.loads(p.stdout.readline())
            p.wait()
        def rel(d):
            a, b = (jnp.asarray(d[s]["params"]) for s in ("before", "after"))
            return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))

        tb, ta = statistics.median(times["before"]), statistics.median(times["after"])
        line = (f"| {name} ({COMPARE_CONFIGS[name][0]} {COMPARE_CONFIGS[name][1] or 'defaults'}) | {tb:.3f} | "
                f"{ta:.3f} | {tb / ta:.2f}× | {end['before']['peak_rss_mib']:.0f} | "
                f"{end['after']['peak_rss_mib']:.0f} | {rel(first):.1e} / {rel(end):.1e} |")
        print(line, flush=True)
        rows.append(line)
    return rows


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return worker(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="SRC", help="before/after mode: the src folder of the checkout to compare")
    ap.add_argument("--configs", nargs="+", default=["default", "paper32", "linreg32"], choices=sorted(COMPARE_CONFIGS))
    ap.add_argument("--tasks", nargs="+", default=["linreg", "rosenbrock", "two_moons"])
    ap.add_argument("--hidden", nargs="+", type=int, default=[32, 64, 128, 256])
    ap.add_argument("--remat", nargs="+", default=["on", "off"], choices=["on", "off"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--peak-n", type=int, default=2048)
    ap.add_argument("--unroll", nargs="+", type=int, default=[None], help="horizons T (default: the task's)")
    ap.add_argument("--set", nargs="+", default=[""], metavar="FIELD=VALUE",
                    help="task overrides to sweep, one run each (e.g. n=5,m=10 n=50,m=100)")
    ap.add_argument("--md", help="append a markdown table to this file")
    args = ap.parse_args()
    if args.before:
        head = (f"before/after: {args.repeat} meta-steps each, taken in turn; backend {jax.default_backend()}, "
                f"{os.cpu_count()} CPU(s), jax {jax.__version__}")
        print(head, flush=True)
        rows = compare(args.before, args.configs, args.repeat)
        append_md(args.md, head, rows)
        return
    peak = matmul_peak(args.peak_n)
    dev = jax.devices()[0]
    head = (f"backend {jax.default_backend()} ({dev.device_kind}, {len(jax.devices())} device(s)), jax "
            f"{jax.__version__}; float32 matmul peak {peak / 1e9:.1f} GFLOP/s ({args.peak_n}²)")
    print(head)
    rows = ["| task | H | remat | batch×T×params | s/meta-step | coord-steps/s | GRU GFLOP/s | utilization | "
            "memory MiB | compile s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for task, h, r, unroll, override in itertools.product(args.tasks, args.hidden, args.remat, args.unroll, args.set):
        pairs = [item.partition("=") for item in override.split(",") if item]
        overrides = tuple((k, ast.literal_eval(v)) for k, _, v in pairs)
        res = bench(task, h, r == "on", args.batch, args.repeat, unroll, overrides)
        name = f"{task} {override}".strip()
        line = (f"| {name} | {h} | {r} | {res['batch']}×{res['T']}×{res['params']} | {res['seconds']:.4f} | "
                f"{res['coord_steps_per_s']:.3g} | {res['gru_flops_per_s'] / 1e9:.1f} | "
                f"{res['gru_flops_per_s'] / peak:.2f} | {res['memory_bytes'] / 2**20:.0f} | "
                f"{res['compile_seconds']:.1f} |")
        print(line, flush=True)
        rows.append(line)
    append_md(args.md, head, rows)


if __name__ == "__main__":
    main()
