"""``lorex reproduce``: the paper's five figures per task, ``results.json`` with every number, findings, and
``report.html``.

Per task: load the shipped pretrained optimizer (or meta-train one with ``retrain``), run the benchmark protocol
(tuned SGD/Momentum/RMSProp/Adam and the learned optimizer on the test seeds), run every analysis
(:mod:`lorex.report.analyze`), draw the figures; then write ``results.json`` and the self-contained ``report.html``.
Tasks depend on nothing another task computes, so they are reported side by side in worker processes (``jobs``),
with the same numbers as in one process.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import dataclasses
import datetime
import math
import multiprocessing
import os
import shlex
import sys
import time
from pathlib import Path

import jax

from lorex import io, lopt, meta, seeds
from lorex import tasks as tasks_mod
from lorex.baselines import DEFAULT_OPTIMIZERS
from lorex.benchmark import format_table, run_benchmark
from lorex.errors import LorexError, RunError
from lorex.distill import distill, distill_figure, ladder_figure
from lorex.distill.bound import shipped_family as shipped_mechanism_family
from lorex.progress import join_workers, say, show_workers
from lorex.report import figures as F
from lorex.report import html
from lorex.report.analyze import RULES, AnalysisOptions, analyze_task, findings
from lorex.report.population import paper_optimizer, population

DEFAULT_TASKS = ("linreg", "rosenbrock", "two_moons", "digits")
FIGURE_FUNCTIONS = {"momentum": F.momentum_figure, "clipping": F.clipping_figure,
                    "schedule": F.schedule_figure, "adaptation": F.adaptation_figure}


def _say(progress: bool, msg: str) -> None:
    if progress:
        say(f"[reproduce] {msg}")


def performance_numbers(result: dict) -> dict:
    """Figure 1's numbers: final loss, mean log loss and tuned hyperparameters per optimizer; learned vs best."""
    rows = result["optimizers"]
    base = {n: r for n, r in rows.items() if r["kind"] == "baseline"}
    out = {"final_loss": {n: r["final_loss"] for n, r in rows.items()},
           "mean_log_loss": {n: r["mean_log_loss"] for n, r in rows.items()},
           "diverged": {n: r["diverged"] for n, r in rows.items()},
           "tuned_hyperparameters": {n: r["hyperparameters"] for n, r in base.items()},
           "tuning_warnings": list(result["warnings"]), "learned_vs_best": {}}
    for name, c in result.get("comparison", {}).items():
        f, m = c["final_loss"], c["mean_log_loss"]
        diff = m["learned"] - m["baseline"]
        out["learned_vs_best"][name] = {
            "final_loss": {"best_baseline": f["best_baseline"], "learned": f["learned"], "baseline": f["baseline"],
                           "ratio": f.get("ratio_learned_over_best"), "margin_in_se": f["margin_in_se"],
                           "beats_by_2se": f["beats_by_2se"]},
            "mean_log_loss": {"best_baseline": m["best_baseline"], "learned": m["learned"], "baseline": m["baseline"],
                              "difference": diff,
                              "ratio_geometric_mean_loss": math.exp(diff) if math.isfinite(diff) else None,
                              "margin_in_se": m["margin_in_se"], "beats_by_2se": m["beats_by_2se"]}}
    return out


def _command(out, tasks, explicit_tasks, retrain, seed, test_seeds, tuning_seeds, members, jobs,
             api_extras) -> str:
    if api_extras:
        args = ", ".join([f"{str(out)!r}", f"tasks={list(tasks)!r}", f"retrain={retrain}", f"seed={seed}",
                          f"test_seeds={test_seeds}", f"tuning_seeds={tuning_seeds}", f"members={members}",
                          f"jobs={jobs}"] + [f"{k}={v!r}" for k, v in api_extras.items()])
        return "python -c " + shlex.quote(f"from lorex.report.reproduce import reproduce; reproduce({args})")
    cmd = ["lorex", "reproduce", "--out", str(out)]
    if explicit_tasks:
        cmd += ["--tasks", *tasks]
    if retrain:
        cmd.append("--retrain")
    cmd += ["--seed", str(seed), "--test-seeds", str(test_seeds)]
    if tuning_seeds is not None:
        cmd += ["--tuning-seeds", str(tuning_seeds)]
    if members != 5:
        cmd += ["--members", str(members)]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    return shlex.join(cmd)


