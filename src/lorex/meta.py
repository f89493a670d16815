"""Meta-training: backpropagation through the unrolled optimization of a batch of sampled problems.

Meta-objective per problem (``objective``): ``log``  L = (1/T) Σ_{t=1..T} log(f_t / f_0);
``ratio``  L = (1/T) Σ f_t / f_0;  ``final``  L = log(f_T / f_0);  ``log_final``  L = (1/T) Σ log(f_t / f_0) +
log(f_T / f_0). f_t is the loss at step t on that step's data (:func:`lorex.evaluate.run`), and f_T that of the
final parameters on the whole problem (for a stochastic family its whole training part). Averaged over a batch of problems (vmap, split
over a device mesh when there are several devices). The unroll (:func:`fused_batch_objective`) computes what
:func:`lorex.evaluate.run` with the learned optimizer's transformation computes, with the same cell, features and
readout (:mod:`lorex.lopt`), arranged for speed; tests check it against that reference. The meta-optimizer is optax
Adam with global-norm clipping and a cosine-decaying rate, wrapped in ``optax.apply_if_finite``: a meta-step whose
loss, gradient or updated parameters are not finite is skipped and counted. The best parameters by validation loss
are kept; a run whose best validation never beats its starting point (or whose every step was skipped) fails with
:class:`~lorex.errors.RunError` and writes no trained optimizer.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.ad_checkpoint import checkpoint_name
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lorex import io, lopt, seeds, tasks
from lorex.errors import LorexError, RunError, check_choice, check_finite, check_positive_int, check_seed
from lorex.evaluate import LOG_FLOOR, problem_and_params, run, step_view
from lorex.progress import bar as progress_bar
from lorex.tasks.base import task_name

OBJECTIVES = ("log", "ratio", "final", "log_final")
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.npz"
# A loss this many times its initial value counts as blown up: capped so one bad problem cannot dominate the batch.
LOSS_CAP = 1e4


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """Everything that defines a meta-training run (task, optimizer architecture, meta-optimization)."""

    task: str = "linreg"
    task_overrides: tuple = ()  # ((field, value), ...)
    hidden: int = 32
    features: str = "raw"
    input_scale: float = 1.0
    output_scale: float = 0.1
    steps: int = 2000  # meta-steps
    batch: int = 32
    unroll: int | None = None  # horizon T (default: the task's)
    truncation: int | None = None
    first_order: bool = False
    objective: str = "log"
    meta_lr: float = 3e-3
    meta_lr_final: float = 1e-4
    clip: float = 1.0
    remat: bool = True
    val_every: int = 100
    val_batch: int = 64
    checkpoint_every: int = 100
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.task, str) or not self.task:
            raise LorexError("task", f"got {self.task!r}", tasks.names() + ["module:attribute"])
        if not isinstance(self.task_overrides, tuple) or not all(
                isinstance(kv, tuple) and len(kv) == 2 and isinstance(kv[0], str) for kv in self.task_overrides):
            raise LorexError("task_overrides", f"got {self.task_overrides!r}", "FIELD=VALUE pairs")
        for f in ("steps", "batch", "val_every", "val_batch", "checkpoint_every"):
            check_positive_int(f, getattr(self, f))
        check_choice("objective", self.objective, OBJECTIVES)
        for f in ("meta_lr", "meta_lr_final", "clip", "input_scale", "output_scale"):
            check_finite(f, getattr(self, f), positive=True)
        if self.meta_lr_final > self.meta_lr:
            raise LorexError("meta_lr_final", f"{self.meta_lr_final} is larger than meta_lr {self.meta_lr}",
                             "a value <= meta_lr (the rate decays from meta_lr to meta_lr_final)")
        for f in ("first_order", "remat"):
            if not isinstance(getattr(self, f), bool):
                raise LorexError(f, f"got {getattr(self, f)!r}", "true or false")
        check_seed("seed", self.seed)
        if self.unroll is not None:
            check_positive_int("unroll", self.unroll)
        if self.truncation is not None:
            check_positive_int("truncation", self.truncation)
            if (self.unroll or self.family().steps) % self.truncation:
                raise LorexError("truncation", f"{self.truncation} does not divide the horizon",
                                 "a divisor of the unroll length")
        self.lopt_config()  # validates hidden, features and scales

    def family(self):
        return tasks.make(self.task, **dict(self.task_overrides))

    def horizon(self) -> int:
        return self.unroll or self.family().steps

    def lopt_config(self) -> lopt.LOptConfig:
        return lopt.LOptConfig(self.hidden, self.features, self.input_scale, self.output_scale)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["task_overrides"] = dict(self.task_overrides)
        return d

    @classmethod
    def from_json(cls, d, source: str = "config", trusted_task: str | None = None) -> "MetaConfig":
        """The config stored in a file (``source`` names it in errors).

        A file never imports code: its ``task`` must be a registered name, unless it equals ``trusted_task``
        (a ``module:attribute`` the user passed on the command line).
        """
        if not isinstance(d, dict):
            raise LorexError(source, f"expected an object, got {type(d).__name__}", "a config written by lorex")
        d = dict(d)
        fields = {f.name for f in dataclasses.fields(cls)}
        bad = set(d) - fields
        if bad:
            raise LorexError(source, f"unknown fields {sorted(bad)}", sorted(fields))
        task = d.get("task", cls.task)
        if not (isinstance(task, str) and task in tasks.names()) and task != trusted_task:
            from lorex.tasks.base import make_from_file

            make_from_file(task, source)  # raises: files may only name registered tasks
        overrides = d.get("task_overrides", {})
        if not isinstance(overrides, dict):
            raise LorexError(f"{source}.task_overrides", f"got {overrides!r}", "an object FIELD: VALUE")
        d["task_overrides"] = tuple(sorted((k, _hashable(v)) for k, v in overrides.items()))
        try:
            return cls(**d)
        except LorexError as e:
            raise LorexError(f"{source}.{e.field}", str(e).split(": ", 1)[1]) from None
        except (TypeError, ValueError) as e:
            raise LorexError(source, f"invalid config ({type(e).__name__}: {e})") from None

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]


def _hashable(v):
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


# Presets on top of a task's defaults. "paper": the paper's optimizer size, GRU-256, and 32 problems per
# meta-step. Full backpropagation through the unroll where it is stable (linreg, digits); where the task's defaults
# replace it (Rosenbrock: truncated first-order meta-gradients, since full second-order ones reached norms ~1e25;
# two moons: first-order, since second-order through the 200-step network unroll costs ~3x the time and memory),
# the preset keeps that replacement.
PRESETS: dict[str, dict] = {"paper": {"hidden": 256, "batch": 32}}


# MetaConfig fields a task's policy may set (the task itself, its overrides and the seed are the run's choice).
_POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(MetaConfig) if f.name not in
                       ("task", "task_overrides", "seed"))


def task_defaults(family) -> dict:
    """The family's meta-training defaults: its policy's ``meta_defaults`` (:class:`lorex.tasks.TaskPolicy`;
    none for a family without a policy), each a :class:`MetaConfig` field."""
    defaults = dict(tasks.policy_of(family).meta_defaults)
    for k in defaults:
        if k not in _POLICY_FIELDS:
            name = task_name(family)
            raise LorexError(f"{name}.policy.meta_defaults.{k}", "not a MetaConfig field a task may set",
                             _POLICY_FIELDS)
    return defaults


def default_config(task: str, *, preset: str | None = None, **overrides) -> MetaConfig:
    """The task's shipped defaults (:func:`task_defaults` of the family ``task`` names), then the ``preset`` (None
    or a :data:`PRESETS` name), then ``overrides``."""
    if preset is not None:
        check_choice("preset", preset, tuple(PRESETS))
    defaults = task_defaults(tasks.make(task))
    try:
        MetaConfig(task=task, **defaults)
    except LorexError as e:  # name the policy as the culprit of a bad default
        raise LorexError(f"{task}.policy.meta_defaults.{e.field}", str(e).split(": ", 1)[1]) from None
    return MetaConfig(task=task, **{**defaults, **PRESETS.get(preset, {}), **overrides})


# ------------------------------------------------------------------------------------------- objective and step


def objective_from_losses(losses: jax.Array, objective: str) -> jax.Array:
    """Meta-objective of one run from its losses (T + 1,); f_t/f_0 is capped at LOSS_CAP."""
    ratio = jnp.minimum(losses / losses[0], LOSS_CAP)
    log_ratio = jnp.log(jnp.maximum(ratio, LOG_FLOOR))
    if objective == "log":
        return jnp.mean(log_ratio[1:])
    if objective == "ratio":
        return jnp.mean(ratio[1:])
    if objective == "log_final":
        return jnp.mean(log_ratio[1:]) + log_ratio[-1]
    return log_ratio[-1]


def batch_objective(params, keys, cfg: MetaConfig, family, horizon: int, *, fused: bool = True) -> jax.Array:
    """Mean meta-objective over the problems of ``keys`` for learned-optimizer parameters ``params``.

    ``fused`` (default): :func:`fused_batch_objective`, the same value and meta-gradient (to float32 rounding)
    computed faster; ``fused=False``: :func:`reference_batch_objective`, each problem unrolled by
    :func:`lorex.evaluate.run` with the optax transformation (used where the fused form does not apply).
    """
    if fused and fusable(family, keys):
        return fused_batch_objective(params, keys, cfg, family, horizon)
    return reference_batch_objective(params, keys, cfg, family, horizon)


def fusable(family, keys) -> bool:
    """The fused unroll ravels each problem's parameters into one vector: every leaf must share one float dtype."""
    shapes = jax.eval_shape(lambda k: problem_and_params(family, k)[1], keys[0])
    dtypes = {leaf.dtype for leaf in jax.tree_util.tree_leaves(shapes)}
    return len(dtypes) == 1 and jnp.issubdtype(dtypes.pop(), jnp.floating)


