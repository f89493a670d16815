"""Meta-training: backpropagation through the unrolled optimization of a batch of sampled problems.

Meta-objective per problem (``objective``): ``log``  L = (1/T) Σ_{t=1..T} log(f_t / f_0);
``ratio``  L = (1/T) Σ f_t / f_0;  ``final``  L = log(f_T / f_0). Averaged over a batch of problems (vmap, split
over a device mesh when there are several devices). The unroll is :func:`lorex.evaluate.run` with the learned
optimizer's transformation, so meta-training and evaluation execute the same code. The meta-optimizer is optax
Adam with global-norm clipping and a cosine-decaying rate, wrapped in ``optax.apply_if_finite``: a meta-step whose
loss or gradient is not finite is skipped and counted. The best parameters by validation loss are kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from lorex import io, lopt, seeds, tasks
from lorex.errors import LorexError, check_choice, check_positive_int
from lorex.evaluate import LOG_FLOOR, run

OBJECTIVES = ("log", "ratio", "final")
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
        for f in ("steps", "batch", "val_every", "val_batch", "checkpoint_every"):
            check_positive_int(f, getattr(self, f))
        check_choice("objective", self.objective, OBJECTIVES)
        for f in ("meta_lr", "meta_lr_final", "clip"):
            if not getattr(self, f) > 0:
                raise LorexError(f, f"got {getattr(self, f)!r}", "a positive number")
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
    def from_json(cls, d: dict) -> "MetaConfig":
        d = dict(d)
        d["task_overrides"] = tuple(sorted((k, _hashable(v)) for k, v in d.get("task_overrides", {}).items()))
        fields = {f.name for f in dataclasses.fields(cls)}
        bad = set(d) - fields
        if bad:
            raise LorexError("config", f"unknown fields {sorted(bad)}", sorted(fields))
        return cls(**d)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


# Shipped CPU defaults per task (what `lorex train --task T` uses unless told otherwise).
TASK_DEFAULTS: dict[str, dict] = {
    "linreg": {"steps": 15000},
    # Rosenbrock's gradients reach ~1e3 and its unrolls are chaotic: log/sign features, truncated first-order
    # meta-gradients (full second-order BPTT gave meta-gradients of norm ~1e25 and stalled).
    "rosenbrock": {"features": "log_sign", "truncation": 20, "first_order": True, "steps": 10000},
    # Two moons: gradients ~1e-2 at the start and ~1e-5 late, so they are scaled up ×100 before the GRU; GRU-16,
    # 8 problems per step and first-order meta-gradients keep 1000 meta-steps within ~10 minutes on 2 CPU cores.
    "two_moons": {"hidden": 16, "batch": 8, "first_order": True, "input_scale": 100.0, "steps": 1000,
                  "val_every": 50, "val_batch": 16, "checkpoint_every": 50},
    # Digits: minibatch gradients ~0.1 at the start and ~0.03 late (median |g|), so ×10 before the GRU; GRU-16 and 8
    # problems per step as on two moons, but full second-order meta-gradients and a short run with a fast cosine
    # decay of the meta learning rate: at a constant-ish 1e-3 the validation objective peaked within ~25-75
    # meta-steps and then degraded (first-order and second-order alike; truncation to 40 steps only stalled it).
    "digits": {"hidden": 16, "batch": 8, "input_scale": 10.0, "meta_lr": 1e-3, "steps": 150,
               "val_every": 25, "val_batch": 16, "checkpoint_every": 25},
}


def default_config(task: str, **overrides) -> MetaConfig:
    return MetaConfig(task=task, **{**TASK_DEFAULTS.get(task, {}), **overrides})


# ------------------------------------------------------------------------------------------- objective and step


def objective_from_losses(losses: jax.Array, objective: str) -> jax.Array:
    """Meta-objective of one run from its losses (T + 1,); f_t/f_0 is capped at LOSS_CAP."""
    ratio = jnp.minimum(losses / losses[0], LOSS_CAP)
    if objective == "log":
        return jnp.mean(jnp.log(jnp.maximum(ratio[1:], LOG_FLOOR)))
    if objective == "ratio":
        return jnp.mean(ratio[1:])
    return jnp.log(jnp.maximum(ratio[-1], LOG_FLOOR))


def batch_objective(params, keys, cfg: MetaConfig, family, horizon: int) -> jax.Array:
    """Mean meta-objective over the problems of ``keys`` for learned-optimizer parameters ``params``."""
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
    if cfg.batch % mesh.size:
        raise LorexError("batch", f"{cfg.batch} is not divisible by the {mesh.size} devices",
                         f"a multiple of {mesh.size}")
    horizon = cfg.horizon()
    opt = meta_optimizer(cfg)
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec("batch"))

    def meta_step(params, opt_state, keys):
        loss, grads = jax.value_and_grad(batch_objective)(params, keys, cfg, family, horizon)
        # a non-finite loss poisons the gradient, so apply_if_finite skips the step
        grads = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(loss), g, jnp.nan), grads)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    jitted = jax.jit(meta_step, donate_argnums=(0, 1), out_shardings=(replicated, replicated, replicated))

    def step(params, opt_state, keys):
        return jitted(params, opt_state, shard_batch(keys, split))

    step.lower = lambda p, s, k: jitted.lower(p, s, shard_batch(k, split))
    return step


def shard_batch(keys, sharding: NamedSharding) -> jax.Array:
    """A global array of problem keys split over ``sharding``; every process computes the same keys and places only
    its own devices' rows, so the same code runs on one device, several, or several hosts (``jax.distributed``)."""
    host = np.asarray(keys)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def make_validation(cfg: MetaConfig, family):
    keys = seeds.keys(cfg.seed, "validation", cfg.val_batch)
    horizon = cfg.horizon()
    f = jax.jit(lambda p: batch_objective(p, keys, cfg, family, horizon))
    return f


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
    with io.atomic_write(run_dir / CHECKPOINT_FILE) as f:
        np.savez(f, **arrays)


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
    cfg.family()  # validate the task before writing anything
    if jax.process_index() == 0:
        if (out / RUN_FILE).exists():
            raise LorexError("out", f"{out} already holds a run", ["a new folder", f"--resume {out}"])
        io.save_json(out / RUN_FILE, {"format_version": io.FORMAT_VERSION, "config": cfg.to_json(),
                                      "versions": io.versions()})
    return _loop(cfg, out, init_state(cfg), progress, stop_after)


