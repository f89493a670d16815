"""The ``lorex`` commands as Python functions: the command line parses its flags and calls these.

Every argument after the first is a keyword; a task is a registered name (or ``module:attribute``) with its config
fields overridden by ``task_overrides`` (``--set`` on the command line). Sizes that cannot fit in memory are refused
before any work, as on the command line.
"""

from __future__ import annotations

from pathlib import Path

from lorex.errors import LorexError


def check_sizes(family, optimizers, *, tuning_seeds: int | None, test_seeds: int, steps: int | None = None,
                learned_hidden=(), search: str = "halving") -> int:
    """Refuse a tuning search (``search``, as :func:`lorex.baselines.tune` runs it) or an evaluation that cannot fit
    in memory; returns the number of tuning seeds used."""
    from lorex import resources
    from lorex.baselines import default_tuning_seeds

    n_tune = tuning_seeds or default_tuning_seeds(family)
    resources.check_benchmark(family, optimizers=optimizers, tuning_seeds=n_tune, test_seeds=test_seeds,
                              steps=steps or family.steps, learned_hidden=list(learned_hidden), search=search)
    return n_tune


def _family(task: str, task_overrides: dict | None):
    from lorex import tasks

    return tasks.make(task, **(task_overrides or {}))


def baseline_names(names) -> tuple[str, ...]:
    """The baselines to run (default sgd, momentum, rmsprop, adam), each checked against the known ones."""
    from lorex.baselines import DEFAULT_OPTIMIZERS, OPTIMIZERS
    from lorex.errors import check_choice

    names = tuple(names or DEFAULT_OPTIMIZERS)
    for n in names:
        check_choice("optimizer", n, OPTIMIZERS)
    return names


def train(task: str | None = None, out: str | Path | None = None, *, seed: int = 0, seeds=None,
          preset: str | None = None, task_overrides: dict | None = None, resume: str | Path | None = None,
          progress: bool = True, **config) -> list[Path]:
    """Meta-train a learned optimizer into the run folder ``out`` (``lorex train``); returns the folder of each
    trained optimizer.

    ``config``: :class:`lorex.meta.MetaConfig` fields (``hidden=16, steps=500, ...``) over the task's defaults and
    the ``preset`` (``"paper"``). ``seeds=[k, ...]``: a population, one optimizer per root seed in ``out/seed-<k>``
    (rerun to continue). ``resume=folder``: continue that run, or every unfinished member of that population
    (``task`` is then only for confirming a ``module:attribute`` task named in its run.json).
    """
    from lorex import lopt, meta

    if resume is not None:
        if (task and ":" not in task) or out is not None or config or seeds is not None or preset or task_overrides:
            raise LorexError("resume", "given with a new run's settings", ["resume=folder alone (the run's own "
                             "run.json holds its settings)", "task=module:attribute to confirm a user's task"])
        resume = Path(resume)
        members = [] if (resume / meta.RUN_FILE).exists() else meta.population_members(resume)
        if members:
            return [d if (d / lopt.META_FILE).exists() else meta.resume(d, progress=progress, trusted_task=task)
                    for d in members]
        return [meta.resume(resume, progress=progress, trusted_task=task)]
    if not task or out is None:
        raise LorexError("train", "task and out are required unless resume is given",
                         ["task=..., out=...", "resume=folder"])
    if seeds is not None and seed != 0:
        raise LorexError("seeds", "given with seed", ["seed=k (one optimizer)", "seeds=[k1, k2, ...] (a population)"])
    cfg = meta.make_config(task, preset=preset, seed=seed, task_overrides=task_overrides, **config)
    if seeds is not None:
        return meta.train_population(cfg, seeds, out, progress=progress)
    return [meta.train(cfg, out, progress=progress)]


def benchmark_optimizer(task: str, *, optimizer: str | Path | None = None, learned: bool = True, members: int = 5,
                        baselines=None, seed: int = 0, tuning_seeds: int | None = None, test_seeds: int = 128,
                        steps: int | None = None, task_overrides: dict | None = None, progress: bool = True,
                        search: str = "halving") -> dict:
    """Tuned baselines and a learned optimizer on the test seeds of a task (``lorex benchmark``); a JSON-ready dict.

    ``optimizer``: a shipped name or run folder (default: the task's shipped one, unless ``learned=False``); up to
    ``members`` members of its population are evaluated too. ``baselines``: names from
    :data:`lorex.baselines.OPTIMIZERS` (default sgd, momentum, rmsprop, adam). Write the result with
    :func:`lorex.benchmark.write_benchmark`, print it with :func:`lorex.benchmark.format_table`. ``search``: how
    the baselines are tuned (:data:`lorex.baselines.SEARCHES`; see :func:`lorex.baselines.tune`).
    """
    import time

    from lorex.benchmark import benchmark_population, run_benchmark
    from lorex.lopt import learned_optimizer, load_members, member_dirs, pretrained_names

    family = _family(task, task_overrides)
    names = baseline_names(baselines)
    from lorex.baselines import SEARCHES

    if search not in SEARCHES:
        raise LorexError("search", f"unknown search {search!r}", SEARCHES)
    transformations, hidden, weights = {}, [], {}
    source = optimizer or (task if learned and task in pretrained_names() else None)
    if source:  # the optimizer and, where it has them, the other members of its population
        weights, config, _ = load_members(dict(list(member_dirs(source).items())[:members]))
        transformations["learned"] = learned_optimizer(next(iter(weights.values())), config)
        hidden.append(config.hidden)
    check_sizes(family, names, tuning_seeds=tuning_seeds, test_seeds=test_seeds, steps=steps, learned_hidden=hidden,
                search=search)
    t0 = time.perf_counter()
    result = run_benchmark(family, seed=seed, tuning_seeds=tuning_seeds, test_seeds=test_seeds, optimizers=names,
                           learned=transformations, steps=steps, progress=progress, search=search)
    if len(weights) > 1:
        result["population"] = benchmark_population(weights, config, family, result)
    result["wall_seconds"] = time.perf_counter() - t0
    return result


