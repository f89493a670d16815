"""The mechanism bound: meta-train the mechanism family (:mod:`lorex.distill.family`) with lorex's own objective and
compare learned **L**, mechanism bound **U** and best tuned baseline **B** on the benchmark's test seeds.

Meta-training is the learned optimizer's (:mod:`lorex.meta`): the same task, horizon, meta-objective
(:func:`lorex.meta.objective_from_losses`, mean log(f_t/f_0) over the unroll), truncation and first-order setting, the
same meta-batches (stream "meta_train" of each member's seed, :func:`lorex.meta.step_keys`) and the same
meta-optimizer (optax Adam, global-norm clipping, cosine decay, non-finite steps skipped; :func:`lorex.meta.meta_optimizer`),
with fewer meta-steps and a larger meta learning rate (the family has ~15 parameters). Every member (a mechanism
mask × a meta-training seed) is trained in ONE compiled, vmapped meta-step. Each member keeps its best parameters by
the objective on common validation problems (stream "validation"); the bound of a variant is its member with the best
validation objective. Members start from the tuned baselines (Momentum, RMSProp, Adam) mapped into the family, so a
start is itself a family member the benchmark tuned: a variant's j-th seed starts from the one that is j-th best on the
validation problems under the variant's mask. The clipping threshold starts at ``tau_factor`` × the largest signal
|s_t| the start meets on meta-training problems (clipping inactive).

Intervals: 95 % paired bootstrap percentiles over the test seeds (the same resampled seeds for L, U, B and every
leave-one-out variant).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lorex import meta, seeds
from lorex.distill import family as F
from lorex.evaluate import LOG_FLOOR, jit_once, mean_log_loss, problem_and_params, run, step_view
from lorex.errors import LorexError
from lorex.tasks.base import task_name

N_BOOT = 2000


@dataclasses.dataclass(frozen=True)
class FamilyConfig:
    """How the family is meta-trained (the task's :class:`lorex.meta.MetaConfig` gives objective and horizon)."""

    modes: int = F.DEFAULT_MODES
    knots: int = F.DEFAULT_KNOTS
    steps: int = 100  # meta-steps
    meta_lr: float = 0.05
    meta_lr_final: float = 0.005
    clip: float = 1.0
    batch: int | None = None  # problems per meta-step (default: the task's meta-training batch)
    val_every: int = 10
    val_batch: int = 32
    seeds: tuple = (0, 1, 2)  # meta-training seeds of the bound
    loo_seeds: tuple | None = None  # meta-training seeds of each leave-one-out variant (default: ``seeds``)
    tau_factor: float = 3.0

    def __post_init__(self):
        for f in ("seeds", "loo_seeds"):
            v = getattr(self, f)
            if v is None and f == "loo_seeds":
                continue
            if len(v) < 1 or len(set(v)) != len(v):
                raise LorexError(f, f"got {v!r}", "distinct integer seeds")
        for f in ("steps", "val_every", "val_batch", "knots"):
            if not (isinstance(getattr(self, f), int) and getattr(self, f) > 0):
                raise LorexError(f, f"got {getattr(self, f)!r}", "a positive integer")
        if not 1 <= self.modes <= F.MAX_MODES:
            raise LorexError("modes", f"got {self.modes!r}", f"1..{F.MAX_MODES}")


def default_family_config(family, **overrides) -> FamilyConfig:
    """The family's mechanism-family defaults (its policy's ``family_defaults``, :class:`lorex.tasks.TaskPolicy`;
    none for a family without a policy), then ``overrides``."""
    from lorex import tasks

    defaults = dict(tasks.policy_of(family).family_defaults)
    name = task_name(family)
    fields = [f.name for f in dataclasses.fields(FamilyConfig)]
    for k in defaults:
        if k not in fields:
            raise LorexError(f"{name}.policy.family_defaults.{k}", "not a FamilyConfig field", fields)
    try:
        FamilyConfig(**defaults)
    except LorexError as e:  # name the policy as the culprit of a bad default
        raise LorexError(f"{name}.policy.family_defaults.{e.field}", str(e).split(": ", 1)[1]) from None
    return FamilyConfig(**{**defaults, **overrides})


# ------------------------------------------------------------------------------------------------ starts


def start_from_baseline(name: str, hyperparameters: dict, *, modes: int = F.DEFAULT_MODES,
                        knots: int = F.DEFAULT_KNOTS) -> dict:
    """A tuned baseline mapped into the family: exact for sgd and Momentum (β = 1e-4 for none); RMSProp up to
    β₁ = 1e-4 and its ε (the family's sits outside the root, as Adam's); Adam without its bias correction."""
    lr = float(hyperparameters["learning_rate"])
    kw = dict(modes=modes, knots=knots)
    if name == "momentum":
        b = float(hyperparameters.get("momentum", 0.9))
        return F.init_params(lr=lr / (1 - b), betas=[max(b, 1e-4)], rho=0.9, p=0.0, **kw)
    if name == "sgd":
        return F.init_params(lr=lr, betas=[1e-4], rho=0.9, p=0.0, **kw)
    if name == "rmsprop":
        return F.init_params(lr=lr, betas=[1e-4], rho=float(hyperparameters.get("decay", 0.9)), p=0.5, **kw)
    if name == "adam":
        return F.init_params(lr=lr, betas=[max(float(hyperparameters.get("b1", 0.9)), 1e-4)], rho=0.999, p=0.5,
                             **kw)
    raise LorexError("baseline", f"cannot map {name!r} into the family", ["sgd", "momentum", "rmsprop", "adam"])


def starts_from_benchmark(benchmark: dict, *, modes: int = F.DEFAULT_MODES, knots: int = F.DEFAULT_KNOTS) -> list:
    """[(name, params)] for the tuned Momentum, RMSProp, Adam (then sgd) of a benchmark result, those present."""
    rows = benchmark["optimizers"]
    out = [(n, start_from_baseline(n, rows[n]["hyperparameters"], modes=modes, knots=knots))
           for n in ("momentum", "rmsprop", "adam", "sgd")
           if n in rows and rows[n].get("kind") == "baseline" and not rows[n].get("tuning_diverged")]
    if not out:
        raise LorexError("benchmark", "holds no tuned Momentum, RMSProp, Adam or sgd to start from")
    return out


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _index(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


@functools.lru_cache(maxsize=16)
def _compiled_signal(family, horizon: int):
    def one(p, key):
        tx = F.mechanism_family(p, horizon, mask=F.full_mask(clipping=0.0))
        problem, x = problem_and_params(family, key)
        view = step_view(family)

        def body(carry, t):
            x, s = carry
            g = jax.grad(family.loss)(x, view(problem, t))
            u, s = tx.update(g, s, x)
            eta = F.learning_rate(p, t, horizon)
            m = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in jax.tree_util.tree_leaves(u)])) / eta
            return (optax.apply_updates(x, u), s), m

        _, ms = jax.lax.scan(body, (x, tx.init(x)), jnp.arange(horizon))
        return jnp.max(ms)

    return jit_once(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))