def first_order_value_and_grad(loss_fn):
    """``(f(x), ∇f(x))`` of ``loss_fn(x, data)`` (x a vector) whose derivative treats ∇f as a constant:
    d f = ⟨∇f, dx⟩ and d(∇f) = 0 (first-order meta-gradients), so differentiating it reuses the gradient the
    forward pass computed instead of differentiating the task again. ``data`` is treated as constant (in
    meta-training it depends on the problem keys only)."""

    @jax.custom_jvp
    def value_and_grad(x, data):
        return jax.value_and_grad(loss_fn)(x, data)

    @value_and_grad.defjvp
    def _jvp(primals, tangents):
        x, data = primals
        dx, _ = tangents
        loss, g = value_and_grad(x, data)
        return (loss, g), (jnp.dot(g, dx), jnp.zeros_like(g))

    return value_and_grad


TASK_SAVED = ("lorex_task_loss", "lorex_task_grad")  # what the rematerialized unroll keeps of each step
# ... and the GRU's gates too (4H numbers per coordinate-step, lopt.GATES_NAME) while they fit in this many bytes over
# the unroll: then the backward pass does not recompute the cell's matmul. Measured with
# benchmarks/bench_meta_step.py (identical parameters either way): 1.10-1.19x faster on linreg GRU-256 (131 MB of
# gates) and 1.07-1.13x on linreg GRU-32 (16 MB), but 0.86x on two moons as shipped (485 MB) and 0.74x with 3.3x the
# memory on two moons GRU-32/batch 32 (3.9 GB), where recomputing the small-H gates costs less than storing them.
SAVE_GATES_MAX_BYTES = 256 * 2**20


