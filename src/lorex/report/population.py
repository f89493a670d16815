"""The population part of ``lorex reproduce``: every member of a task's population benchmarked against the baselines
tuned once, every member's mechanisms, the agreement (k of n present, spread), and the paper-preset optimizer beside.

The members share one architecture, so their evaluation is one vmapped, compiled call and their analyses reuse the
compiled functions of the first (the weights are arguments of those functions, not constants).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from lorex import lopt
from lorex import mechanisms as M
from lorex.benchmark import benchmark_population
from lorex.errors import LorexError
from lorex.lopt import load_members
from lorex.report.analyze import findings, mechanisms_of


def _member_json(stats: dict) -> dict:
    out = {k: stats[k] for k in ("n_runs", "diverged", "final_loss", "mean_log_loss")}
    if "metrics" in stats:
        out["metrics"] = stats["metrics"]
    out["comparison"] = stats["comparison"]
    return out


def population(task: str, family, dirs: dict[int, Path], bench: dict, reference_seed: int,
               reference: M.Analysis, *, seed: int, options, progress=None,
               reference_runs=None) -> tuple[dict, list[M.Agreement]]:
    """The population section of one task: results.json's ``population`` entry and the agreements (for the figure).

    ``reference`` is the analysis already made of member ``reference_seed`` (it is not repeated); so are its test
    runs when ``reference_runs`` (its :class:`lorex.benchmark.TestRuns` from ``bench``) is given.
    """
    say = progress or (lambda msg: None)
    walls = {}
    t0 = time.perf_counter()
    params, config, metas = load_members(dirs)
    known = {reference_seed: reference_runs} if reference_runs is not None else {}
    say(f"population: evaluating {len(params) - len(known)} members on the test seeds")
    pb = benchmark_population(params, config, family, bench, known=known)
    walls["benchmark"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    analyses = {}
    for s, p in params.items():
        if s == reference_seed:
            analyses[s] = reference
            continue
        say(f"population: mechanisms of member seed {s}")
        _, analyses[s], _ = mechanisms_of(lopt.recurrent_map(p, config), family, task=task, seed=seed,
                                          options=options)
    walls["mechanisms"] = time.perf_counter() - t0
    agreements = M.agreement({s: an.findings for s, an in analyses.items()})
    members = [{"seed": s, "reference": s == reference_seed, "source": lopt.portable_name(dirs[s]),
                "meta_steps": metas[s].get("meta_steps"), "best_step": metas[s].get("best_step"),
                "best_validation": metas[s].get("best_validation"), "wall_seconds_training": metas[s].get("wall_seconds"),
                "benchmark": _member_json(pb["members"][str(s)]), "findings": findings(analyses[s])}
               for s in params]
    out = {"n": len(members), "reference_seed": reference_seed, "lopt_config": dataclasses.asdict(config),
           "wins": pb["wins"], "members": members, "agreement": [a.to_json() for a in agreements],
           "wall_seconds": walls}
    return out, agreements


def paper_optimizer(task: str, family, bench: dict, reference: M.Analysis, *, seed: int, options,
                    progress=None) -> dict | None:
    """The task's shipped paper-preset optimizer (GRU-256), if any: its benchmark margins and findings beside the
    reference's verdicts."""
    try:
        d = lopt.resolve_optimizer_dir(task, preset="paper")
    except LorexError:
        return None
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    p, config, md = lopt.load_params(d)
    say(f"paper-preset optimizer (GRU-{config.hidden}): benchmark and mechanisms")
    pb = benchmark_population({0: p}, config, family, bench)
    _, an, _ = mechanisms_of(lopt.recurrent_map(p, config), family, task=task, seed=seed, options=options)
    same = {f.mechanism: f.verdict == g.verdict for f, g in zip(an.findings, reference.findings)}
    return {"source": lopt.portable_name(d), "lopt_config": dataclasses.asdict(config), "meta_config": md.get("config"),
            "meta_steps": md.get("meta_steps"), "best_step": md.get("best_step"),
            "wall_seconds_training": md.get("wall_seconds"), "benchmark": _member_json(pb["members"]["0"]),
            "findings": findings(an), "same_verdict_as_reference": same,
            "wall_seconds": time.perf_counter() - t0}