def set_clipping_threshold(starts: list, family, keys, horizon: int, factor: float) -> list:
    """Each start with τ = ``factor`` × the median over problems of the largest |s_t| along its run (inactive)."""
    smax = np.asarray(_compiled_signal(family, horizon)(_stack(starts), keys), np.float64)  # (S, n)
    out = []
    for p, row in zip(starts, smax):
        row = row[np.isfinite(row)]
        level = float(np.median(row)) if row.size else 1.0
        level = level if np.isfinite(level) and level > 0 else 1.0
        out.append({**p, "log_tau": jnp.asarray(math.log(factor * level), jnp.float32)})
    return out


# ------------------------------------------------------------------------------------------------ meta-training


def _objective(p, mask, keys, family, horizon: int, mcfg: meta.MetaConfig, remat: bool = True):
    tx = F.mechanism_family(p, horizon, mask=mask)

    def one(key):
        losses = run(tx, family, key, horizon, remat=remat, truncation=mcfg.truncation,
                     first_order=mcfg.first_order)
        return meta.objective_from_losses(losses, mcfg.objective)

    return jnp.mean(jax.vmap(one)(keys))


@functools.lru_cache(maxsize=16)
def _compiled_step(family, horizon: int, mcfg: meta.MetaConfig, opt_cfg: meta.MetaConfig):
    opt = meta.meta_optimizer(opt_cfg)

    def step(p, s, mask, keys):
        loss, grads = jax.value_and_grad(_objective)(p, mask, keys, family, horizon, mcfg, mcfg.remat)
        p, s = meta.guarded_update(opt, p, s, grads, loss)
        return p, s, loss

    return jax.jit(jax.vmap(step))