def fused_batch_objective(params, keys, cfg: MetaConfig, family, horizon: int) -> jax.Array:
    """:func:`reference_batch_objective` computed as one unroll of the whole batch.

    The same maths: per problem, parameters x (raveled to a vector of N), per step (f_t, g_t) = (f, ∇f)(x_t),
    (h, u) = :func:`lorex.lopt.step` (h, g_t), x_{t+1} = x_t + u; the objective from f_0…f_T. Differences, for
    speed only: only the task is vmapped over problems, and the learned optimizer's step is applied once per time
    step to the (problems × N) coordinates, with the cell's hand-written backward
    (:func:`lorex.lopt.gru_cell_fast_vjp`); with ``first_order`` the loss's derivative reuses the gradient
    (:func:`first_order_value_and_grad`); with ``remat`` each step's loss and gradient are stored, so the
    backward pass recomputes the optimizer's step only, never the task; where the cell's gates fit in
    ``SAVE_GATES_MAX_BYTES`` they are stored too, and the step's matmuls are not recomputed either.
    """
    config = cfg.lopt_config()
    problems, x0 = jax.vmap(lambda k: problem_and_params(family, k))(keys)
    flat0 = jax.vmap(lambda p: ravel_pytree(p)[0])(x0)
    unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], x0))[1]
    view = step_view(family)

    def loss_fn(x, data):
        return family.loss(unravel(x), data)

    value_and_grad = first_order_value_and_grad(loss_fn) if cfg.first_order else jax.value_and_grad(loss_fn)
    task = jax.vmap(lambda x, problem, t: value_and_grad(x, view(problem, t)), in_axes=(0, 0, None))

    def body(carry, t):
        x, h = carry
        loss, g = task(x, problems, t)
        loss, g = checkpoint_name(loss, TASK_SAVED[0]), checkpoint_name(g, TASK_SAVED[1])
        h, u = lopt.step(params, config, h, g.astype(h.dtype), fast_vjp=True)  # dtypes as the optax transformation
        return (x + u.astype(x.dtype), h), loss

    h0 = jnp.asarray(params["h0"])
    if cfg.remat:
        saved = TASK_SAVED
        if horizon * flat0.size * 4 * h0.shape[-1] * h0.dtype.itemsize <= SAVE_GATES_MAX_BYTES:
            saved += (lopt.GATES_NAME,)
        body = jax.checkpoint(body, policy=jax.checkpoint_policies.save_only_these_names(*saved))
    carry = (flat0, jnp.broadcast_to(h0, (*flat0.shape, h0.shape[-1])))
    ts = jnp.arange(horizon)
    truncation = cfg.truncation
    if truncation is None or truncation >= horizon:
        carry, losses = jax.lax.scan(body, carry, ts)
    else:
        def window(carry, ts_window):
            return jax.lax.scan(body, jax.lax.stop_gradient(carry), ts_window)

        carry, losses = jax.lax.scan(window, carry, ts.reshape(-1, truncation))
        losses = losses.reshape(horizon, -1)
    final = jax.vmap(loss_fn)(carry[0], problems)  # on the whole problem, as lorex.evaluate.unroll
    losses = jnp.concatenate([losses.T, final[:, None]], axis=1)
    return jnp.mean(jax.vmap(lambda f: objective_from_losses(f, cfg.objective))(losses))