def _resolve_optimizers(task, out: Path, retrain: bool, seed: int, optimizers: dict | None, members: int,
                        train_overrides: dict | None, task_overrides: dict | None,
                        progress: bool) -> tuple[dict[int, Path], int, str]:
    """The optimizers analysed on ``task``: ({meta-training seed: folder} of at most ``members`` members, the
    reference member's seed, the source). The reference is the given/shipped optimizer itself, or the lowest seed."""
    if optimizers and task in optimizers:
        dirs, source = lopt.member_dirs(optimizers[task]), "given"
    elif retrain:
        d = out / "optimizers" / task
        mcfg = meta.make_config(task, seed=seed, task_overrides=task_overrides, **(train_overrides or {}))
        seeds_ = [seed + i for i in range(members)]
        _say(progress, f"{task}: meta-training {len(seeds_)} optimizer(s) ({mcfg.steps} steps each, seeds "
                       f"{', '.join(map(str, seeds_))}) into {d} (finished ones are kept, interrupted ones resumed)")
        dirs, source = dict(zip(seeds_, meta.train_population(mcfg, seeds_, d, progress=progress))), "retrained"
    else:
        dirs, source = lopt.member_dirs(task), "shipped"
    dirs = dict(list(dirs.items())[:members])
    return dirs, next(iter(dirs)), source


def _info(source, path, cfg, md) -> dict:
    return {"source": source, "path": lopt.portable_name(path), "lopt_config": dataclasses.asdict(cfg),
            "meta_steps": md.get("meta_steps"), "best_step": md.get("best_step"),
            "best_validation": md.get("best_validation"), "meta_config": md.get("config"),
            "trained_with": md.get("versions")}


# Typical wall seconds of one task's report on 2 CPU cores (BENCHMARKS.md, section 3); used only to hand the longest
# tasks to worker processes first, so that the last one to finish starts early.
TYPICAL_SECONDS = {"digits": 200.0, "two_moons": 130.0, "linreg": 60.0, "rosenbrock": 25.0}
# JAX settings a worker process takes over from the process that started it (the persistent compilation cache)
_INHERITED_JAX_CONFIG = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs", "jax_enable_x64")


@dataclasses.dataclass(frozen=True)
class _Run:
    """What every task of one reproduction shares (sent to worker processes as it is)."""
    out: Path
    n_tasks: int
    retrain: bool
    seed: int
    test_seeds: int
    tuning_seeds: int | None
    members: int
    opts: AnalysisOptions
    optimizers: dict | None
    steps: int | None
    baselines: tuple
    train_overrides: dict | None
    task_overrides: dict
    progress: bool