@functools.lru_cache(maxsize=16)
def _compiled_validation(family, horizon: int, mcfg: meta.MetaConfig):
    """The meta-objective on the validation problems, +inf for a member with any diverged (non-finite) run: the
    objective caps f_t/f_0, so a member that diverges on some problems could otherwise be chosen."""

    def one_member(p, mask, keys):
        tx = F.mechanism_family(p, horizon, mask=mask)

        def one(key):
            losses = run(tx, family, key, horizon)
            return meta.objective_from_losses(losses, mcfg.objective), jnp.all(jnp.isfinite(losses))

        obj, ok = jax.vmap(one)(keys)
        return jnp.where(jnp.all(ok), jnp.mean(obj), jnp.inf)

    return jax.jit(jax.vmap(one_member, in_axes=(0, 0, None)))


def train_members(family, task_config: meta.MetaConfig, starts: list, masks: list, member_seeds: list,
                  config: FamilyConfig, *, val_seed: int = 0, progress=None) -> dict:
    """Meta-train every member i (start ``starts[i]``, mask ``masks[i]``, seed ``member_seeds[i]``) together.

    Returns ``{"params": [best params per member], "validation": [best objective], "best_step": [...],
    "start_validation": [...], "validation_history": [[step, [per member]]...], "skipped": [...], "wall_seconds"}``.
    """
    t0 = time.perf_counter()
    n = len(starts)
    if not (len(masks) == len(member_seeds) == n):
        raise ValueError("starts, masks and member_seeds must have the same length")
    horizon = task_config.horizon()
    batch = config.batch or task_config.batch
    mcfg = dataclasses.replace(task_config, seed=0, batch=batch)
    opt_cfg = dataclasses.replace(mcfg, steps=config.steps, meta_lr=config.meta_lr,
                                  meta_lr_final=config.meta_lr_final, clip=config.clip)
    opt = meta.meta_optimizer(opt_cfg)
    params = _stack(starts)
    mask_st = _stack(masks)
    opt_state = jax.vmap(opt.init)(params)
    step_fn = _compiled_step(family, horizon, mcfg, opt_cfg)
    validate = _compiled_validation(family, horizon, mcfg)
    val_keys = seeds.keys(val_seed, "validation", config.val_batch)
    member_cfgs = [dataclasses.replace(mcfg, seed=int(s)) for s in member_seeds]

    val = np.asarray(validate(params, mask_st, val_keys), np.float64)
    val = np.where(np.isfinite(val), val, np.inf)
    best_val, best_step = val.copy(), np.zeros(n, int)
    best = jax.tree_util.tree_map(jnp.copy, params)
    history = [[0, val.tolist()]]
    start_val = val.tolist()
    for k in range(1, config.steps + 1):
        keys = jnp.stack([meta.step_keys(c, k - 1) for c in member_cfgs])
        params, opt_state, loss = step_fn(params, opt_state, mask_st, keys)
        if k == 1:
            jax.block_until_ready(loss)
            first_step = time.perf_counter() - t0
        if k % config.val_every == 0 or k == config.steps:
            val = np.asarray(validate(params, mask_st, val_keys), np.float64)
            val = np.where(np.isfinite(val), val, np.inf)
            better = val < best_val
            best_val = np.where(better, val, best_val)
            best_step = np.where(better, k, best_step)
            b = jnp.asarray(better)
            best = jax.tree_util.tree_map(
                lambda new, old: jnp.where(b.reshape((-1,) + (1,) * (new.ndim - 1)), new, old), params, best)
            history.append([k, val.tolist()])
            if progress:
                progress(f"meta-step {k}/{config.steps}: best validation {np.min(best_val):.4f}")
    skipped = np.asarray(opt_state.total_notfinite).tolist()
    return {"params": [_index(best, i) for i in range(n)], "validation": best_val.tolist(),
            "best_step": best_step.tolist(), "start_validation": start_val, "validation_history": history,
            "skipped": skipped, "wall_seconds": time.perf_counter() - t0,
            "first_step_seconds": first_step}  # setup, validation of the starts and compilation included