def reference_batch_objective(params, keys, cfg: MetaConfig, family, horizon: int) -> jax.Array:
    """The meta-objective as written: each problem unrolled by :func:`lorex.evaluate.run` with the optax
    transformation (vmapped over problems), autodiff throughout."""
    tx = lopt.learned_optimizer(params, cfg.lopt_config())

    def one(key):
        losses = run(tx, family, key, horizon, remat=cfg.remat, truncation=cfg.truncation,
                     first_order=cfg.first_order)
        return objective_from_losses(losses, cfg.objective)

    return jnp.mean(jax.vmap(one)(keys))


def meta_optimizer(cfg: MetaConfig) -> optax.GradientTransformation:
    schedule = optax.cosine_decay_schedule(cfg.meta_lr, cfg.steps, alpha=cfg.meta_lr_final / cfg.meta_lr)
    inner = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(schedule))
    return optax.apply_if_finite(inner, max_consecutive_errors=1_000_000)


def batch_mesh() -> Mesh:
    """A 1-D mesh over every device, axis ``batch``: the batch of problems is split over it."""
    return Mesh(np.array(jax.devices()), ("batch",))


def make_meta_step(cfg: MetaConfig, family, mesh: Mesh | None = None):
    """``meta_step(params, opt_state, keys) -> (params, opt_state, loss)``, jitted; one code path for 1..n devices.

    ``keys`` (batch, 2) are placed split over ``mesh`` (axis ``batch``); parameters are replicated. XLA partitions
    the vmapped unroll over devices and all-reduces the mean and the meta-gradient.
    """
    mesh = mesh or batch_mesh()
    check_batch(cfg, mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec("batch"))
    jitted = _jitted_meta_step(dataclasses.replace(cfg, seed=0), family, mesh)

    def place(params, opt_state):
        # the state enters with the sharding the step returns it with (replicated over the mesh): a fresh or loaded
        # state sits on one device, and without this the second call would compile the step a second time
        return jax.device_put((params, opt_state), replicated)

    def step(params, opt_state, keys):
        return jitted(*place(params, opt_state), shard_batch(keys, split))

    step.lower = lambda p, s, k: jitted.lower(*place(p, s), shard_batch(k, split))
    step.compilations = jitted._cache_size  # how many times the step was compiled (tests: exactly once)
    return step


@functools.lru_cache(maxsize=8)
def _jitted_meta_step(cfg: MetaConfig, family, mesh: Mesh):
    # keyed on the config without its seed (the seed only chooses the keys and the initial weights), so the members
    # of a population, trained one after another in one process, share one compiled step
    horizon = cfg.horizon()
    opt = meta_optimizer(cfg)
    replicated = NamedSharding(mesh, PartitionSpec())

    def meta_step(params, opt_state, keys):
        loss, grads = jax.value_and_grad(batch_objective)(params, keys, cfg, family, horizon)
        params, opt_state = guarded_update(opt, params, opt_state, grads, loss)
        return params, opt_state, loss

    return jax.jit(meta_step, donate_argnums=(0, 1), out_shardings=(replicated, replicated, replicated))