def _report_task(run: _Run, i: int, task: str) -> dict:
    """One task's part of the report: optimizer(s), benchmark, analysis, figures, population, distillation.

    Returns its entries of ``results.json`` ({"results", "figures", "findings", "seeds", "agreement", "walls"}) and
    the PNG paths the HTML report embeds ("png"). Depends on nothing another task computes."""
    progress, seed, steps, opts, out = run.progress, run.seed, run.steps, run.opts, run.out
    family = tasks_mod.make(task, **run.task_overrides.get(task, {}))
    fig_dir = out / "figures"
    walls = {}
    head = f"[{i + 1}/{run.n_tasks}] {task}"
    t0 = time.perf_counter()
    _say(progress, f"{head}: optimizer")
    dirs, ref_seed, source = _resolve_optimizers(task, out, run.retrain, seed, run.optimizers, run.members,
                                                 run.train_overrides, run.task_overrides.get(task), progress)
    params, cfg, md = lopt.load_params(dirs[ref_seed])
    info = _info(source, dirs[ref_seed], cfg, md)
    walls["optimizer"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _say(progress, f"{head}: benchmark (tuning {', '.join(run.baselines)}; {run.test_seeds} test seeds)")
    bench, runs = run_benchmark(family, seed=seed, tuning_seeds=run.tuning_seeds, test_seeds=run.test_seeds,
                                optimizers=run.baselines,
                                learned={"learned": lopt.learned_optimizer(params, cfg)}, steps=steps,
                                progress=progress, return_runs=True)
    walls["benchmark"] = time.perf_counter() - t0
    if progress:
        say(format_table(bench))

    t0 = time.perf_counter()
    ta = analyze_task(params, cfg, family, seed=seed, options=opts,
                      progress=lambda m: _say(progress, f"{head}: analysis: {m}"))
    numbers, arrays = ta.numbers, ta.arrays
    walls["analysis"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _say(progress, f"{head}: figures")
    paths = {"performance": F.task_performance_figure(bench, fig_dir / f"{task}_1_performance", family=family)}
    task_findings = findings(ta)
    by_mechanism = {f["mechanism"]: f for f in task_findings}
    for j, (name, fn) in enumerate(FIGURE_FUNCTIONS.items(), start=2):
        paths[name] = fn(numbers, arrays, fig_dir / f"{task}_{j}_{name}", finding=by_mechanism[name])
    walls["figures"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    extra = {}
    if len(dirs) > 1:
        extra["population"], agreements = population(
            task, family, dirs, bench, ref_seed, ta.analysis, seed=seed, options=opts,
            progress=lambda m: _say(progress, f"{head}: {m}"), reference_runs=runs["learned"])
        paths["population"] = F.population_figure(agreements, extra["population"], fig_dir / f"{task}_7_population")
    if source == "shipped":
        paper = paper_optimizer(task, family, bench, ta.analysis, seed=seed, options=opts,
                                progress=lambda m: _say(progress, f"{head}: {m}"))
        if paper is not None:
            extra["paper"] = paper
    walls["population"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _say(progress, f"{head}: distillation (mechanistic surrogate, ablations)")
    # the rebuild of Momentum, RMSProp and Adam through the same extraction checks the extraction itself, not
    # this optimizer; `lorex distill` runs it, the report does not repeat it for every task
    # the mechanism bound: the shipped trained mechanism family (shipped optimizers only) is evaluated, not
    # retrained (`lorex distill` meta-trains it)
    shipped_family = shipped_mechanism_family(task) if source == "shipped" else None
    if shipped_family is not None and int(shipped_family["steps"]) != int(bench["steps"]):
        shipped_family = None  # trained for another horizon
    distilled = distill((params, cfg), family, seed=seed, benchmark=bench, analysis=ta.analysis,
                        progress=progress, steps=steps, references=False, bound=shipped_family is not None,
                        family_trained=shipped_family, benchmark_runs=runs)
    paths["distill"] = distill_figure(distilled, fig_dir / f"{task}_6_distill")
    if "mechanism_bound" in distilled:
        paths["ladder"] = ladder_figure(distilled, fig_dir / f"{task}_7_ladder")
    walls["distill"] = time.perf_counter() - t0

    for f in task_findings:
        _say(progress, f"{head}: {f['statement']}")
    analysis_walls = numbers.pop("wall_seconds")
    _say(progress, f"{head}: done in {sum(walls.values()):.1f} s "
                   f"({', '.join(f'{k} {v:.1f} s' for k, v in walls.items())})")
    return {"results": {"optimizer": info, "benchmark": bench, "performance": performance_numbers(bench), **numbers,
                        "analysis_wall_seconds": analysis_walls, "distill": distilled, **extra},
            "png": {k: v[0] for k, v in paths.items()},
            "figures": {k: [str(p.relative_to(out)) for p in v] for k, v in paths.items()},
            "findings": task_findings,
            "seeds": {"tuning": bench["tuning_seeds"], "test": bench["test_seeds"],
                      "analysis": numbers["evidence"]["n_runs"]},
            "agreement": [{"task": task, **{k: v for k, v in a.items() if k != "members"}}
                          for a in extra.get("population", {}).get("agreement", [])],
            "walls": walls}


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS, Windows)
        return os.cpu_count() or 1


def default_jobs(n_tasks: int) -> int:
    """Worker processes for ``n_tasks`` tasks: one per task up to the CPU cores on CPU; 1 on an accelerator, which
    one process already keeps busy (and whose memory it reserves)."""
    if jax.default_backend() != "cpu":
        return 1
    return max(1, min(n_tasks, available_cores()))


def _worker_init(jax_config: dict, progress_queue, progress_slots) -> None:
    for name, value in jax_config.items():
        jax.config.update(name, value)
    join_workers(progress_queue, progress_slots)


def _report_tasks(run: _Run, tasks: list[str], jobs: int) -> list[dict]:
    """Every task's part (:func:`_report_task`), in the order of ``tasks``; with ``jobs`` > 1 (at most one per task)
    in that many worker processes, the longest tasks first.

    Processes rather than threads: a task's stages are mostly single-threaded XLA programs and Python (tracing,
    matplotlib, which is not thread-safe), and each process compiles and runs the same programs on the same inputs
    as one process would, so the numbers are the same. Workers are started with ``spawn`` (forking a process that
    has started JAX's threads is unsafe) and share the persistent compilation cache. Their progress bars and messages
    are drawn by this process, a bar per worker on a line of its own (:mod:`lorex.progress`)."""
    if jobs == 1:
        return [_report_task(run, i, t) for i, t in enumerate(tasks)]
    jax_config = {name: getattr(jax.config, name) for name in _INHERITED_JAX_CONFIG}
    order = sorted(range(len(tasks)), key=lambda i: -TYPICAL_SECONDS.get(tasks[i], 0.0))
    spawn = multiprocessing.get_context("spawn")
    with show_workers(spawn) as progress_channel, concurrent.futures.ProcessPoolExecutor(
            max_workers=jobs, mp_context=spawn, initializer=_worker_init,
            initargs=(jax_config, *progress_channel)) as pool:
        futures = {i: pool.submit(_report_task, run, i, tasks[i]) for i in order}
        for done in concurrent.futures.as_completed(futures.values()):
            error = done.exception()
            if error is not None:  # the first failure ends the run: tasks not started are dropped
                for f in futures.values():
                    f.cancel()
                if isinstance(error, concurrent.futures.process.BrokenProcessPool):
                    raise RunError("reproduce", f"a worker process ended without a result ({error}): out of memory, "
                                                "or a script that calls reproduce outside `if __name__ == "
                                                "'__main__':` (each worker imports the main script); rerun with "
                                                "--jobs 1 (jobs=1)") from None
                raise error
        return [futures[i].result() for i in range(len(tasks))]


def reproduce(out, tasks=None, retrain: bool = False, seed: int = 0, test_seeds: int = 128,
              tuning_seeds: int | None = None, members: int = 5, *, progress: bool = True, analysis_options=None,
              optimizers: dict | None = None, steps: int | None = None, baselines=DEFAULT_OPTIMIZERS,
              train_overrides: dict | None = None, task_overrides: dict | None = None,
              jobs: int | None = None) -> Path:
    """Run the whole reproduction into the folder ``out`` and return it (``out/report.html`` is the report).

    ``tasks``: names (default linreg, rosenbrock, two_moons, digits). Without ``retrain`` each task's shipped optimizers
    are used (a task without one is an error that suggests ``--retrain``); with it, ``meta.default_config(task)``
    (plus ``train_overrides``) is meta-trained into ``out/optimizers/<task>/seed-<k>`` first for the ``members``
    seeds k = seed, seed + 1, … (each resumed if interrupted).  ``members``: the population size analysed per task
    (the reference optimizer is the first; 1 = the reference alone); a task's shipped paper-preset optimizer
    (GRU-256), where there is one, is analysed beside them.
    ``tuning_seeds`` None = the per-task default.  Keyword options for small runs and tests: ``optimizers``
    {task: shipped name or run folder} overrides the optimizer of a task, ``steps`` the horizon,
    ``analysis_options`` a dict of :class:`lorex.report.analyze.AnalysisOptions` fields, ``baselines`` the tuned
    baselines (Momentum, RMSProp and Adam are the ones drawn in Figure 1), ``task_overrides`` {task: {config field:
    value}} a task's configuration (e.g. a smaller network; used for benchmarking, analysis and ``retrain``).
    ``jobs``: worker processes that report tasks side by side (None: one per task up to the CPU cores, on CPU;
    1: every task in this process); the numbers do not depend on it.
    """
    t_start = time.perf_counter()
    explicit_tasks = tasks is not None
    tasks = list(tasks) if tasks else list(DEFAULT_TASKS)
    out = Path(out)
    opts = AnalysisOptions.make(analysis_options)
    if steps is not None and opts.steps is None:
        opts = dataclasses.replace(opts, steps=steps)
    task_overrides = dict(task_overrides or {})
    for t in task_overrides:
        if t not in tasks:
            raise LorexError("task_overrides", f"names task {t!r}, which is not among the tasks run", tasks)
    # unknown names and fields fail here, before any work
    for t in tasks:
        tasks_mod.make(t, **task_overrides.get(t, {}))
    if not retrain:
        shipped = lopt.pretrained_names()
        for t in tasks:
            if not (optimizers and t in optimizers) and t not in shipped:
                raise LorexError(f"task {t}", "has no shipped pretrained optimizer",
                                 f"tasks with one: {', '.join(shipped) or 'none installed'}; or add --retrain to "
                                 "meta-train it first")
    api_extras = {k: v for k, v in (("analysis_options", analysis_options), ("optimizers", optimizers),
                                    ("steps", steps), ("train_overrides", train_overrides),
                                    ("task_overrides", task_overrides or None)) if v is not None}
    if tuple(baselines) != tuple(DEFAULT_OPTIMIZERS):
        api_extras["baselines"] = list(baselines)
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise LorexError("members", f"got {members!r}", "a positive integer (1 = the reference optimizer alone)")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise LorexError("jobs", f"got {jobs!r}", "a positive integer (1 = every task in this process), or None for "
                                                  "one worker process per task up to the CPU cores")
    command = _command(out, tasks, explicit_tasks, retrain, seed, test_seeds, tuning_seeds, members, jobs,
                       api_extras)
    jobs = default_jobs(len(tasks)) if jobs is None else min(jobs, len(tasks))
    results = {"format_version": io.FORMAT_VERSION,
               "generated_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "command": command, "argv": list(sys.argv),
               "arguments": {"out": str(out), "tasks": tasks, "retrain": retrain, "seed": seed,
                             "test_seeds": test_seeds, "tuning_seeds": tuning_seeds, "members": members,
                             "steps": steps, "jobs": jobs,
                             "baselines": list(baselines), "optimizers": optimizers,
                             "train_overrides": train_overrides, "task_overrides": task_overrides,
                             "analysis_options": dataclasses.asdict(opts)},
               "seed": seed, "seeds": {"streams": dict(seeds.STREAMS), "tuning": {}, "test": {}, "analysis": {}},
               "versions": io.versions(), "rules": dict(RULES),
               "notes": {"alpha_eff": "α_eff = −dU/dg at g = 0 (autodiff) where a zero gradient is met; otherwise "
                                      "(e.g. sign features, which jump at g = 0) the central difference "
                                      "−(U(δ) − U(−δ))/(2δ) at δ = the median |g| met on the task.",
                         "findings": "every finding: verdict (present / absent / not applicable), the deciding "
                                     "value, its 95 % interval, the threshold, the margin (positive on the present "
                                     "side), the reason when not applicable, and the verdict with the threshold "
                                     "moved by ±50 %",
                         "json": "non-finite numbers (NaN, ±inf) are written as null"},
               "findings": [], "agreement": [], "tasks": {}, "figures": {}, "wall_seconds": {"tasks": {}}}
    run = _Run(out=out, n_tasks=len(tasks), retrain=retrain, seed=seed, test_seeds=test_seeds,
               tuning_seeds=tuning_seeds, members=members, opts=opts, optimizers=optimizers, steps=steps,
               baselines=tuple(baselines), train_overrides=train_overrides, task_overrides=task_overrides,
               progress=progress)
    parts = _report_tasks(run, tasks, jobs)
    png_paths: dict[str, dict[str, Path]] = {}
    for task, part in zip(tasks, parts):
        png_paths[task] = part["png"]
        results["figures"][task] = part["figures"]
        results["findings"] += part["findings"]
        for stream in ("tuning", "test", "analysis"):
            results["seeds"][stream][task] = part["seeds"][stream]
        results["tasks"][task] = part["results"]
        results["agreement"] += part["agreement"]
        results["wall_seconds"]["tasks"][task] = part["walls"]

    results["wall_seconds"]["total"] = time.perf_counter() - t_start
    results = io.json_safe(results)
    io.save_json(out / "results.json", results)
    report = html.write_report(results, png_paths, out / "report.html")
    _say(progress, f"wrote {out / 'results.json'} and {report} in {results['wall_seconds']['total']:.1f} s")
    return out
