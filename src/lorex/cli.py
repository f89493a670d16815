"""The ``lorex`` command line: train | tune | benchmark | reproduce | distill.

Bad input exits with status 2 and one line naming the field and what is allowed, before any file is written or
any work is done (the output folder, files read, task fields, and the memory the sizes need are checked first).
A run that fails (disk full, training that learned nothing) exits with status 1 and one line.
"""

from __future__ import annotations

import argparse
import ast
import math
import sys
from pathlib import Path

from lorex.errors import MAX_SEED, LorexError, RunError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2 (argparse's default prints the whole usage first)
        self.exit(2, f"lorex: error: {message} (see `{self.prog} --help`)\n")


def _int_at_least(field, low: int, allowed: str):
    """An argparse type: an integer >= ``low``; otherwise a one-line error naming ``field`` and ``allowed``."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field}: got {text!r} (allowed: {allowed})") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{field}: got {v} (allowed: {allowed})")
        return v

    parse.__name__ = field
    return parse


def _nonnegative_int(field):
    return _int_at_least(field, 0, "an integer >= 0")


def _positive_int(field):
    return _int_at_least(field, 1, "a positive integer")


def _positive_float(field):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field}: got {text!r} (allowed: a positive number)") from None
        if not (v > 0 and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"{field}: got {v} (allowed: a finite positive number)")
        return v

    parse.__name__ = field
    return parse


def _seed(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed: got {text!r} (allowed: an integer from 0 to 2**63 - 1)") from None
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed: got {v} (allowed: an integer from 0 to 2**63 - 1)")
    return v


_seed.__name__ = "seed"


def _overrides(items) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LorexError("--set", f"malformed {item!r}", "FIELD=VALUE, e.g. --set n=10")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _family(args):
    from lorex import tasks

    return tasks.make(args.task, **_overrides(args.set))


def _check_out(path):
    from lorex import io

    if path is not None:
        io.check_out_dir(path, "--out")


def _task_args(p, required=True):
    p.add_argument("--task", required=required,
                   help="linreg | rosenbrock | two_moons | digits | module:attribute (a user's task family)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a task config field")
    p.add_argument("--seed", type=_seed, default=0, help="root seed (default 0)")


def _eval_args(p):
    p.add_argument("--steps", type=_positive_int("steps"), default=None, help="horizon (default: the task's)")
    p.add_argument("--tuning-seeds", type=_positive_int("tuning-seeds"), default=None,
                   help="default: the task policy's (32; 16 for two_moons, 8 for digits)")
    p.add_argument("--test-seeds", type=_positive_int("test-seeds"), default=128)
    p.add_argument("--optimizers", nargs="+", default=None, help="baselines: sgd momentum rmsprop adam")
    p.add_argument("--search", choices=("halving", "grid"), default="halving",
                   help="tuning search over the grid: halving (successive halving, default; the grid's selection at "
                        "a fraction of the runs) or grid (every point on every tuning seed)")


def cmd_tune(args) -> int:
    from lorex import seeds
    from lorex.api import baseline_names, check_sizes
    from lorex.baselines import tune

    family = _family(args)
    names = baseline_names(args.optimizers)
    n_tune = check_sizes(family, names, tuning_seeds=args.tuning_seeds, test_seeds=args.test_seeds, steps=args.steps,
                         search=args.search)
    keys = seeds.keys(args.seed, "tuning", n_tune)
    for n in names:
        t = tune(n, family, keys, args.steps, search=args.search)
        hp = ", ".join(f"{k}={v:.4g}" for k, v in t.hyperparameters.items())
        result = "DIVERGED at every grid point" if t.diverged else f"tuning objective {t.objective:.4f}"
        print(f"{n:<10} {hp:<36} {result}")
        for w in t.warnings:
            print(f"WARNING: {w}")
    return 0


def cmd_benchmark(args) -> int:
    from lorex.api import benchmark_optimizer
    from lorex.benchmark import format_table, write_benchmark

    _check_out(args.out)
    result = benchmark_optimizer(args.task, optimizer=args.optimizer, learned=not args.no_learned,
                                 members=args.members, baselines=args.optimizers, seed=args.seed,
                                 tuning_seeds=args.tuning_seeds, test_seeds=args.test_seeds, steps=args.steps,
                                 task_overrides=_overrides(args.set), search=args.search)
    print(format_table(result))
    if args.out:
        for p in write_benchmark(result, args.out):
            print(f"wrote {p}")
    return 0


def _distributed_args(args) -> dict:
    """jax.distributed.initialize's arguments from --coordinator/--num-processes/--process-id (all or none)."""
    given = {"--coordinator": args.coordinator, "--num-processes": args.num_processes,
             "--process-id": args.process_id}
    if all(v is None for v in given.values()):
        return {}
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise LorexError(missing[0], "missing: --coordinator, --num-processes and --process-id go together",
                         ["all three", "none (the cluster environment gives them)"])
    if not args.distributed:
        raise LorexError("--coordinator", "given without --distributed", ["--distributed --coordinator HOST:PORT "
                         "--num-processes N --process-id I"])
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LorexError("--coordinator", f"got {args.coordinator!r}", "HOST:PORT with a port from 1 to 65535")
    if args.process_id >= args.num_processes:
        raise LorexError("--process-id", f"got {args.process_id} with --num-processes {args.num_processes}",
                         f"an integer from 0 to {args.num_processes - 1}")
    return {"coordinator_address": args.coordinator, "num_processes": args.num_processes,
            "process_id": args.process_id}


def cmd_train(args) -> int:
    from lorex import meta
    from lorex.api import train

    explicit = _distributed_args(args)
    if args.distributed:
        import jax

        # coordinator, process count and id from the flags, or else from the cluster environment (SLURM, MPI, TPU)
        jax.distributed.initialize(**explicit)
    if args.seeds is not None and args.seed != 0:
        raise LorexError("--seeds", "given with --seed", ["--seed K (one optimizer)", "--seeds K1 K2 ... (a population)"])
    if args.resume:
        if args.task and ":" not in args.task:
            raise LorexError("--task", "with --resume the task comes from the run's run.json; --task is only for "
                             "confirming a module:attribute task named there", ["module:attribute"])
        run_dirs = train(args.task, resume=args.resume)
    elif not args.task or not args.out:
        raise LorexError("train", "--task and --out are required unless --resume DIR is given",
                         ["--task T --out DIR", "--resume DIR"])
    else:
        run_dirs = train(args.task, args.out, seed=args.seed, seeds=args.seeds, preset=args.preset,
                         task_overrides=_overrides(args.set), **meta.fields_from_args(args))
    for d in run_dirs:
        print(f"trained optimizer in {d}")
    return 0


def cmd_reproduce(args) -> int:
    from lorex.api import reproduce

    _check_out(args.out)
    per_task: dict[str, dict] = {}
    for key, value in _overrides(args.set).items():
        task, dot, field = key.partition(".")
        if not dot or not task or not field:
            raise LorexError("--set", f"malformed {key!r}", "TASK.FIELD=VALUE, e.g. --set digits.channels=[4]")
        per_task.setdefault(task, {})[field] = value
    out = reproduce(args.out, tasks=args.tasks, retrain=args.retrain, seed=args.seed, test_seeds=args.test_seeds,
                    tuning_seeds=args.tuning_seeds, members=args.members, task_overrides=per_task or None,
                    jobs=args.jobs)
    print(f"report: {out / 'report.html'}")
    return 0


def cmd_distill(args) -> int:
    """``lorex distill``: print the table; with ``--out`` write distill.json and the figure there."""
    from lorex import io
    from lorex.api import distill_optimizer
    from lorex.distill import distill_figure, format_table, ladder_figure

    _check_out(args.out)
    if args.no_bound and args.bound_only:
        raise LorexError("--bound-only", "given with --no-bound", ["one of them"])
    result = distill_optimizer(args.optimizer, task=args.task, task_overrides=_overrides(args.set), seed=args.seed,
                               test_seeds=args.test_seeds, tuning_seeds=args.tuning_seeds, bound=not args.no_bound,
                               surrogate=not args.bound_only, family_steps=args.family_steps,
                               round_trip=0 if args.bound_only else args.round_trip)
    if args.out:  # the numbers first: a failure drawing them loses nothing
        io.save_json(Path(args.out) / "distill.json", result)
    print(format_table(result))
    print(f"wall time {result['wall_seconds']['total']:.1f} s")
    if args.out:
        out = Path(args.out)
        paths = [] if args.bound_only else distill_figure(result, out / f"distill_{result['task']}")
        if "mechanism_bound" in result:
            paths += ladder_figure(result, out / f"distill_ladder_{result['task']}")
        for p in [out / "distill.json", *paths]:
            print(f"wrote {p}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lorex", description="Train learned optimizers and reverse-engineer how they work.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("tune", help="tune the baselines over their grids on tuning seeds")
    _task_args(t)
    _eval_args(t)
    t.set_defaults(func=cmd_tune)

    b = sub.add_parser("benchmark", help="tuned baselines (and the learned optimizer) on 128 test seeds")
    _task_args(b)
    _eval_args(b)
    b.add_argument("--optimizer", help="a learned optimizer: shipped name or run folder (default: the task's)")
    b.add_argument("--no-learned", action="store_true", help="baselines only")
    b.add_argument("--members", type=_positive_int("members"), default=5,
                   help="also evaluate up to N members of the optimizer's population (default 5; 1 = it alone)")
    b.add_argument("--out", type=Path, help="write results.json and the loss-curve figure here")
    b.set_defaults(func=cmd_benchmark)

    from lorex.meta import add_train_arguments

    tr = sub.add_parser("train", help="meta-train a learned optimizer")
    _task_args(tr, required=False)
    add_train_arguments(tr, _positive_int, _positive_float)
    tr.add_argument("--seeds", type=_seed, nargs="+", default=None, metavar="SEED",
                    help="a population: one optimizer per root seed, each in OUT/seed-<k> (rerun to continue)")
    tr.add_argument("--out", type=Path, help="run folder (with --seeds: the population's folder)")
    tr.add_argument("--resume", type=Path, help="continue the run in this folder (or every member of a population)")
    tr.add_argument("--distributed", action="store_true",
                    help="multi-host: call jax.distributed.initialize() first (run the same command on every host)")
    tr.add_argument("--coordinator", metavar="HOST:PORT",
                    help="with --distributed: process 0's address (else from the cluster environment)")
    tr.add_argument("--num-processes", type=_positive_int("num-processes"), metavar="N",
                    help="with --distributed and --coordinator: how many processes in all")
    tr.add_argument("--process-id", type=_nonnegative_int("process-id"), metavar="I",
                    help="with --distributed and --coordinator: this process's index, 0 .. N-1")
    tr.set_defaults(func=cmd_train)

    r = sub.add_parser("reproduce", help="the paper's figures and numbers for every task, as report.html")
    r.add_argument("--tasks", nargs="+", default=None, help="default: linreg rosenbrock two_moons digits")
    r.add_argument("--retrain", action="store_true", help="meta-train each optimizer from scratch first")
    r.add_argument("--seed", type=_seed, default=0)
    r.add_argument("--tuning-seeds", type=_positive_int("tuning-seeds"), default=None)
    r.add_argument("--test-seeds", type=_positive_int("test-seeds"), default=128)
    r.add_argument("--members", type=_positive_int("members"), default=5,
                   help="optimizers per task: the reference and the other members of its population (default 5; "
                        "1 = the reference alone)")
    r.add_argument("--set", action="append", metavar="TASK.FIELD=VALUE",
                   help="override a task's config field, e.g. --set digits.channels=[4] (repeatable)")
    r.add_argument("--jobs", type=_positive_int("jobs"), default=None,
                   help="worker processes reporting tasks side by side (default: one per task up to the CPU cores; "
                        "1 = one process); the numbers do not depend on it")
    r.add_argument("--out", type=Path, default=Path("lorex-report"))
    r.set_defaults(func=cmd_reproduce)

    d = sub.add_parser("distill", help="a mechanistic surrogate of a learned optimizer, and the mechanism bound: the "
                       "known mechanisms as one meta-trained optimizer (learned / bound / best baseline, leave-one-out)")
    d.add_argument("--optimizer", required=True, help="shipped name or run folder")
    _task_args(d, required=False)
    d.add_argument("--test-seeds", type=_positive_int("test-seeds"), default=128)
    d.add_argument("--tuning-seeds", type=_positive_int("tuning-seeds"), default=None)
    d.add_argument("--out", type=Path, default=None)
    d.add_argument("--no-bound", action="store_true",
                   help="skip the mechanism bound (meta-training the mechanism family, leave-one-out)")
    d.add_argument("--bound-only", action="store_true",
                   help="only the ladder learned / mechanism bound / best baseline, without the extracted surrogate")
    d.add_argument("--family-steps", type=_positive_int("family-steps"), default=None,
                   help="meta-steps of the mechanism family (default: the task's)")
    d.add_argument("--round-trip", type=_nonnegative_int("round-trip"), default=4,
                   help="random mechanism-family members put through the extraction and back (0: none; default 4, "
                        "one of each kind)")
    d.set_defaults(func=cmd_distill)
    return p


def main(argv=None) -> int:
    from lorex.io import enable_compilation_cache

    parser = build_parser()
    args = parser.parse_args(argv)
    enable_compilation_cache()  # a second run skips compilation; LOREX_COMPILATION_CACHE=off turns it off
    try:
        return args.func(args)
    except LorexError as e:
        print(f"lorex: error: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"lorex: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lorex: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
