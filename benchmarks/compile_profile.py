"""Where a lorex command spends its compile time: every compilation, trace, lowering and persistent-cache hit, per
task and stage.

Run by hand (not in CI):  python benchmarks/compile_profile.py [--md FILE] [--top 10] -- reproduce --out DIR [...]

Runs ``lorex ARGS`` in this process with a listener on JAX's monitoring events: ``backend_compile_duration`` (XLA
compiling one program), ``jaxpr_trace_duration`` and ``jaxpr_to_mlir_module_duration`` (tracing and lowering, done
again in every process), and ``cache_retrieval_time_sec`` (a program read from the persistent compilation cache
instead, counted with the time it took to read and load). The stage of each event is read off the command's
progress lines (``[reproduce] [i/n] task: stage``); other commands count as one stage. ``reproduce`` runs with
``--jobs 1`` (every task in this process, where the listener hears it) unless ``--jobs`` is given. Programs that
compile faster than JAX's ``persistent_cache_min_compile_time_secs`` are not written to the cache, so a second run
compiles them again: the table counts them apart. For cold and warm, run it twice with ``LOREX_COMPILATION_CACHE``
set to the same new folder.

``--every-program`` writes every program to the cache, however fast it compiled (threshold 0): with a new cache folder,
each read from the cache is then a program that this one command compiled before (the same program compiled twice).
Besides the table per stage, the slowest compilations are listed, and the function names by total compile time (JAX
names a program after the function it traced: ``one`` is the per-run function that lorex's evaluation, tuning and
distillation programs vmap; ``add``, ``stack`` and the like are single operations run outside ``jit``).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from pathlib import Path

import jax
import jax.monitoring

sys.path.insert(0, str(Path(__file__).parent))
from bench_meta_step import append_md  # noqa: E402

PROGRESS = re.compile(r"\[reproduce\] \[\d+/\d+\] (\S+): (\w+)")
# the first word of a progress line → the stage of `lorex reproduce`'s wall_seconds it belongs to
STAGES = {"optimizer": "optimizer", "benchmark": "benchmark", "analysis": "analysis", "figures": "figures",
          "population": "population", "paper": "population", "distillation": "distill"}
COMPILE = "/jax/core/compile/backend_compile_duration"
TRACE = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration")
CACHE_READ = "/jax/compilation_cache/cache_retrieval_time_sec"


class StageReader:
    """A stand-in for stderr that passes everything through and keeps the stage named by the last progress line."""

    def __init__(self, stream):
        self.stream, self.stage, self._line = stream, ("-", "-"), ""

    def write(self, s):
        self._line += s
        *lines, self._line = self._line.split("\n")
        for line in lines:
            m = PROGRESS.search(line)
            if m and m.group(2) in STAGES:
                self.stage = (m.group(1), STAGES[m.group(2)])
        return self.stream.write(s)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--md", help="append the markdown tables to this file")
    ap.add_argument("--top", type=int, default=10, help="list this many of the slowest compilations")
    ap.add_argument("--every-program", action="store_true",
                    help="cache every program (threshold 0): with a new cache folder, a cache read is a repeat")
    ap.add_argument("lorex_args", nargs=argparse.REMAINDER, help="-- then the lorex command's arguments")
    args = ap.parse_args()
    lorex_args = args.lorex_args[1:] if args.lorex_args[:1] == ["--"] else args.lorex_args
    if not lorex_args:
        ap.error("give the lorex command after --, e.g. -- reproduce --out DIR")
    if lorex_args[0] == "reproduce" and not any(a.split("=")[0] == "--jobs" for a in lorex_args):
        lorex_args.append("--jobs=1")  # the listener hears this process only: every task in it

    reader = StageReader(sys.stderr)
    events = []  # (stage, event, seconds, function name)
    read_from_cache = [False]

    def listener(event, seconds, **kw):
        # JAX times a program read from the persistent cache with the same compile event as one compiled, after
        # the cache's own read event: such a compile event is counted as a cache hit (its time: reading + loading)
        if event == CACHE_READ:
            read_from_cache[0] = True
        elif event == COMPILE or event in TRACE:
            if event == COMPILE and read_from_cache[0]:
                event, read_from_cache[0] = CACHE_READ, False
            events.append((reader.stage, event, float(seconds), kw.get("fun_name", "")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    import lorex.io
    from lorex.cli import main as lorex_main

    if args.every_program:
        enable = lorex.io.enable_compilation_cache

        def enable_every_program():
            path = enable()
            if path is None:
                sys.exit("--every-program needs the compilation cache: set LOREX_COMPILATION_CACHE to a new folder")
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
            return path

        lorex.io.enable_compilation_cache = enable_every_program

    sys.stderr = reader
    t0 = time.perf_counter()
    try:
        rc = lorex_main(lorex_args)
    finally:
        sys.stderr = reader.stream
    wall = time.perf_counter() - t0
    threshold = float(jax.config.jax_persistent_cache_min_compile_time_secs)

    rows = collections.defaultdict(collections.Counter)
    for stage, event, secs, _ in events:
        r = rows[stage]
        if event == COMPILE:
            small = secs < threshold
            r["n"] += 1
            r["s"] += secs
            r["n_small"] += small
            r["s_small"] += secs * small
        elif event == CACHE_READ:
            r["hits"] += 1
            r["s_load"] += secs
        else:
            r["s_trace"] += secs
    total = sum(rows.values(), collections.Counter())
    table = ["| task | stage | compilations | compile s | of them under the cache threshold (count, s) | trace + "
             "lower s | read from the cache (count, s) |", "|---|---|---|---|---|---|---|"]
    for (task, stage), r in list(rows.items()) + [(("all", ""), total)]:
        table.append(f"| {task} | {stage} | {r['n']} | {r['s']:.1f} | {r['n_small']}, {r['s_small']:.1f} | "
                     f"{r['s_trace']:.1f} | {r['hits']}, {r['s_load']:.1f} |")
    slow = sorted((e for e in events if e[1] == COMPILE), key=lambda e: -e[2])[:args.top]
    top = ["| compile s | task | stage | function |", "|---|---|---|---|"]
    top += [f"| {secs:.2f} | {stage[0]} | {stage[1]} | `{name}` |" for stage, _, secs, name in slow]
    by_name = collections.defaultdict(collections.Counter)
    for _, event, secs, name in events:
        if event == COMPILE:
            by_name[name]["n"] += 1
            by_name[name]["s"] += secs
    names = ["| function | compilations | compile s |", "|---|---|---|"]
    names += [f"| `{name}` | {c['n']} | {c['s']:.1f} |"
              for name, c in sorted(by_name.items(), key=lambda x: -x[1]["s"])[:args.top]]
    head = (f"`lorex {' '.join(lorex_args)}`: {wall:.1f} s wall, jax {jax.__version__}, cache threshold "
            f"{threshold} s")
    print(head, *table, "", f"the {len(slow)} slowest compilations:", *top, "",
          f"the {len(names) - 2} functions with the most compile time:", *names, sep="\n")
    append_md(args.md, head, table)
    append_md(args.md, f"The {len(slow)} slowest compilations:", top)
    append_md(args.md, f"The {len(names) - 2} functions with the most compile time:", names)
    return rc


if __name__ == "__main__":
    sys.exit(main())