def check_batch(cfg: MetaConfig, mesh: Mesh | None = None) -> None:
    """The batch of problems is split over the devices, so it must divide by their number."""
    n = (mesh or batch_mesh()).size
    if cfg.batch % n:
        raise LorexError("batch", f"{cfg.batch} is not divisible by the {n} devices", f"a multiple of {n}")


def guarded_update(opt, params, opt_state, grads, loss):
    """Apply one meta-optimizer step unless the loss, the gradient or the updated parameters are not finite.

    ``opt`` is :func:`meta_optimizer` (``apply_if_finite`` skips non-finite losses and gradients); an update that
    overflows finite parameters (e.g. a huge meta learning rate) is skipped here too, counted the same way, so a
    non-finite parameter can never be applied or checkpointed.
    """
    grads = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(loss), g, jnp.nan), grads)
    updates, new_state = opt.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree_util.tree_leaves(new_params)]))
    skipped_here = jnp.logical_and(new_state.last_finite, jnp.logical_not(ok))  # not yet counted as skipped
    keep_old = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
    state = new_state._replace(
        inner_state=keep_old(new_state.inner_state, opt_state.inner_state),
        notfinite_count=jnp.where(skipped_here, opt_state.notfinite_count + 1, new_state.notfinite_count),
        last_finite=jnp.logical_and(new_state.last_finite, ok),
        total_notfinite=jnp.where(skipped_here, opt_state.total_notfinite + 1, new_state.total_notfinite))
    return keep_old(new_params, params), state


def shard_batch(keys, sharding: NamedSharding) -> jax.Array:
    """A global array of problem keys split over ``sharding``; every process computes the same keys and places only
    its own devices' rows, so the same code runs on one device, several, or several hosts (``jax.distributed``)."""
    host = np.asarray(keys)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def make_validation(cfg: MetaConfig, family):
    """``validate(params)``: the meta-objective on the run's fixed validation problems (stream "validation")."""
    keys = seeds.keys(cfg.seed, "validation", cfg.val_batch)
    f = _jitted_validation(dataclasses.replace(cfg, seed=0), family)
    return lambda p: f(p, keys)


@functools.lru_cache(maxsize=8)
def _jitted_validation(cfg: MetaConfig, family):
    horizon = cfg.horizon()
    return jax.jit(lambda p, keys: batch_objective(p, keys, cfg, family, horizon))


def step_keys(cfg: MetaConfig, step: int) -> jax.Array:
    """The batch of problem keys of meta-step ``step`` (stateless, so a resumed run draws the same problems)."""
    return jax.random.split(jax.random.fold_in(seeds.stream(cfg.seed, "meta_train"), step), cfg.batch)


# ------------------------------------------------------------------------------------------- training state/IO


@dataclasses.dataclass
class TrainState:
    params: dict
    opt_state: object
    best_params: dict
    step: int = 0
    best_val: float = float("inf")
    best_step: int = -1
    loss_history: list = dataclasses.field(default_factory=list)
    val_history: list = dataclasses.field(default_factory=list)  # [step, val]
    wall_seconds: float = 0.0

    def skipped(self) -> int:
        return int(self.opt_state.total_notfinite)


def init_state(cfg: MetaConfig) -> TrainState:
    params = lopt.init_params(seeds.stream(cfg.seed, "init"), cfg.lopt_config())
    return TrainState(params, meta_optimizer(cfg).init(params), jax.tree_util.tree_map(jnp.copy, params))


def save_checkpoint(run_dir: Path, cfg: MetaConfig, st: TrainState) -> None:
    """One ``.npz`` (atomic): arrays of the state, histories and the config digest, so it is all-or-nothing."""
    tree = {"params": st.params, "opt_state": st.opt_state, "best_params": st.best_params}
    scalars = {"step": st.step, "best_val": st.best_val, "best_step": st.best_step,
               "wall_seconds": st.wall_seconds}
    arrays = {f"state{n}": np.asarray(x) for n, x in zip(io.leaf_names(tree), jax.tree_util.tree_leaves(tree))}
    arrays.update({f"scalar_{k}": np.asarray(v) for k, v in scalars.items()})
    arrays["loss_history"] = np.asarray(st.loss_history, np.float64)
    arrays["val_history"] = np.asarray(st.val_history, np.float64).reshape(-1, 2)
    arrays["config_digest"] = np.asarray(cfg.digest())
    _check_run_dir(run_dir)
    with io.atomic_write(run_dir / CHECKPOINT_FILE, make_parents=False) as f:
        np.savez(f, **arrays)


