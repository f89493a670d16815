"""Memory estimates made before compiling anything, so a size beyond the machine is a clear error, not an XLA
out-of-memory error or an abort.

The estimates count the arrays a computation must hold at once (problems, parameters, optimizer states, loss curves,
and for meta-training the unroll's stored carries); XLA needs at least that much. Sizes come from
``jax.eval_shape`` (nothing is allocated or compiled).
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np

from lorex.errors import LorexError
from lorex.tasks.base import task_name

# Floats held per optimizee parameter while a run steps: parameters, gradient, update, plus the optimizer state.
STATE_FLOATS = {"sgd": 3, "momentum": 4, "rmsprop": 4, "adam": 5}
GIB = 2**30


def available_bytes() -> int:
    """Memory the default device can use: the accelerator's limit, or the host's available memory."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        try:
            stats = dev.memory_stats() or {}
            if stats.get("bytes_limit"):
                return int(stats["bytes_limit"])
        except Exception:  # memory_stats is optional per backend
            pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**62


def _bytes(tree) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(tree))


def problem_sizes(family) -> tuple[int, int, int]:
    """(bytes of one problem, bytes of its parameters, number of parameters), without allocating them."""
    from lorex.evaluate import problem_and_params

    try:
        problem, params = jax.eval_shape(lambda k: problem_and_params(family, k), jax.random.PRNGKey(0))
    except LorexError:
        raise
    except Exception as e:
        name = task_name(family)
        raise LorexError("task", f"sampling a {name} problem failed ({type(e).__name__}: {e})",
                         "a family whose sample/init work under jax.eval_shape") from None
    n = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(params))
    return _bytes(problem), _bytes(params), n


def check(what: str, need: float, hint: str) -> None:
    have = available_bytes()
    if need > have:
        raise LorexError(what, f"needs about {need / GIB:.3g} GiB of memory, this machine has {have / GIB:.3g} GiB",
                         hint)


def evaluation_bytes(family, runs: int, steps: int, floats_per_param: float) -> float:
    """Memory of ``runs`` vmapped runs of ``steps`` steps (problems, parameters and states, loss curves)."""
    problem_b, _, n = problem_sizes(family)
    return float(runs) * (problem_b + 4.0 * n * floats_per_param + 4.0 * (steps + 1) + 8)


def learned_floats(hidden: int) -> float:
    """Floats per coordinate of a GRU-``hidden`` learned optimizer: its state and the gate temporaries."""
    return 3 + 7 * hidden


def check_benchmark(family, *, optimizers, tuning_seeds: int, test_seeds: int, steps: int,
                    learned_hidden: list[int] = (), grid_size=None, search: str = "halving") -> None:
    """Refuse a tuning grid or an evaluation that cannot fit in memory (``grid_size(name)`` -> grid points).

    ``search="grid"`` runs every grid point on every tuning seed at once; ``"halving"`` runs them in compiled chunks
    of :data:`lorex.baselines.HALVING_CHUNK` runs, so that is what has to fit."""
    from lorex.baselines import HALVING_CHUNK, default_grid

    for opt in optimizers:
        g = grid_size(opt) if grid_size else _grid_points(default_grid(opt, family))
        runs = g * tuning_seeds if search == "grid" else min(g * tuning_seeds, HALVING_CHUNK)
        # plus, for halving, every run's key and objective, held for the whole search
        need = evaluation_bytes(family, runs, steps, STATE_FLOATS.get(opt, 5)) + 16.0 * g * tuning_seeds
        at_once = (f"the {opt} grid runs {g} points x {tuning_seeds} seeds at once" if search == "grid"
                   else f"the {opt} search runs {runs} runs at once")
        check("tuning-seeds", need, f"fewer --tuning-seeds ({at_once}), a smaller task (--set) or fewer --steps")
        check("test-seeds", evaluation_bytes(family, test_seeds, steps, STATE_FLOATS.get(opt, 5)),
              "fewer --test-seeds, a smaller task (--set) or fewer --steps")
    for h in learned_hidden:
        check("test-seeds", evaluation_bytes(family, test_seeds, steps, learned_floats(h)),
              "fewer --test-seeds, a smaller task (--set) or fewer --steps")


def _grid_points(grid) -> int:
    return len(grid.learning_rates) * len(grid.second)


def check_training(cfg, family) -> None:
    """Refuse a meta-training config whose meta-step cannot fit in memory."""
    H, D = cfg.hidden, cfg.lopt_config().input_dim
    meta_params = 3 * H * (H + D) + 6 * H + 2
    check("hidden", 4.0 * meta_params * 8, "a smaller --hidden")  # parameters, best copy, Adam state, gradients
    problem_b, _, n = problem_sizes(family)
    T = cfg.horizon()
    carry = 4.0 * n * (H + 2)  # one coordinate-state per parameter, stored per step for the backward pass
    per_problem = problem_b + 4.0 * n * learned_floats(H) + (T + 1) * carry * (1 if cfg.remat else 4)
    check("batch", cfg.batch * per_problem, "a smaller --batch, --hidden, --unroll or task (--set)")
    check("val-batch", cfg.val_batch * (problem_b + 4.0 * n * learned_floats(H)), "a smaller --val-batch")
