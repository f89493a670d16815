"""Where one compiled lorex program spends its time, operation by operation (XLA's CPU profile of one call).

Run by hand (not in CI):
  python benchmarks/profile_ops.py meta --config paper32 [--top 15] [--md FILE]
  python benchmarks/profile_ops.py evaluate --task digits --optimizer adam [--seeds 128] [--top 15] [--md FILE]

``meta``: one meta-step of ``lorex.meta.make_meta_step`` for a config of ``bench_meta_step.py`` (``paper32``: two moons
GRU-32, 32 problems). ``evaluate``: the program of ``lorex.evaluate.evaluate`` for a baseline on the test seeds (its
learning rate the middle of the task's range on a log scale, its other hyperparameter the default). The program is
compiled and called once untimed, then one call is recorded with ``jax.profiler``; every operation XLA ran on its CPU
threads is summed over the call (exclusive time: a loop does not count its body; thread time: two threads working at
once count twice) and listed with its calls, share, result shape and the JAX operation it came from. ``ynn_fusion`` is
an operation XLA hands to the YNNPACK library (dots, reductions), ``dot`` one it runs with Eigen, other names are XLA's
own fused loops.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))
from bench_meta_step import COMPARE_CONFIGS, append_md  # noqa: E402

from lorex.baselines import OPTIMIZERS  # noqa: E402

INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\S+) ")


def instructions(hlo_text: str) -> dict[str, tuple[str, str]]:
    """{instruction name: (result shape, the JAX operation it came from)} of a compiled module's text."""
    out = {}
    for line in hlo_text.splitlines():
        m = INSTRUCTION.match(line)
        if m:
            op = re.search(r'op_name="([^"]*)"', line)
            out[m.group(1)] = (m.group(2), op.group(1) if op else "")
    return out


def profile_call(fn, args) -> tuple[float, collections.Counter, collections.Counter]:
    """(wall seconds of one recorded call, thread nanoseconds per operation, calls per operation)."""
    from jax.profiler import ProfileData

    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d)
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        wall = time.perf_counter() - t0
        jax.profiler.stop_trace()
        (path,) = Path(d).rglob("*.xplane.pb")
        data = ProfileData.from_file(str(path))
    ns, calls = collections.Counter(), collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):  # XLA's threads; not Python's
                continue
            # exclusive time: an operation that contains others (a while loop and its body) counts its own time only
            open_ = []  # [name, end, start, time of the events nested in it]
            events = sorted(((ev.start_ns, ev.end_ns, ev.name) for ev in line.events
                             if not ev.name.startswith("ThunkExecutor")),  # the executor running a whole program
                            key=lambda e: (e[0], -e[1]))
            for start, end, name in events + [(float("inf"), float("inf"), None)]:
                while open_ and open_[-1][1] <= start:
                    n, e, s, inner = open_.pop()
                    ns[n] += (e - s) - inner
                    if open_:
                        open_[-1][3] += e - s
                if name is not None:
                    calls[name] += 1
                    open_.append([name, end, start, 0])
    return wall, ns, calls


def meta_program(config: str):
    from lorex import meta

    task, fields = COMPARE_CONFIGS[config]
    cfg = meta.default_config(task, **fields)
    st = meta.init_state(cfg)
    step = meta.make_meta_step(cfg, cfg.family())
    keys = meta.step_keys(cfg, 0)
    text = step.lower(st.params, st.opt_state, keys).compile().as_text()
    state = [st.params, st.opt_state]

    def call(keys):  # the step consumes (donates) its state: each call takes the state the last one returned
        params, opt_state, loss = step(*state, keys)
        state[:] = [params, opt_state]
        return loss

    return call, (keys,), text, f"meta-step {config} ({task} {fields})"


def evaluate_program(task: str, optimizer: str, n_seeds: int):
    from lorex import seeds, tasks
    from lorex.evaluate import ONCE_COMPILER_OPTIONS, run

    family = tasks.make(task)
    factory, _, _, second = OPTIMIZERS[optimizer]
    lr = 10 ** ((family.policy.lr_range[0] + family.policy.lr_range[1]) / 2)
    tx = factory(lr, second)
    keys = seeds.keys(0, "test", n_seeds)
    options = ONCE_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None  # as lorex.evaluate.jit_once
    compiled = jax.jit(jax.vmap(lambda k: run(tx, family, k, family.steps)),
                       compiler_options=options).lower(keys).compile()
    label = f"evaluation of {optimizer} (lr {lr:.3g}) on {task}, {n_seeds} seeds"
    return compiled, (keys,), compiled.as_text(), label


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["meta", "evaluate"])
    ap.add_argument("--config", default="paper32", choices=sorted(COMPARE_CONFIGS), help="meta: the config")
    ap.add_argument("--task", default="digits", help="evaluate: the task")
    ap.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="evaluate: the baseline")
    ap.add_argument("--seeds", type=int, default=128, help="evaluate: test seeds")
    ap.add_argument("--top", type=int, default=15, help="list this many operations")
    ap.add_argument("--md", help="append the markdown table to this file")
    args = ap.parse_args()
    if args.what == "meta":
        fn, call_args, text, label = meta_program(args.config)
    else:
        fn, call_args, text, label = evaluate_program(args.task, args.optimizer, args.seeds)
    jax.block_until_ready(fn(*call_args))  # compiled and run once, untimed
    wall, ns, calls = profile_call(fn, call_args)
    where = instructions(text)
    total = sum(ns.values())
    rows = ["| operation | calls | thread ms | share | result | from |", "|---|---|---|---|---|---|"]
    for name, t in ns.most_common(args.top):
        shape, op = where.get(name, ("", ""))
        op = op.replace("jit(meta_step)/", "").replace("jit(<lambda>)/", "")
        rows.append(f"| `{name}` | {calls[name]} | {t / 1e6:.1f} | {t / total:.1%} | `{shape}` | `{op}` |")
    head = (f"{label}: one call {wall:.2f} s wall, {total / 1e9:.2f} s of XLA thread time in {len(ns)} operations "
            f"(jax {jax.__version__})")
    print(head, *rows, sep="\n")
    append_md(args.md, head, rows)


if __name__ == "__main__":
    main()