def reproduce(out: str | Path = "lorex-report", *, tasks=None, retrain: bool = False, seed: int = 0,
              test_seeds: int = 128, tuning_seeds: int | None = None, members: int = 5,
              task_overrides: dict | None = None, progress: bool = True, jobs: int | None = None) -> Path:
    """The paper's figures and numbers for each task into ``out`` (``lorex reproduce``); returns ``out``, whose
    ``report.html`` is the report. ``tasks`` default linreg, rosenbrock, two_moons, digits; ``retrain`` meta-trains each
    task's ``members`` optimizers first instead of using the shipped ones; ``task_overrides`` {task: {field: value}}
    changes a task's configuration (``--set TASK.FIELD=VALUE``); ``jobs`` worker processes report tasks side by side
    (default: one per task up to the CPU cores; ``--jobs``). Worker processes import the main script, so a script that
    calls this with more than one task does so under ``if __name__ == "__main__":`` (or passes ``jobs=1``)."""
    from lorex import tasks as tasks_mod
    from lorex.baselines import DEFAULT_OPTIMIZERS
    from lorex.report.reproduce import DEFAULT_TASKS
    from lorex.report.reproduce import reproduce as run_reproduction

    for t in tasks or ():
        if t not in tasks_mod.names():
            raise LorexError("--tasks", f"unknown task {t!r}", tasks_mod.names())
    for t in tasks or DEFAULT_TASKS:  # (overrides naming another task are refused by the reproduction, before work)
        check_sizes(_family(t, (task_overrides or {}).get(t)), DEFAULT_OPTIMIZERS, tuning_seeds=tuning_seeds,
                    test_seeds=test_seeds, learned_hidden=[256])
    return run_reproduction(out, tasks=tasks, retrain=retrain, seed=seed, test_seeds=test_seeds,
                            tuning_seeds=tuning_seeds, members=members, task_overrides=task_overrides,
                            progress=progress, jobs=jobs)


def distill_optimizer(optimizer: str | Path, *, task: str | None = None, task_overrides: dict | None = None,
                      seed: int = 0, test_seeds: int = 128, tuning_seeds: int | None = None,
                      progress: bool = True, bound: bool = True, surrogate: bool = True,
                      family_steps: int | None = None, round_trip: int = 0) -> dict:
    """A mechanistic surrogate of a learned optimizer and how much of its advantage it explains (``lorex
    distill``); a JSON-ready dict (:func:`lorex.distill.format_table` prints it, :func:`lorex.distill.distill_figure`
    draws it). ``task`` default: the one the optimizer's optimizer.json names (a registered name only).

    ``bound``: also meta-train the mechanism family and report the ladder learned / mechanism bound / best baseline,
    the gap closed and the leave-one-out table (:mod:`lorex.distill.bound`; ``family_steps`` overrides the task's
    meta-steps); ``surrogate=False``: only that ladder, without the extracted surrogate. ``round_trip``: that many
    random mechanism-family members through the extraction and back (:func:`lorex.distill.roundtrip.round_trip`)."""
    from lorex import lopt
    from lorex import tasks as tasks_mod
    from lorex.baselines import DEFAULT_OPTIMIZERS
    from lorex.distill import distill
    from lorex.tasks.base import make_from_file

    params, config, md = lopt.load_params(optimizer)
    if task:
        family = _family(task, task_overrides)
    else:  # a task named in a file: registered names only, never an import
        source = str(lopt.resolve_optimizer_dir(optimizer) / lopt.META_FILE)
        if md.get("task") is None:
            raise LorexError("--task", f"not given and {source} names none", tasks_mod.names())
        family = make_from_file(md.get("task"), source, **(task_overrides or {}))
    check_sizes(family, DEFAULT_OPTIMIZERS, tuning_seeds=tuning_seeds, test_seeds=test_seeds,
                learned_hidden=[config.hidden])
    family_config = None
    if bound:
        from lorex.distill.bound import default_family_config

        family_config = default_family_config(family, **({} if family_steps is None else {"steps": family_steps}))
    result = distill((params, config), family, seed=seed, test_seeds=test_seeds, tuning_seeds=tuning_seeds,
                     progress=progress, bound=bound, surrogate=surrogate, family_config=family_config,
                     round_trip=round_trip)
    result["optimizer"]["source"] = str(optimizer)
    return result
