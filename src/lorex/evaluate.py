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


def problem_and_params(family, key: jax.Array) -> tuple[Any, Any]:
    """The problem instance and the initial parameters that ``key`` stands for (same split everywhere)."""
    k_problem, k_init = jax.random.split(key)
    problem = family.sample(k_problem)
    return problem, family.init(k_init, problem)


def run(tx: optax.GradientTransformation, family, key: jax.Array, steps: int, *, remat: bool = False,
        truncation: int | None = None, first_order: bool = False) -> jax.Array:
    """Losses (steps + 1,) of one run of ``tx`` on the problem of ``key``; index 0 is before the first step.

    Differentiable in anything ``tx`` closes over (this is also the meta-training unroll). ``remat`` recomputes
    each step in the backward pass (``jax.checkpoint``) instead of storing it; ``truncation=K`` stops gradients
    through the carry every K steps (truncated backpropagation; ``steps`` must be a multiple of K);
    ``first_order`` treats the optimizee's gradients as constants in the backward pass (drops the Hessian terms
    of the meta-gradient, as in Andrychowicz et al. 2016).
    """
    problem, params = problem_and_params(family, key)

    def body(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(family.loss)(params, problem)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    if remat:
        body = jax.checkpoint(body)
    carry = (params, tx.init(params))
    if truncation is None or truncation >= steps:
        carry, losses = jax.lax.scan(body, carry, None, length=steps)
    else:
        if steps % truncation:
            raise ValueError(f"steps ({steps}) must be a multiple of truncation ({truncation})")

        def window(carry, _):
            return jax.lax.scan(body, jax.lax.stop_gradient(carry), None, length=truncation)

        carry, losses = jax.lax.scan(window, carry, None, length=steps // truncation)
        losses = losses.reshape(-1)
    return jnp.concatenate([losses, family.loss(carry[0], problem)[None]])


@functools.lru_cache(maxsize=64)
def _compiled(tx, family, steps: int):
    return jax.jit(jax.vmap(lambda k: run(tx, family, k, steps)))


def evaluate(tx: optax.GradientTransformation, family, keys: jax.Array, steps: int | None = None) -> jax.Array:
    """Loss curves, shape (len(keys), steps + 1), of ``tx`` on the problems of ``keys`` (one compiled call).

    The compiled function is cached per (transformation, family, steps): calling again with new keys of the same
    shape does not recompile.
    """
    steps = family.steps if steps is None else check_positive_int("steps", steps)
    return _compiled(tx, family, steps)(keys)


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
