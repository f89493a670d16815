"""The benchmark protocol: tune baselines on tuning seeds, evaluate everything on disjoint test seeds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lorex import io, seeds
from lorex.baselines import DEFAULT_OPTIMIZERS, default_tuning_seeds, tune
from lorex.evaluate import evaluate_with_metrics, summarize, summarize_metrics
from lorex.progress import bar as progress_bar
from lorex.tasks.base import task_name


def run_benchmark(family, *, seed: int = 0, tuning_seeds: int | None = None, test_seeds: int = 128,
                  optimizers=DEFAULT_OPTIMIZERS, learned: dict | None = None, steps: int | None = None,
                  progress: bool = True, search: str = "halving", return_runs: bool = False):
    """Tune each baseline (:func:`lorex.baselines.tune` with ``search``), then evaluate it and each learned optimizer
    (name → optax transformation).

    Returns a JSON-ready dict: per optimizer its hyperparameters, warnings and :func:`summarize` statistics, plus
    ``metrics`` ({name: {mean, se}} of the final parameters, e.g. held-out accuracy) for a family that defines
    ``metrics(params, problem)``.  ``return_runs``: return ``(result, runs)``, ``runs`` {optimizer: :class:`TestRuns`}
    the per-seed test runs behind the statistics, so that later comparisons on the same seeds (the distillation's
    ladder, a population's reference member) reuse them instead of running the same optimizer again.
    """
    steps = family.steps if steps is None else steps
    if tuning_seeds is None:
        tuning_seeds = default_tuning_seeds(family)
    tune_keys = seeds.keys(seed, "tuning", tuning_seeds)
    test_keys = seeds.keys(seed, "test", test_seeds)
    rows, runs, all_warnings = {}, {}, []
    learned = learned or {}
    bar = progress_bar(total=len(optimizers) + len(learned), desc=f"benchmark {task_name(family)}",
                       disable=not progress, leave=False)
    for name in optimizers:
        bar.set_postfix_str(f"tuning {name}")
        t0 = time.perf_counter()
        tuned = tune(name, family, tune_keys, steps, search=search)
        t_tune = time.perf_counter() - t0
        runs[name] = _test_runs(tuned.transformation(), family, test_keys, steps)
        rows[name] = {"kind": "baseline", **tuned.to_json(), "tune_seconds": t_tune, **_summary(*runs[name])}
        all_warnings += tuned.warnings
        bar.update()
    for name, tx in learned.items():
        bar.set_postfix_str(f"evaluating {name}")
        runs[name] = _test_runs(tx, family, test_keys, steps)
        rows[name] = {"kind": "learned", "optimizer": name, "hyperparameters": {}, "warnings": [],
                      **_summary(*runs[name])}
        bar.update()
    bar.close()
    result = {"task": task_name(family), "steps": steps, "seed": seed,
              "tuning_seeds": tuning_seeds, "test_seeds": test_seeds, "optimizers": rows,
              "warnings": all_warnings, "comparison": compare(rows)}
    return (result, runs) if return_runs else result


class TestRuns(NamedTuple):
    """One optimizer's runs on a benchmark's test seeds: loss curves (seeds, steps + 1) and the family's metrics of
    the final parameters ({name: (seeds,)}, empty for a family without metrics)."""

    losses: np.ndarray
    metrics: dict


def _test_runs(tx, family, keys, steps) -> TestRuns:
    losses, metrics = evaluate_with_metrics(tx, family, keys, steps)
    return TestRuns(np.asarray(losses), {k: np.asarray(v) for k, v in metrics.items()})


def _summary(curves, metrics: dict) -> dict:
    """:func:`summarize` of the loss curves, plus ``metrics`` ({name: {mean, se}}) where the family has any."""
    stats = summarize(curves)
    if metrics:
        stats["metrics"] = summarize_metrics(metrics)
    return stats


def benchmark_population(members: dict, config, family, benchmark: dict, known: dict | None = None) -> dict:
    """Every member of a population ({seed: weights}, one architecture ``config``) on ``benchmark``'s test seeds,
    against the baselines tuned there (tuned once, for all members), in one compiled call.

    ``known``: {seed: :class:`TestRuns`} of members already run on these test seeds (the benchmark's own learned
    optimizer), which are not run again.  Per member: its statistics and the comparison with the best baseline on
    mean log loss and on final loss; ``wins``: how many members beat the best baseline by more than two standard
    errors, per metric.
    """
    from lorex.evaluate import evaluate_population

    runs = dict(known or {})
    todo = [s for s in members if s not in runs]
    if todo:
        test_keys = seeds.keys(benchmark["seed"], "test", benchmark["test_seeds"])
        curves, metrics = evaluate_population([members[s] for s in todo], config, family, test_keys,
                                              benchmark["steps"])
        runs.update({s: TestRuns(np.asarray(curves[i]), {k: np.asarray(v[i]) for k, v in metrics.items()})
                     for i, s in enumerate(todo)})
    base = {n: r for n, r in benchmark["optimizers"].items() if r["kind"] == "baseline"}
    out = {}
    for seed in members:
        stats = _summary(*runs[seed])
        cmp = compare({**base, "member": {"kind": "learned", **stats}}).get("member", {})
        out[str(seed)] = {**stats, "comparison": cmp}
    wins = {m: sum(bool(r["comparison"].get(m, {}).get("beats_by_2se")) for r in out.values())
            for m in ("mean_log_loss", "final_loss")}
    return {"members": out, "n": len(out), "wins": wins}


def compare(rows: dict) -> dict:
    """Each learned optimizer against the best baseline on each metric: ratio and difference in standard errors."""
    base = {k: v for k, v in rows.items() if v["kind"] == "baseline"}
    out = {}
    for name, row in rows.items():
        if row["kind"] != "learned" or not base:
            continue
        res = {}
        for metric in ("mean_log_loss", "final_loss"):
            best = min(base, key=lambda k: base[k][metric]["mean"])
            b, lrn = base[best][metric], row[metric]
            se = float(np.hypot(b["se"], lrn["se"]))
            diff = b["mean"] - lrn["mean"]
            res[metric] = {"best_baseline": best, "baseline": b["mean"], "learned": lrn["mean"],
                           "margin_in_se": diff / se if se > 0 and np.isfinite(se) else None,
                           "beats_by_2se": bool(np.isfinite(se) and diff > 2 * se)}
            if metric == "final_loss" and b["mean"] > 0:
                res[metric]["ratio_learned_over_best"] = lrn["mean"] / b["mean"]
        out[name] = res
    return out


def format_table(result: dict) -> str:
    """The benchmark as a plain-text table."""
    metric_names = list(dict.fromkeys(m for r in result["optimizers"].values() for m in r.get("metrics", {})))
    lines = [f"task {result['task']}: {result['test_seeds']} test seeds, {result['steps']} steps",
             f"{'optimizer':<12} {'hyperparameters':<40} {'final loss (mean ± s.e.)':<26} "
             f"{'mean log loss':<18} diverged" + "".join(f"  {m + ' (mean ± s.e.)':<24}" for m in metric_names)]
    for name, r in result["optimizers"].items():
        hp = ", ".join(f"{k}={v:.4g}" for k, v in r["hyperparameters"].items()) or "(learned)"
        fl, ml = r["final_loss"], r["mean_log_loss"]
        extra = ""
        for m in metric_names:
            v = r.get("metrics", {}).get(m)
            extra += f"  {'':<24}" if v is None else f"  {v['mean']:.4f} ± {v['se']:.4f}{'':<7}"
        lines.append(f"{name:<12} {hp:<40} {fl['mean']:.3e} ± {fl['se']:.1e}{'':<5} "
                     f"{ml['mean']:8.3f} ± {ml['se']:.3f}  {r['diverged']:<8}{extra}".rstrip()
                     + ("  (DIVERGED at every tuning grid point)" if r.get("tuning_diverged") else ""))
    for w in result["warnings"]:
        lines.append(f"WARNING: {w}")
    for r in result["optimizers"].values():
        lines += [f"note: {n}" for n in r.get("notes", [])]
    pop = result.get("population")
    if pop:
        lines.append(f"population: {pop['n']} members (meta-training seeds) against the best baseline; "
                     f"better by > 2 s.e.: {pop['wins']['mean_log_loss']} of {pop['n']} on mean log loss, "
                     f"{pop['wins']['final_loss']} of {pop['n']} on final loss")
        for seed_, r in pop["members"].items():
            cells = []
            for metric in ("mean_log_loss", "final_loss"):
                c = r["comparison"].get(metric)
                if c is not None:
                    m = c["margin_in_se"]
                    cells.append(f"{metric} {c['learned']:.4g} (margin {'n/a' if m is None else f'{m:.1f}'} s.e.)")
            lines.append(f"  seed {seed_:<4} " + "; ".join(cells))
    for name, c in result.get("comparison", {}).items():
        for metric, v in c.items():
            m = v["margin_in_se"]
            lines.append(f"{name} vs best baseline ({v['best_baseline']}) on {metric}: "
                         f"{v['learned']:.4g} vs {v['baseline']:.4g}, margin "
                         f"{'n/a' if m is None else f'{m:.1f}'} s.e. -> "
                         f"{'better' if v['beats_by_2se'] else 'NOT better'} by > 2 s.e.")
    return "\n".join(lines)


def write_benchmark(result: dict, out: str | Path) -> list[Path]:
    """results.json and the loss-curve figure (PNG and PDF) in ``out``."""
    from lorex.plotting import performance_figure

    out = Path(out)
    io.save_json(out / "results.json", {"format_version": io.FORMAT_VERSION, "versions": io.versions(),
                                        "benchmark": result})
    return [out / "results.json", *performance_figure(result, out / f"performance_{result['task']}")]