def _check_run_dir(run_dir: Path) -> None:
    if not (run_dir / RUN_FILE).is_file():
        raise RunError(str(run_dir), f"the run folder (its {RUN_FILE}) disappeared during the run; stopped without "
                       "recreating it")


def load_checkpoint(run_dir: Path, cfg: MetaConfig) -> TrainState:
    path = run_dir / CHECKPOINT_FILE
    template = init_state(cfg)
    tree = {"params": template.params, "opt_state": template.opt_state, "best_params": template.best_params}
    names = [f"state{n}" for n in io.leaf_names(tree)]
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    try:
        with np.load(path, allow_pickle=False) as data:
            d = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise LorexError(str(path), "no checkpoint in this folder") from None
    except Exception as e:  # zip/npy format errors come in several types
        raise LorexError(str(path), f"corrupt checkpoint ({type(e).__name__}: {e})") from None
    if str(d.get("config_digest", "")) != cfg.digest():
        raise LorexError(str(path), "belongs to another config (config digest differs from run.json)")
    out = []
    for n, ref in zip(names, leaves):
        if n not in d or d[n].shape != np.shape(ref):
            raise LorexError(str(path), f"array {n} missing or of the wrong shape; it belongs to another config")
        out.append(jnp.asarray(d[n], dtype=jnp.asarray(ref).dtype))
    t = jax.tree_util.tree_unflatten(treedef, out)
    return TrainState(t["params"], t["opt_state"], t["best_params"], int(d["scalar_step"]),
                      float(d["scalar_best_val"]), int(d["scalar_best_step"]), d["loss_history"].tolist(),
                      d["val_history"].tolist(), float(d["scalar_wall_seconds"]))


# ----------------------------------------------------------------------------------------------- the loop


def train(cfg: MetaConfig, out: str | Path, *, progress: bool = True, stop_after: int | None = None) -> Path:
    """Meta-train from scratch into the run folder ``out``; returns it. ``stop_after`` ends early (for tests)."""
    out = Path(out)
    check_before_work(cfg, out)  # everything that can be checked before anything is written
    if jax.process_index() == 0:
        if (out / RUN_FILE).exists():
            raise LorexError("out", f"{out} already holds a run", ["a new folder", f"--resume {out}"])
        io.save_json(out / RUN_FILE, {"format_version": io.FORMAT_VERSION, "config": cfg.to_json(),
                                      "versions": io.versions()})
    return _loop(cfg, out, init_state(cfg), progress, stop_after)


def train_or_resume(cfg: MetaConfig, out: str | Path, *, progress: bool = True,
                    stop_after: int | None = None) -> Path:
    """The finished run of ``cfg`` in ``out``: kept if finished, resumed if interrupted, started if absent.

    A folder holding a run of another configuration is an error (nothing a user trained is overwritten).
    """
    out = Path(out)
    if not (out / RUN_FILE).exists():
        return train(cfg, out, progress=progress, stop_after=stop_after)
    stored = load_run_config(out)
    if stored.digest() != cfg.digest():
        raise LorexError(str(out), "holds a meta-training run with another configuration",
                         ["a new --out folder", "the same configuration", "delete that run"])
    if (out / lopt.META_FILE).exists():
        return out
    return resume(out, progress=progress, stop_after=stop_after)


def member_dir(out: str | Path, seed: int) -> Path:
    """The run folder of the population member with meta-training root seed ``seed``: ``out/seed-<seed>``."""
    return Path(out) / f"{lopt.MEMBER_PREFIX}{seed}"


