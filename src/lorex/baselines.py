"""Hand-designed baselines from optax, tuned per task on tuning seeds over a grid of hyperparameters.

Grid: learning rate log-spaced (``per_decade`` points per decade) × the optimizer's second hyperparameter, over the
ranges the task declares in its policy (:class:`lorex.tasks.TaskPolicy`; the generic ones for a task without one).
Objective: the mean over tuning seeds of the per-run mean log loss (:func:`lorex.evaluate.mean_log_loss`), the
same quantity the learned optimizer is meta-trained on (up to the constant log f₀); a grid point for which any
tuning run diverges scores +inf. The selection is argmin over the grid of that objective on every tuning seed.
Two searches find it: ``"grid"`` evaluates every point on every seed (one compiled, vmapped call);
``"halving"`` (the default, successive halving) evaluates every point on the first few seeds, keeps the best
quarter, adds seeds, and so on until the survivors have run on every seed, so the point it selects has the full
objective and is the grid's whenever the grid's best survives the early rounds (checked per task in
``benchmarks/bench_tuning.py``; the halving search runs in chunks of a separately compiled program, so a run's
objective equals the grid's to float32 rounding, which runs near divergence amplify). A best value on the edge of
its grid is reported as a warning. When every grid point diverges the optimizer is reported as diverged
(``Tuned.diverged``, a warning), at the grid point with the fewest diverged tuning runs, instead of failing (the
halving search then runs the full grid to find that point).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lorex.errors import LorexError
from lorex.evaluate import jit_once, mean_log_loss, run
from lorex.tasks import make, policy_of
from lorex.tasks.base import task_name

# name -> (factory(lr, second), name of the second hyperparameter or None, its default grid, its optax default)
OPTIMIZERS = {
    "sgd": (lambda lr, _: optax.sgd(lr), None, (0.0,), 0.0),
    "momentum": (lambda lr, b: optax.sgd(lr, momentum=b), "momentum",
                 (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.995), 0.9),
    "rmsprop": (lambda lr, d: optax.rmsprop(lr, decay=d), "decay", (0.5, 0.9, 0.99, 0.999, 0.9999), 0.9),
    "adam": (lambda lr, b1: optax.adam(lr, b1=b1), "b1", (0.0, 0.5, 0.8, 0.9, 0.95, 0.99), 0.9),
}
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
# Lower edges that are natural limits (0 = "none of it"), not grid artefacts.
NATURAL_LOWER = {"momentum": 0.0, "adam": 0.0, "rmsprop": 0.0}
SEARCHES = ("halving", "grid")
# Successive halving: round r runs the surviving points on the first ceil(f_r · n) of the n tuning seeds (the runs
# of earlier rounds are kept), then keeps the best 1/HALVING_KEEP of them (at least HALVING_MIN_KEEP, never a
# point that diverged); the last round runs every seed. Runs go in compiled chunks of HALVING_CHUNK (one compilation
# per optimizer, whatever the round's size).
HALVING_SEEDS = (1 / 16, 1 / 4, 1.0)
HALVING_KEEP = 4
HALVING_MIN_KEEP = 3
HALVING_CHUNK = 32


@dataclasses.dataclass(frozen=True)
class Grid:
    learning_rates: tuple[float, ...]
    second: tuple[float, ...]


def default_grid(optimizer: str, family=None, per_decade: int = 4) -> Grid:
    """The tuning grid of ``optimizer`` on a task: its policy's learning-rate range (10^lo..10^hi, ``per_decade``
    points per decade) × its policy's grid of the second hyperparameter, or the optimizer's default grid.

    ``family``: a task family, a task name (built with :func:`lorex.tasks.make`) or None (the generic policy).
    """
    if optimizer not in OPTIMIZERS:
        raise LorexError("optimizer", f"unknown optimizer {optimizer!r}", OPTIMIZERS)
    if isinstance(per_decade, bool) or not isinstance(per_decade, int) or per_decade < 4:
        raise LorexError("per_decade", f"got {per_decade}", "an integer >= 4")
    policy = policy_of(make(family) if isinstance(family, str) else family)
    unknown = [k for k in policy.second_grids if k not in OPTIMIZERS]
    if unknown:
        name = family if isinstance(family, str) else task_name(family)
        raise LorexError(f"{name}.policy.second_grids.{unknown[0]}",
                         "unknown optimizer", OPTIMIZERS)
    lo, hi = policy.lr_range
    n = int(round((hi - lo) * per_decade)) + 1
    lrs = tuple(float(x) for x in np.logspace(lo, hi, n))
    return Grid(lrs, policy.second_grids.get(optimizer, OPTIMIZERS[optimizer][2]))


def default_tuning_seeds(family) -> int:
    """How many tuning seeds the task's policy asks for (32 for a task without a policy)."""
    return policy_of(family).tuning_seeds