# ------------------------------------------------------------------------------------------------ evaluation


@functools.lru_cache(maxsize=16)
def _compiled_eval(family, horizon: int):
    def one(p, mask, key):
        return run(F.mechanism_family(p, horizon, mask=mask), family, key, horizon)

    return jit_once(jax.vmap(jax.vmap(one, in_axes=(None, None, 0)), in_axes=(0, 0, None)))


def evaluate_members(params_list, masks, family, keys, horizon: int) -> np.ndarray:
    """Loss curves (M, len(keys), T + 1) of each member on the problems of ``keys``, one compiled call."""
    return np.asarray(_compiled_eval(family, horizon)(_stack(params_list), _stack(masks), keys), np.float64)


def per_seed_mll(losses) -> np.ndarray:
    """Per-run mean log loss (+inf for a run with any non-finite loss)."""
    losses = np.asarray(losses, np.float64)
    fin = np.isfinite(losses).all(axis=-1)
    m = np.asarray(mean_log_loss(np.where(fin[..., None], np.maximum(losses, LOG_FLOOR), 1.0)), np.float64)
    return np.where(fin, m, np.inf)


def _interval(x, idx) -> dict:
    x = np.asarray(x, np.float64)
    if not np.isfinite(x).all():
        return {"mean": None, "ci95": None, "se": None, "diverged": int(np.sum(~np.isfinite(x)))}
    reps = x[idx].mean(axis=1)
    return {"mean": float(x.mean()), "ci95": [float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5))],
            "se": float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0, "diverged": 0}


def gap_closed(b, u, ll, idx) -> dict:
    """(B − U)/(B − L) with its paired-bootstrap 95 % interval; reported (``value`` not None) only where the
    interval of B − L lies above 0."""
    b, u, ll = (np.asarray(x, np.float64) for x in (b, u, ll))
    out = {"value": None, "ci95": None, "baseline_minus_learned": None, "baseline_minus_learned_ci95": None,
           "reported": False}
    if not all(np.isfinite(x).all() for x in (b, u, ll)):
        out["note"] = "a run diverged: undefined"
        return out
    gap = b - ll
    gap_reps = gap[idx].mean(axis=1)
    out["baseline_minus_learned"] = float(gap.mean())
    out["baseline_minus_learned_ci95"] = [float(np.percentile(gap_reps, 2.5)), float(np.percentile(gap_reps, 97.5))]
    if out["baseline_minus_learned_ci95"][0] <= 0:
        out["note"] = "B − L is not clearly positive (its 95 % interval includes 0 or lies below): not reported"
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = (b - u)[idx].mean(axis=1) / gap_reps
    reps = reps[np.isfinite(reps)]
    out.update(value=float((b - u).mean() / gap.mean()), reported=True,
               ci95=[float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5))] if reps.size > 1 else None)
    return out


FAMILY_FILE = "mechanism_family.json"
MEMBER_FIELDS = ("member_seed", "start", "trained_as", "mask", "validation", "start_validation", "best_meta_step",
                 "skipped_meta_steps", "parameters", "natural")