def train_population(cfg: MetaConfig, seeds, out: str | Path, *, progress: bool = True,
                     stop_after: int | None = None) -> list[Path]:
    """One optimizer per meta-training root seed, each in its own run folder ``out/seed-<k>``.

    Every member has ``cfg`` with ``seed = k``, so its streams (initial weights, meta-batches, validation) are split
    from root seed k and disjoint from the other members'. Members are trained one after another; finished ones
    are kept and interrupted ones resumed, so rerunning the command (or ``lorex train --resume out``) continues.
    Several processes may share the work by taking disjoint seeds into the same ``out``.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise LorexError("seeds", "no seeds given", "one or more integer seeds, e.g. --seeds 0 1 2 3 4")
    if len(set(seeds)) != len(seeds):
        raise LorexError("seeds", f"repeated seeds in {seeds}", "distinct seeds")
    members = [dataclasses.replace(cfg, seed=s) for s in seeds]  # validates every seed before any work
    for c in members:
        check_before_work(c, member_dir(out, c.seed))
    return [train_or_resume(c, member_dir(out, c.seed), progress=progress, stop_after=stop_after)
            for c in members]


def population_members(out: str | Path) -> list[Path]:
    """The member run folders ``out/seed-<k>`` (those holding a run.json), by seed."""
    return list(lopt.seed_folders(out, RUN_FILE).values())


def check_before_work(cfg: MetaConfig, out: Path) -> None:
    """Validate the task, the output folder, the batch against the devices and the memory a meta-step needs."""
    from lorex import resources

    io.check_out_dir(out, "out")
    family = cfg.family()
    check_batch(cfg)
    resources.check_training(cfg, family)


def resume(out: str | Path, *, progress: bool = True, stop_after: int | None = None,
           trusted_task: str | None = None) -> Path:
    """Continue the run in ``out`` from its last checkpoint (or from scratch if it has none yet)."""
    out = Path(out)
    cfg = load_run_config(out, trusted_task)
    check_before_work(cfg, out)
    st = load_checkpoint(out, cfg) if (out / CHECKPOINT_FILE).exists() else init_state(cfg)
    if jax.process_index() == 0:
        io.remove_orphaned_tmp(out)  # temporary files of writes a crash interrupted
    return _loop(cfg, out, st, progress, stop_after)


def load_run_config(out: str | Path, trusted_task: str | None = None) -> MetaConfig:
    """The :class:`MetaConfig` of the run folder ``out`` (its run.json); a task there must be a registered name
    unless it equals ``trusted_task`` (given by the user on the command line)."""
    path = Path(out) / RUN_FILE
    meta = io.load_json(path)
    if not isinstance(meta, dict):
        raise LorexError(str(path), f"expected an object, got {type(meta).__name__}", "a run.json written by lorex")
    if meta.get("format_version") != io.FORMAT_VERSION:
        raise LorexError(str(path), f"format_version {meta.get('format_version')!r}", [str(io.FORMAT_VERSION)])
    if "config" not in meta:
        raise LorexError(str(path), "has no config", "a run.json written by lorex")
    return MetaConfig.from_json(meta["config"], f"{path}: config", trusted_task)


def _loop(cfg: MetaConfig, out: Path, st: TrainState, progress: bool, stop_after: int | None) -> Path:
    family = cfg.family()
    meta_step = make_meta_step(cfg, family)
    validate = make_validation(cfg, family)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    main = jax.process_index() == 0  # with several hosts, one writes files and shows progress
    bar = progress_bar(total=cfg.steps, initial=st.step, desc=f"meta-train {cfg.task} (seed {cfg.seed})",
                       disable=not (progress and main), dynamic_ncols=True)
    t_start = time.perf_counter() - st.wall_seconds
    if st.step == 0 and not st.val_history:  # the starting point: training must beat it
        val0 = float(validate(st.params))
        st.val_history.append([0, val0])
        st.best_val, st.best_step = (val0 if np.isfinite(val0) else float("inf")), 0
    val = st.best_val
    try:
        while st.step < end:
            st.params, st.opt_state, loss = meta_step(st.params, st.opt_state, step_keys(cfg, st.step))
            st.step += 1
            st.loss_history.append(float(loss))
            if st.step % cfg.val_every == 0 or st.step == cfg.steps:
                val = float(validate(st.params))
                st.val_history.append([st.step, val])
                if np.isfinite(val) and val < st.best_val:
                    st.best_val, st.best_step = val, st.step
                    st.best_params = jax.tree_util.tree_map(jnp.copy, st.params)
            bar.update()
            bar.set_postfix(loss=f"{float(loss):.3f}", val=f"{val:.3f}", best=f"{st.best_val:.3f}",
                            skipped=st.skipped())
            if main and (st.step % cfg.checkpoint_every == 0 or st.step == end):
                st.wall_seconds = time.perf_counter() - t_start
                save_checkpoint(out, cfg, st)
    finally:
        bar.close()  # the bar's line ends before any error message
    if main and st.step >= cfg.steps:
        finalize(cfg, out, st)
    return out


def finalize(cfg: MetaConfig, out: Path, st: TrainState) -> None:
    """Write the trained optimizer (best-by-validation parameters) with its metadata.

    Raises :class:`RunError` (and writes nothing) when every meta-step was skipped or the best validation never
    beat the starting point: the untrained weights are not a trained optimizer.
    """
    _check_run_dir(out)
    start = st.val_history[0][1] if st.val_history and st.val_history[0][0] == 0 else None
    if st.step > 0 and st.skipped() >= st.step:
        raise RunError(str(out), f"all {st.step} meta-steps were skipped (non-finite loss, gradient or update); "
                       "no trained optimizer written (try a smaller --meta-lr or --clip)")
    if st.best_step <= 0:
        raise RunError(str(out), f"the best validation objective ({st.best_val:.4g}) never beat the starting point "
                       f"({start if start is None else format(start, '.4g')}) in {st.step} meta-steps; no trained "
                       "optimizer written (try more --steps or another --meta-lr)")
    meta = {"task": cfg.task, "config": cfg.to_json(), "seed": cfg.seed, "wall_seconds": st.wall_seconds,
            "meta_steps": st.step, "best_step": st.best_step, "best_validation": st.best_val,
            "skipped_steps": st.skipped(), "meta_loss_history": st.loss_history,
            "validation_history": st.val_history}
    lopt.save_optimizer(out, st.best_params, cfg.lopt_config(), meta)


# ----------------------------------------------------------------------------------------------- CLI glue

_CLI_FIELDS = {  # MetaConfig field -> (flag, type name, help)
    "hidden": ("--hidden", "int", "GRU units per coordinate"),
    "features": ("--features", "str", "raw | log_sign"),
    "input_scale": ("--input-scale", "float", "gradient scale before the GRU"),
    "output_scale": ("--output-scale", "float", "readout scale"),
    "steps": ("--steps", "int", "meta-steps"),
    "batch": ("--batch", "int", "problems per meta-step"),
    "unroll": ("--unroll", "int", "horizon T (default: the task's)"),
    "truncation": ("--truncation", "int", "truncated backprop window (default: full unroll)"),
    "objective": ("--objective", "str", "log | ratio | final | log_final"),
    "meta_lr": ("--meta-lr", "float", "initial meta learning rate"),
    "meta_lr_final": ("--meta-lr-final", "float", "final meta learning rate (cosine decay)"),
    "clip": ("--clip", "float", "global-norm clip of the meta-gradient"),
    "val_every": ("--val-every", "int", "validate every N meta-steps"),
    "val_batch": ("--val-batch", "int", "validation problems"),
    "checkpoint_every": ("--checkpoint-every", "int", "checkpoint every N meta-steps"),
}


def add_train_arguments(p, positive_int, positive_float) -> None:
    for field, (flag, kind, help_) in _CLI_FIELDS.items():
        typ = {"int": positive_int(flag[2:]), "float": positive_float(flag[2:]), "str": str}[kind]
        p.add_argument(flag, dest=field, type=typ, default=None, help=help_)
    p.add_argument("--no-remat", action="store_true", help="store the unroll instead of recomputing it")
    p.add_argument("--first-order", action=argparse.BooleanOptionalAction, default=None,
                   help="ignore second derivatives of the optimizee in the meta-gradient (--no-first-order: keep "
                        "them, overriding a task default such as Rosenbrock's)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="apply a preset over the task's defaults: paper = GRU-256, 32 problems per meta-step")


def fields_from_args(args) -> dict:
    """The :class:`MetaConfig` fields given on the ``lorex train`` command line (absent flags left out)."""
    given = {f: getattr(args, f) for f in _CLI_FIELDS if getattr(args, f) is not None}
    if args.no_remat:
        given["remat"] = False
    if args.first_order is not None:
        given["first_order"] = args.first_order
    return given


def make_config(task: str, *, preset: str | None = None, seed: int = 0, task_overrides: dict | None = None,
                **fields) -> MetaConfig:
    """:func:`default_config` with the task's config overrides given as a dict (``{"n": 10}``)."""
    pairs = tuple(sorted((k, _hashable(v)) for k, v in (task_overrides or {}).items()))
    return default_config(task, preset=preset, seed=seed, task_overrides=pairs, **fields)


def config_from_args(args, task_overrides: dict) -> MetaConfig:
    return make_config(args.task, preset=args.preset, seed=args.seed, task_overrides=task_overrides,
                       **fields_from_args(args))