@functools.lru_cache(maxsize=None)
def baseline(optimizer: str, learning_rate: float, second: float | None = None) -> optax.GradientTransformation:
    """The optax transformation for one grid point (cached, so evaluating it again does not recompile)."""
    factory, _, _, default = OPTIMIZERS[optimizer]
    return factory(learning_rate, default if second is None else second)


def baseline_from_json(optimizer: str, hyperparameters: dict) -> optax.GradientTransformation:
    """:func:`baseline` at the hyperparameters a tuning reported ({"learning_rate": …, and the second one if any},
    as in :meth:`Tuned.hyperparameters` and a benchmark's rows)."""
    second = [v for k, v in hyperparameters.items() if k != "learning_rate"]
    return baseline(optimizer, float(hyperparameters["learning_rate"]), second[0] if second else None)


@functools.lru_cache(maxsize=32)
def _grid_objective(optimizer: str, family, steps: int):
    factory = OPTIMIZERS[optimizer][0]

    def one(lr, second, key):
        return mean_log_loss(run(factory(lr, second), family, key, steps))

    over_keys = jax.vmap(one, in_axes=(None, None, 0))
    over_grid = jax.vmap(jax.vmap(over_keys, in_axes=(None, 0, None)), in_axes=(0, None, None))
    return jit_once(over_grid)


@functools.lru_cache(maxsize=32)
def _runs_objective(optimizer: str, family, steps: int):
    factory = OPTIMIZERS[optimizer][0]

    def one(lr, second, key):
        return mean_log_loss(run(factory(lr, second), family, key, steps))

    return jit_once(jax.vmap(one))