def family_record(ladder: dict) -> dict:
    """What :func:`save_family` writes: per variant ("bound" and each mechanism left out) the chosen member's
    parameters, with how the family was trained; :func:`mechanism_bound` (``trained=``) evaluates it again."""
    fam = ladder.get("mechanism_family", ladder)
    variants = {"bound": {k: ladder["mechanism_bound"][k] for k in MEMBER_FIELDS}}
    for r in ladder.get("leave_one_out", []):
        variants[r["removed"]] = {k: r[k] for k in MEMBER_FIELDS}
    return {"format_version": 1, "task": ladder["task"], "steps": ladder["steps"],
            "family_config": fam["family_config"], "meta_objective": fam["meta_objective"],
            "meta_training_seconds": fam["wall_seconds"].get("meta_training"), "variants": variants}


def save_family(path, ladder: dict) -> None:
    from lorex import io

    io.save_json(path, family_record(ladder))


def load_family(path) -> dict:
    from lorex import io

    d = io.load_json(path)
    if not isinstance(d, dict) or d.get("format_version") != 1 or "bound" not in d.get("variants", {}):
        raise LorexError(str(path), "not a mechanism-family file", "a file written by lorex.distill.bound.save_family")
    for v, r in d["variants"].items():
        if v != "bound" and v not in F.MECHANISMS:
            raise LorexError(str(path), f"unknown variant {v!r}", ["bound", *F.MECHANISMS])
        if set(r.get("parameters", {})) != set(F.init_params()):
            raise LorexError(str(path), f"variant {v!r}: parameters {sorted(r.get('parameters', {}))}",
                             sorted(F.init_params()))
    return d


def shipped_family(task: str):
    """The shipped trained family of a task (src/lorex/pretrained/<task>/mechanism_family.json), or None."""
    from pathlib import Path

    from lorex import lopt

    path = Path(lopt.__file__).parent / "pretrained" / str(task) / FAMILY_FILE
    return load_family(path) if path.is_file() else None


def family_task_config(family, horizon: int, task_config: meta.MetaConfig | None = None) -> meta.MetaConfig:
    """The meta-training config the family is trained with: ``task_config`` (default: the task's policy's
    meta-training defaults; a family without a policy gets the generic ones) with its unroll set to ``horizon``
    (a truncation that does not divide it is dropped)."""
    if task_config is None:
        defaults = meta.task_defaults(family)
        if defaults.get("truncation") and horizon % defaults["truncation"]:
            defaults["truncation"] = None
        task = task_name(family)
        task_config = meta.MetaConfig(task=str(task), **{**defaults, "unroll": int(horizon)})
    task_config = dataclasses.replace(task_config, unroll=int(horizon))
    if task_config.truncation is not None and horizon % task_config.truncation:
        task_config = dataclasses.replace(task_config, truncation=None)
    return task_config