def resume(out: str | Path, *, progress: bool = True, stop_after: int | None = None) -> Path:
    """Continue the run in ``out`` from its last checkpoint (or from scratch if it has none yet)."""
    out = Path(out)
    meta = io.load_json(out / RUN_FILE)
    if meta.get("format_version") != io.FORMAT_VERSION:
        raise LorexError(str(out / RUN_FILE), f"format_version {meta.get('format_version')!r}",
                         [str(io.FORMAT_VERSION)])
    cfg = MetaConfig.from_json(meta["config"])
    st = load_checkpoint(out, cfg) if (out / CHECKPOINT_FILE).exists() else init_state(cfg)
    return _loop(cfg, out, st, progress, stop_after)


def _loop(cfg: MetaConfig, out: Path, st: TrainState, progress: bool, stop_after: int | None) -> Path:
    family = cfg.family()
    meta_step = make_meta_step(cfg, family)
    validate = make_validation(cfg, family)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    main = jax.process_index() == 0  # with several hosts, one writes files and shows progress
    bar = tqdm(total=cfg.steps, initial=st.step, desc=f"meta-train {cfg.task}", disable=not (progress and main),
               dynamic_ncols=True)
    t_start = time.perf_counter() - st.wall_seconds
    val = st.best_val
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
    bar.close()
    if main and st.step >= cfg.steps:
        finalize(cfg, out, st)
    return out


def finalize(cfg: MetaConfig, out: Path, st: TrainState) -> None:
    """Write the trained optimizer (best-by-validation parameters) with its metadata."""
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
    "objective": ("--objective", "str", "log | ratio | final"),
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
    p.add_argument("--first-order", action="store_true", default=None,
                   help="ignore second derivatives of the optimizee in the meta-gradient")


def config_from_args(args, task_overrides: dict) -> MetaConfig:
    given = {f: getattr(args, f) for f in _CLI_FIELDS if getattr(args, f) is not None}
    if args.no_remat:
        given["remat"] = False
    if args.first_order:
        given["first_order"] = True
    return default_config(args.task, seed=args.seed,
                          task_overrides=tuple(sorted((k, _hashable(v)) for k, v in task_overrides.items())),
                          **given)
