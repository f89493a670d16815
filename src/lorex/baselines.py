"""Hand-designed baselines from optax, tuned per task on tuning seeds by one compiled, vmapped grid call.

Grid: learning rate log-spaced (``per_decade`` points per decade) × the optimizer's second hyperparameter, over the
ranges the task declares in its policy (:class:`lorex.tasks.TaskPolicy`; the generic ones for a task without one).
Objective: the mean over tuning seeds of the per-run mean log loss (:func:`lorex.evaluate.mean_log_loss`), the
same quantity the learned optimizer is meta-trained on (up to the constant log f₀); a grid point for which any
tuning run diverges scores +inf. A best value on the edge of its grid is reported as a warning. When every grid
point diverges the optimizer is reported as diverged (``Tuned.diverged``, a warning), at the grid point with the
fewest diverged tuning runs, instead of failing.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lorex.errors import LorexError
from lorex.evaluate import mean_log_loss, run
from lorex.tasks import make, policy_of

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
        name = family if isinstance(family, str) else getattr(family, "name", type(family).__name__)
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


@functools.lru_cache(maxsize=32)
def _grid_objective(optimizer: str, family, steps: int):
    factory = OPTIMIZERS[optimizer][0]

    def one(lr, second, key):
        return mean_log_loss(run(factory(lr, second), family, key, steps))

    over_keys = jax.vmap(one, in_axes=(None, None, 0))
    over_grid = jax.vmap(jax.vmap(over_keys, in_axes=(None, 0, None)), in_axes=(0, None, None))
    return jax.jit(over_grid)


@dataclasses.dataclass
class Tuned:
    optimizer: str
    learning_rate: float
    second_name: str | None
    second: float | None
    objective: float
    grid: Grid
    scores: np.ndarray  # (n_lr, n_second) mean over tuning seeds; +inf where a run diverged
    warnings: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)
    diverged: bool = False  # every grid point diverged on at least one tuning seed

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
                "tuning_diverged": self.diverged,
                "grid": {"learning_rate": list(self.grid.learning_rates),
                         self.second_name or "none": list(self.grid.second)}}


def tune(optimizer: str, family, keys: jax.Array, steps: int | None = None, grid: Grid | None = None) -> Tuned:
    """Grid-search ``optimizer`` on the problems of ``keys`` (tuning seeds) in one compiled call."""
    if optimizer not in OPTIMIZERS:
        raise LorexError("optimizer", f"unknown optimizer {optimizer!r}", OPTIMIZERS)
    steps = family.steps if steps is None else steps
    grid = grid or default_grid(optimizer, family)
    per_run = _grid_objective(optimizer, family, steps)(
        jnp.asarray(grid.learning_rates, jnp.float32), jnp.asarray(grid.second, jnp.float32), keys)
    per_run = np.asarray(per_run, np.float64)
    finite = np.isfinite(per_run)
    scores = np.where(finite.all(axis=-1), per_run.mean(axis=-1), np.inf)
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
        i, j = np.unravel_index(np.argmin(scores), scores.shape)
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
                 diverged)