def mechanism_bound(family, benchmark: dict, learned_tx, *, task_config: meta.MetaConfig | None = None,
                    config: FamilyConfig | None = None, seed: int = 0, leave_one_out: bool = True,
                    n_boot: int = N_BOOT, progress=None, trained: dict | None = None,
                    runs: dict | None = None) -> dict:
    """The L / U / B ladder on ``benchmark``'s test seeds (a :func:`lorex.benchmark.run_benchmark` result with its
    tuned baselines), with the gap closed and the leave-one-out table; a JSON-ready dict.

    ``learned_tx``: the learned optimizer's transformation. ``task_config``: the meta-training config whose task,
    horizon, objective, truncation, first-order setting and batch the family is trained with (default: the task's
    meta-training defaults, :func:`lorex.meta.task_defaults`). ``config``: :class:`FamilyConfig` (default:
    :func:`default_family_config` of the family). ``trained``: a :func:`load_family` record (e.g.
    :func:`shipped_family`): its members are evaluated, nothing is meta-trained.  ``runs``: the benchmark's test runs
    (:func:`lorex.benchmark.run_benchmark` with ``return_runs``; its ``"learned"`` entry is ``learned_tx``): L and B
    are read from them instead of being run again.
    """
    if trained is not None:
        out = _evaluate_ladder(family, benchmark, learned_tx, trained, seed=seed, n_boot=n_boot,
                               leave_one_out=leave_one_out, runs=runs)
        return {**out, "source": "a trained family, evaluated (nothing meta-trained here)",
                **{k: trained.get(k) for k in ("family_config", "meta_objective", "meta_training_seconds")}}
    t0 = time.perf_counter()
    task = task_name(family)
    T = int(benchmark["steps"])
    task_config = family_task_config(family, T, task_config)
    config = config or default_family_config(family)
    walls = {}
    say = progress or (lambda m: None)

    # starts: the tuned baselines mapped into the family, clipping threshold set from their signals; each variant's
    # j-th seed starts from the start that is j-th best on the validation problems under that variant's mask
    named = starts_from_benchmark(benchmark, modes=config.modes, knots=config.knots)
    sig_keys = seeds.keys(0, "meta_train", 8)
    tuned = set_clipping_threshold([p for _, p in named], family, sig_keys, T, config.tau_factor)
    variants = [("bound", F.full_mask())] + ([(m, F.without(m)) for m in F.MECHANISMS] if leave_one_out else [])
    pre = _compiled_validation(family, T, dataclasses.replace(task_config, seed=0))(
        _stack([p for _ in variants for p in tuned]), _stack([m for _, m in variants for _ in tuned]),
        seeds.keys(seed, "validation", config.val_batch))
    pre = np.where(np.isfinite(np.asarray(pre, np.float64)), np.asarray(pre, np.float64), np.inf)
    pre = pre.reshape(len(variants), len(tuned))
    members = []
    for vi, (v, mask) in enumerate(variants):
        order = np.argsort(pre[vi], kind="stable")
        vseeds = config.seeds if v == "bound" or config.loo_seeds is None else config.loo_seeds
        for j, s_ in enumerate(vseeds):
            k = int(order[j % len(order)])
            members.append((v, mask, s_, named[k][0], tuned[k]))
    say(f"{task}: meta-training the family: {len(members)} members ({len(variants)} variant(s)), "
        f"{config.steps} meta-steps")
    tr = train_members(family, task_config, [m[4] for m in members], [m[1] for m in members],
                       [m[2] for m in members], config, val_seed=seed,
                       progress=lambda msg: say(f"{task}: family: {msg}"))
    walls["meta_training"] = tr["wall_seconds"]
    walls["meta_training_first_step"] = tr["first_step_seconds"]

    # per leave-one-out variant: its member with the best validation objective; the bound: the best of ALL members,
    # since a member trained with a mechanism switched off is a member of the full family too (momentum off = one
    # mode with β → 0, clipping off = τ → ∞, schedule off = knots at 0, adaptation off = p = 0); it is evaluated
    # with its own mask
    chosen = {}
    for v, mask in variants:
        idxs = [i for i, m in enumerate(members) if m[0] == v]
        if v == "bound":
            idxs = list(range(len(members)))
        i = min(idxs, key=lambda j: tr["validation"][j])
        chosen[v] = (i, members[i][1])

    def member_info(v):
        i, mask = chosen[v]
        m = members[i]
        return {"member_seed": int(m[2]), "start": m[3], "trained_as": m[0],
                "mask": {k: float(x) for k, x in mask.items()}, "validation": tr["validation"][i],
                "start_validation": tr["start_validation"][i], "best_meta_step": int(tr["best_step"][i]),
                "skipped_meta_steps": int(tr["skipped"][i]),
                "parameters": F.params_to_json(tr["params"][i]), "natural": F.describe(tr["params"][i], mask)}

    record = {"variants": {v: member_info(v) for v in chosen}}
    out = _evaluate_ladder(family, benchmark, learned_tx, record, seed=seed, n_boot=n_boot,
                           leave_one_out=leave_one_out, runs=runs)
    walls["evaluation"] = out.pop("wall_seconds")["evaluation"]
    walls["total"] = time.perf_counter() - t0
    return {
        **out,
        "family_config": dataclasses.asdict(config),
        "meta_objective": {"objective": task_config.objective, "horizon": T, "truncation": task_config.truncation,
                           "first_order": task_config.first_order, "batch": config.batch or task_config.batch},
        "members": [{"variant": m[0], "seed": int(m[2]), "start": m[3], "validation": tr["validation"][i],
                     "start_validation": tr["start_validation"][i]} for i, m in enumerate(members)],
        "wall_seconds": walls,
    }


