"""Run any optax optimizer on many problems of a family in one jitted, vmapped scan; summarize the curves."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lorex.errors import check_positive_int

# Losses are floored here before the log. Below ~1e-12 a float32 loss is rounding noise (the excess loss of a
# parameter vector resolved to 2^-24 relative is ~1e-15·λ|x|²; float32 runs on linreg hit exactly 0), and an
# unfloored log would let those artefacts (log 0 = -inf, or -69 at 1e-30) dominate every mean.
LOG_FLOOR = 1e-12

# Programs that run once or a few times (evaluation, tuning, the analyses) are compiled with LLVM at -O1 instead of
# XLA's default on CPU: an evaluation program of lorex's tasks compiles 1.5–3× faster (digits: 4.8 → 1.7 s) and runs
# at the same speed (0.87–1.06× for programs of over 10 ms), measured by ``benchmarks/bench_compile.py``.
# Meta-training, which runs its program thousands of times, keeps the default, as do other backends.
ONCE_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def jit_once(fn, **kwargs):
    """``jax.jit(fn, **kwargs)`` for a program that runs a few times: on CPU compiled with LLVM -O1 (see
    ``ONCE_COMPILER_OPTIONS``), elsewhere as ``jax.jit``.

    Compiler options are only allowed on an outermost ``jax.jit``; called on traced arguments (inside another
    transformation, whose program is compiled as a whole) it is the plain ``jax.jit``."""
    plain = jax.jit(fn, **kwargs)
    if jax.default_backend() != "cpu":
        return plain
    once = jax.jit(fn, compiler_options=ONCE_COMPILER_OPTIONS, **kwargs)

    @functools.wraps(fn)
    def call(*args, **kw):
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves((args, kw)))
        return (plain if traced else once)(*args, **kw)

    return call


def problem_and_params(family, key: jax.Array) -> tuple[Any, Any]:
    """The problem instance and the initial parameters that ``key`` stands for (same split everywhere)."""
    k_problem, k_init = jax.random.split(key)
    problem = family.sample(k_problem)
    return problem, family.init(k_init, problem)


def step_view(family):
    """``view(problem, t)``: what the loss sees at optimization step ``t`` (a family's optional ``minibatch``).

    A stochastic family (``digits``) defines ``minibatch(problem, step)`` returning the data of step ``step`` (drawn
    from the problem's own key, so it is a pure function of both); every other family sees the same problem at
    every step. Keeping the hook optional leaves ``loss(params, problem)`` and every existing or user family as
    they were.
    """
    minibatch = getattr(family, "minibatch", None)
    return minibatch if minibatch is not None else (lambda problem, step: problem)


def unroll(tx: optax.GradientTransformation, family, key: jax.Array, steps: int, *, remat: bool = False,
           truncation: int | None = None, first_order: bool = False) -> tuple[jax.Array, Any, Any]:
    """``(losses, final_params, problem)`` of one run; see :func:`run` (which returns the losses only)."""
    problem, params = problem_and_params(family, key)
    view = step_view(family)

    def body(carry, t):
        params, state = carry
        loss, grads = jax.value_and_grad(family.loss)(params, view(problem, t))
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    if remat:
        body = jax.checkpoint(body)
    carry = (params, tx.init(params))
    ts = jnp.arange(steps)
    if truncation is None or truncation >= steps:
        carry, losses = jax.lax.scan(body, carry, ts)
    else:
        if steps % truncation:
            raise ValueError(f"steps ({steps}) must be a multiple of truncation ({truncation})")

        def window(carry, ts_window):
            return jax.lax.scan(body, jax.lax.stop_gradient(carry), ts_window)

        carry, losses = jax.lax.scan(window, carry, ts.reshape(-1, truncation))
        losses = losses.reshape(-1)
    final = family.loss(carry[0], problem)  # the final parameters on the whole problem (see run)
    return jnp.concatenate([losses, final[None]]), carry[0], problem


def run(tx: optax.GradientTransformation, family, key: jax.Array, steps: int, *, remat: bool = False,
        truncation: int | None = None, first_order: bool = False) -> jax.Array:
    """Losses (steps + 1,) of one run of ``tx`` on the problem of ``key``; index 0 is before the first step.

    Loss t < steps is that of the parameters after t steps on the data of step t (:func:`step_view`; the same
    problem at every step except for stochastic families); the last, the final parameters' loss on the whole problem
    (for a stochastic family its whole training part rather than one more minibatch: the final loss measures where
    the run ended, not the noise of one minibatch). Differentiable in anything ``tx`` closes over (this is also the
    meta-training unroll). ``remat`` recomputes each step in the backward pass (``jax.checkpoint``) instead of
    storing it; ``truncation=K`` stops gradients through the carry every K steps (truncated backpropagation;
    ``steps`` must be a multiple of K); ``first_order`` treats the optimizee's gradients as constants in the
    backward pass (drops the Hessian terms of the meta-gradient, as in Andrychowicz et al. 2016).
    """
    return unroll(tx, family, key, steps, remat=remat, truncation=truncation, first_order=first_order)[0]


@functools.lru_cache(maxsize=64)
def _compiled(tx, family, steps: int):
    return jit_once(jax.vmap(lambda k: run(tx, family, k, steps)))


def evaluate(tx: optax.GradientTransformation, family, keys: jax.Array, steps: int | None = None) -> jax.Array:
    """Loss curves, shape (len(keys), steps + 1), of ``tx`` on the problems of ``keys`` (one compiled call).

    The compiled function is cached per (transformation, family, steps): calling again with new keys of the same
    shape does not recompile.
    """
    steps = family.steps if steps is None else check_positive_int("steps", steps)
    return _compiled(tx, family, steps)(keys)


@functools.lru_cache(maxsize=64)
def _compiled_metrics(tx, family, steps: int):
    def one(k):
        losses, params, problem = unroll(tx, family, k, steps)
        return losses, family.metrics(params, problem)

    return jit_once(jax.vmap(one))


def has_metrics(family) -> bool:
    """Whether the family reports extra metrics of the final parameters (optional ``metrics(params, problem)``)."""
    return callable(getattr(family, "metrics", None))


def evaluate_with_metrics(tx: optax.GradientTransformation, family, keys: jax.Array,
                          steps: int | None = None) -> tuple[jax.Array, dict]:
    """Like :func:`evaluate`, plus the family's metrics of each run's final parameters: ``{name: (len(keys),)}``.

    A family may define ``metrics(params, problem) -> {name: scalar}`` (``digits``: held-out accuracy); for a
    family without it the dict is empty.
    """
    steps = family.steps if steps is None else check_positive_int("steps", steps)
    if not has_metrics(family):
        return evaluate(tx, family, keys, steps), {}
    return _compiled_metrics(tx, family, steps)(keys)


@functools.lru_cache(maxsize=16)
def _compiled_population(config, family, steps: int, with_metrics: bool):
    from lorex.lopt import learned_optimizer

    def one(params, k):
        losses, final_params, problem = unroll(learned_optimizer(params, config), family, k, steps)
        return losses, (family.metrics(final_params, problem) if with_metrics else {})

    # the weights are an argument: one compiled program serves every population of this architecture and task
    return jit_once(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))


def evaluate_population(params_list, config, family, keys: jax.Array,
                        steps: int | None = None) -> tuple[jax.Array, dict]:
    """Every learned optimizer of one architecture ``config`` (a list of weight pytrees, e.g. a population's
    members) on the problems of ``keys``, in one compiled, vmapped call: (curves (M, len(keys), steps + 1),
    metrics {name: (M, len(keys))}), as :func:`evaluate_with_metrics` gives for each."""
    steps = family.steps if steps is None else check_positive_int("steps", steps)
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *params_list)
    return _compiled_population(config, family, steps, has_metrics(family))(stacked, keys)


def summarize_metrics(metrics: dict) -> dict:
    """``{name: {"mean", "se"}}`` over runs of each metric from :func:`evaluate_with_metrics`."""
    out = {}
    for name, v in metrics.items():
        v = np.asarray(v, np.float64)
        se = float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
        out[name] = {"mean": float(np.mean(v)), "se": se}
    return out


def mean_log_loss(losses: jax.Array) -> jax.Array:
    """Per run: the mean over steps 1..T of log f_t (the tuning objective and the meta-objective up to log f_0)."""
    return jnp.mean(jnp.log(jnp.maximum(losses[..., 1:], LOG_FLOOR)), axis=-1)


def summarize(losses) -> dict:
    """Mean curve ± standard error, final loss, mean log loss (each mean ± s.e.) and the diverged count.

    A run is diverged when any of its losses is not finite; such runs make the means infinite, never silently
    dropped.
    """
    losses = np.asarray(losses, np.float64)
    n = losses.shape[0]
    finite = np.isfinite(losses).all(axis=1)
    curves = np.where(np.isfinite(losses), losses, np.inf)
    mll = np.asarray(mean_log_loss(jnp.asarray(np.where(finite[:, None], curves, np.inf))), np.float64)
    mll = np.where(finite, mll, np.inf)

    def m_se(x):
        if not np.isfinite(x).all():
            return float("inf"), float("inf")
        return float(np.mean(x)), float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0

    with np.errstate(invalid="ignore"):  # inf - inf in the spread of diverged runs: reported as inf below
        se_curve = np.std(curves, axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(curves.shape[1])
    final_mean, final_se = m_se(curves[:, -1])
    mll_mean, mll_se = m_se(mll)
    return {
        "n_runs": int(n),
        "diverged": int((~finite).sum()),
        "final_loss": {"mean": final_mean, "se": final_se, "median": float(np.median(curves[:, -1]))},
        "mean_log_loss": {"mean": mll_mean, "se": mll_se},
        "curve_mean": np.mean(curves, axis=0).tolist(),
        "curve_se": np.nan_to_num(se_curve, nan=np.inf).tolist(),
    }