def _evaluate_runs(optimizer: str, family, steps: int, lrs: np.ndarray, seconds: np.ndarray,
                   keys: np.ndarray) -> np.ndarray:
    """Objective of the runs (lrs[r], seconds[r], keys[r]), in chunks of HALVING_CHUNK (the last one padded).

    Arguments are host arrays, gathered on the host, so that rounds of any size call one compiled program."""
    f = _runs_objective(optimizer, family, steps)
    n = len(lrs)
    idx = np.concatenate([np.arange(n), np.zeros(-n % HALVING_CHUNK, int)])
    lrs, seconds = np.asarray(lrs, np.float32), np.asarray(seconds, np.float32)
    out = [f(lrs[c], seconds[c], keys[c]) for c in np.split(idx, len(idx) // HALVING_CHUNK)]
    return np.concatenate([np.asarray(o, np.float64) for o in out])[:n]


def _halving(optimizer: str, family, steps: int, grid: Grid, keys: jax.Array):
    """Successive halving over ``grid``: (per_run, ran), each (n_lr, n_second, n_seeds), ``ran`` marking the runs
    evaluated; it stops early when every surviving point has diverged."""
    n_lr, n_sec, n = len(grid.learning_rates), len(grid.second), keys.shape[0]
    lrs, secs = np.asarray(grid.learning_rates), np.asarray(grid.second)
    if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        keys = jax.random.key_data(keys)
    keys = np.asarray(keys)  # gathered on the host
    per_run = np.full((n_lr * n_sec, n), np.nan)
    ran = np.zeros((n_lr * n_sec, n), bool)
    alive = np.arange(n_lr * n_sec)  # flat (lr, second) indices, row-major as np.argmin over the grid
    done = 0
    for upto in sorted({min(n, max(1, math.ceil(f * n))) for f in HALVING_SEEDS} | {n}):
        pts, sd = np.repeat(alive, upto - done), np.tile(np.arange(done, upto), len(alive))
        i, j = np.unravel_index(pts, (n_lr, n_sec))
        per_run[pts, sd] = _evaluate_runs(optimizer, family, steps, lrs[i], secs[j], keys[sd])
        ran[pts, sd] = True
        done = upto
        sub = per_run[alive, :upto]
        partial = np.where(np.isfinite(sub).all(axis=-1), sub.mean(axis=-1), np.inf)
        if upto == n or not np.isfinite(partial).any():
            break
        k = max(math.ceil(len(alive) / HALVING_KEEP), HALVING_MIN_KEEP)
        best = np.argsort(partial, kind="stable")[:k]
        alive = np.sort(alive[best[np.isfinite(partial[best])]])
    return per_run.reshape(n_lr, n_sec, n), ran.reshape(n_lr, n_sec, n)


@dataclasses.dataclass
class Tuned:
    optimizer: str
    learning_rate: float
    second_name: str | None
    second: float | None
    objective: float
    grid: Grid
    scores: np.ndarray  # (n_lr, n_second) mean over tuning seeds; +inf where a run diverged; NaN: halving dropped it
    warnings: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)
    diverged: bool = False  # every grid point diverged on at least one tuning seed
    search: str = "grid"
    runs: int = 0  # tuning runs evaluated

    @property
    def hyperparameters(self) -> dict:
        hp = {"learning_rate": self.learning_rate}
        if self.second_name:
            hp[self.second_name] = self.second
        return hp

    def transformation(self) -> optax.GradientTransformation:
        return baseline(self.optimizer, self.learning_rate, self.second)

    def to_json(self) -> dict:
        return {"optimizer": self.optimizer, "hyperparameters": self.hyperparameters,
                "tuning_objective": self.objective, "warnings": self.warnings, "notes": self.notes,
                "tuning_diverged": self.diverged, "search": self.search, "tuning_runs": self.runs,
                "grid": {"learning_rate": list(self.grid.learning_rates),
                         self.second_name or "none": list(self.grid.second)}}


def tune(optimizer: str, family, keys: jax.Array, steps: int | None = None, grid: Grid | None = None,
         search: str = "halving") -> Tuned:
    """Tune ``optimizer`` on the problems of ``keys`` (tuning seeds): argmin over ``grid`` of the objective.

    ``search``: ``"halving"`` (successive halving, see the module) or ``"grid"`` (every point on every seed, in
    one compiled call).
    """
    if optimizer not in OPTIMIZERS:
        raise LorexError("optimizer", f"unknown optimizer {optimizer!r}", OPTIMIZERS)
    if search not in SEARCHES:
        raise LorexError("search", f"unknown search {search!r}", SEARCHES)
    steps = family.steps if steps is None else steps
    grid = grid or default_grid(optimizer, family)
    runs = 0
    if search == "halving":
        per_run, ran = _halving(optimizer, family, steps, grid, keys)
        runs = int(ran.sum())
        ok = ran.all(axis=-1) & np.isfinite(per_run).all(axis=-1)
    if search == "grid" or not ok.any():  # or a halving search in which no point finished finite: the full grid
        per_run = _grid_objective(optimizer, family, steps)(
            jnp.asarray(grid.learning_rates, jnp.float32), jnp.asarray(grid.second, jnp.float32), keys)
        per_run = np.asarray(per_run, np.float64)
        ran = np.ones(per_run.shape, bool)
        runs += per_run.size
    finite = np.isfinite(per_run)
    scores = np.where(finite.all(axis=-1), per_run.mean(axis=-1), np.inf)
    scores = np.where(ran.all(axis=-1), scores, np.nan)
    second_name = OPTIMIZERS[optimizer][1]
    msgs, notes = [], []
    diverged = not np.isfinite(scores).any()
    if diverged:
        # nothing to tune: report the point with the fewest diverged runs (then the best mean of the others)
        n_div = (~finite).sum(axis=-1)
        with np.errstate(invalid="ignore"):
            rest = np.where(finite, per_run, 0.0).sum(axis=-1) / np.maximum(finite.sum(axis=-1), 1)
        rest = np.where(finite.any(axis=-1), rest, np.inf)
        order = np.lexsort((rest.ravel(), n_div.ravel()))
        i, j = np.unravel_index(order[0], scores.shape)
        msgs.append(f"{optimizer}: DIVERGED: every grid point diverged on the tuning seeds (the fewest, "
                    f"{int(n_div[i, j])} of {per_run.shape[-1]}, at learning_rate {grid.learning_rates[i]:.3g}, "
                    "shown)")
    else:
        i, j = np.unravel_index(np.argmin(np.where(np.isnan(scores), np.inf, scores)), scores.shape)
    if not diverged and i in (0, len(grid.learning_rates) - 1) and len(grid.learning_rates) > 1:
        msgs.append(f"{optimizer}: best learning_rate {grid.learning_rates[i]:.3g} is on the grid edge "
                    f"[{grid.learning_rates[0]:.3g}, {grid.learning_rates[-1]:.3g}]: not tuned")
    if second_name and len(grid.second) > 1 and not diverged:
        on_low = j == 0 and grid.second[0] != NATURAL_LOWER.get(optimizer)
        on_high = j == len(grid.second) - 1
        if on_high and optimizer == "rmsprop" and 1.0 / (1.0 - grid.second[j]) >= 10 * steps:
            # With 1/(1 - decay) >= 10 T the average never forgets within the run: RMSProp is then Adagrad with
            # lr ∝ √(1 - decay), so larger decays lie on a flat ridge already on the grid (lr rescaled).
            notes.append(f"{optimizer}: best decay {grid.second[j]:g} is at its Adagrad limit "
                         f"(1/(1-decay) >= 10 x {steps} steps); larger values are equivalent to a smaller lr")
        elif on_low or on_high:
            msgs.append(f"{optimizer}: best {second_name} {grid.second[j]:g} is on the grid edge "
                        f"[{grid.second[0]:g}, {grid.second[-1]:g}]: not tuned")
    for m in msgs:
        warnings.warn(m, stacklevel=2)
    return Tuned(optimizer, float(grid.learning_rates[i]), second_name,
                 float(grid.second[j]) if second_name else None, float(scores[i, j]), grid, scores, msgs, notes,
                 diverged, search, runs)