def _record_mask(r: dict, variant: str) -> dict:
    if "mask" in r:
        return F.full_mask(**{k: float(v) for k, v in r["mask"].items()})
    return F.full_mask() if variant == "bound" else F.without(variant)


def _evaluate_ladder(family, benchmark: dict, learned_tx, record: dict, *, seed: int, n_boot: int,
                     leave_one_out: bool = True, runs: dict | None = None) -> dict:
    """L, U, B, gap closed and leave-one-out on the benchmark's test seeds for the members of ``record`` (L and B
    from ``runs`` where it holds them)."""
    t1 = time.perf_counter()
    task = task_name(family)
    T = int(benchmark["steps"])
    variants = [v for v in ("bound", *F.MECHANISMS) if v in record["variants"]
                and (v == "bound" or leave_one_out)]
    masks = [_record_mask(record["variants"][v], v) for v in variants]
    params = [F.params_from_json(record["variants"][v]["parameters"]) for v in variants]
    n_test = int(benchmark["test_seeds"])
    keys = seeds.keys(int(benchmark.get("seed", seed)), "test", n_test)
    # a leave-one-out variant whose chosen member is U itself (U was the member trained without that mechanism) is
    # the same optimizer: each distinct (parameters, mask) is evaluated once
    ident = [repr((record["variants"][v]["parameters"], {k: float(x) for k, x in m.items()}))
             for v, m in zip(variants, masks)]
    distinct = sorted({ident.index(i) for i in ident})
    curves = evaluate_members([params[i] for i in distinct], [masks[i] for i in distinct], family, keys, T)
    mll_v = {v: per_seed_mll(curves[distinct.index(ident.index(i))]) for v, i in zip(variants, ident)}
    from lorex.baselines import baseline_from_json
    from lorex.evaluate import evaluate

    runs = runs or {}

    def curves(name, tx):
        return runs[name].losses if name in runs else evaluate(tx, family, keys, T)

    mll_l = per_seed_mll(curves("learned", learned_tx))
    base = {k: r for k, r in benchmark["optimizers"].items()
            if r["kind"] == "baseline" and r["mean_log_loss"]["mean"] is not None
            and np.isfinite(r["mean_log_loss"]["mean"])}
    if not base:
        raise LorexError("benchmark", "holds no tuned baseline that converged")
    best = min(base, key=lambda k: base[k]["mean_log_loss"]["mean"])
    hp = base[best]["hyperparameters"]
    mll_b = per_seed_mll(curves(best, baseline_from_json(best, hp)))
    idx = np.random.default_rng(seed).integers(0, n_test, size=(n_boot, n_test))

    def info(v, mask, p):
        r = dict(record["variants"][v])
        r["natural"] = F.describe(p, mask)
        return r

    U = {**_interval(mll_v["bound"], idx), **info("bound", masks[0], params[0])}
    loo = []
    for v, mask, p in list(zip(variants, masks, params))[1:]:
        d = _interval(mll_v[v] - mll_v["bound"], idx)  # paired: the same resampled seeds for both
        loo.append({"removed": v, **_interval(mll_v[v], idx), **info(v, mask, p),
                    "delta_vs_bound": d["mean"], "delta_ci95": d["ci95"]})
    return {
        "task": task, "steps": T, "test_seeds": n_test,
        "learned": _interval(mll_l, idx),
        "mechanism_bound": U,
        "best_baseline": {"name": best, "hyperparameters": hp, **_interval(mll_b, idx)},
        "gap_closed": gap_closed(mll_b, mll_v["bound"], mll_l, idx),
        "leave_one_out": loo,
        "method": f"mean log loss over {n_test} test seeds; 95 % intervals: paired bootstrap percentiles "
                  f"({n_boot} resamples of the test seeds)",
        "wall_seconds": {"evaluation": time.perf_counter() - t1},
    }
