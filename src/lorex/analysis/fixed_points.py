"""Fixed points h* = F(h*, x*) of any recurrent map, found from many seeds in one batched, jitted call.

Minimize q(h) = ½‖F(h, x*) − h‖²: first 500 Adam steps on q (vmapped over seeds), then Newton's method on
G(h) = F(h, x*) − h, i.e. solve (I − J) δh = F(h) − h with J = ∂F/∂h, with backtracking (a step is taken only if it
lowers q) and a steepest-descent (Cauchy point) fallback when I − J is singular.  q reaches the rounding floor
(≈1e-13 in float32 for O(1) states, far lower under x64).  Non-converged seeds (q > tol) are dropped, duplicates
merged (lowest q kept), and the Jacobians, eigenvalues and left/right eigenvectors are computed at the distinct
points only.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lorex.analysis._common import map_jit
from lorex.analysis.linearize import eigenmodes
from lorex.errors import LorexError, check_positive_int

N_BACKTRACK = 8  # Newton step lengths tried: 1, 1/2, …, 1/2^7


class FixedPoints(NamedTuple):
    """Distinct converged fixed points (k of them) of F(·, x*), lowest q first.  All fields are numpy arrays."""

    points: np.ndarray  # (k, H)
    inputs: np.ndarray  # (k, D) the constant input x* of each point
    q: np.ndarray  # (k,) ½‖F(h, x*) − h‖²
    jac_state: np.ndarray  # (k, H, H) ∂F/∂h
    jac_input: np.ndarray  # (k, H, D) ∂F/∂x
    eigenvalues: np.ndarray  # (k, H) complex, |λ| descending
    right_eigenvectors: np.ndarray  # (k, H, H) column i = r_i (unit norm)
    left_eigenvectors: np.ndarray  # (k, H, H) column i = l_i, l_iᵀ r_i = 1
    stable: np.ndarray  # (k,) all |λ| < 1
    seed_index: np.ndarray  # (k,) the seed each point was polished from
    seed_q: np.ndarray  # (n_seeds,) final q of every seed (before dropping and merging)
    n_converged: int  # seeds with q <= tol
    n_seeds: int


def q_value(step_fn: Callable, states, inputs=None, *, input_dim: int = 1) -> jax.Array:
    """q(h) = ½‖F(h, x) − h‖² for states (..., H) and inputs (D,) or (..., D) (zeros when None)."""
    states = jnp.asarray(states)
    if inputs is None:
        inputs = jnp.zeros((input_dim,), states.dtype)
    inputs = jnp.broadcast_to(jnp.asarray(inputs, states.dtype), states.shape[:-1] + (jnp.shape(inputs)[-1],))
    f = jnp.vectorize(lambda h, x: _q(step_fn, h, x), signature="(h),(d)->()")
    return f(states, inputs)


def _q(step_fn, h, x):
    r = step_fn(h, x) - h
    return 0.5 * jnp.sum(r * r)


def _polish_step(step_fn, h, x, q0):
    """One guarded Newton step for one point: (h_new, q_new).

    Candidates: the Newton step δ = (I − J)⁻¹(F(h) − h) at lengths 1, 1/2, …, 1/2⁷, and (the guard when I − J is
    singular or the Newton step does not help) steepest descent on q from its Cauchy point t·Aᵀr,
    t = ‖Aᵀr‖²/‖AAᵀr‖² (A = I − J).  The candidate of lowest q is taken if it lowers q, else h is kept.
    """
    H = h.shape[-1]
    r = step_fn(h, x) - h
    A = jnp.eye(H, dtype=h.dtype) - jax.jacfwd(step_fn)(h, x)
    dh = jnp.linalg.solve(A, r)
    d = A.T @ r
    Ad = A @ d
    t = jnp.sum(d * d) / jnp.maximum(jnp.sum(Ad * Ad), jnp.finfo(h.dtype).tiny)
    ts = 0.5 ** jnp.arange(N_BACKTRACK, dtype=h.dtype)
    cands = jnp.concatenate([h + ts[:, None] * dh, h + (t * ts[:3, None]) * d])
    qc = jax.vmap(lambda c: _q(step_fn, c, x))(cands)
    qc = jnp.where(jnp.isfinite(qc) & jnp.all(jnp.isfinite(cands), axis=-1), qc, jnp.inf)
    i = jnp.argmin(qc)
    better = qc[i] < q0
    return jnp.where(better, cands[i], h), jnp.where(better, qc[i], q0)


def newton_polish(step_fn: Callable, states, inputs, steps: int = 10) -> tuple[jax.Array, jax.Array]:
    """Batched guarded Newton polish of states (n, H) under inputs (n, D): (states, q).  Traceable (use in jit).

    Stops after ``steps`` iterations, or earlier once no point above the rounding floor (q <= H·eps²) lowered its q
    by 10% in the last iteration.
    """
    polish = jax.vmap(functools.partial(_polish_step, step_fn))
    q0 = jax.vmap(functools.partial(_q, step_fn))(states, inputs)
    q0 = jnp.where(jnp.isfinite(q0), q0, jnp.inf)
    floor = states.shape[-1] * jnp.finfo(states.dtype).eps ** 2

    def body(carry):
        i, h, q, _ = carry
        h1, q1 = polish(h, inputs, q)
        return i + 1, h1, q1, jnp.any((q1 > floor) & (q1 < 0.9 * q))

    def cond(carry):
        i, _, _, progress = carry
        return (i < steps) & progress

    _, h, q, _ = jax.lax.while_loop(cond, body, (0, states, q0, jnp.array(True)))
    return h, q


def _solver(step_fn, learning_rate, optimizer, adam_steps: int, newton_steps: int):
    def solve(step_fn, h, x):
        opt = optax.adam(learning_rate) if optimizer is None else optimizer
        grad_q = jax.grad(_q, argnums=1)

        def first_order(h, x):
            def body(carry, _):
                h, s = carry
                u, s = opt.update(grad_q(step_fn, h, x), s, h)
                return (optax.apply_updates(h, u), s), None

            (h, _), _ = jax.lax.scan(body, (h, opt.init(h)), None, length=adam_steps)
            return h

        if adam_steps > 0:
            h = jax.vmap(first_order)(h, x)
        return newton_polish(step_fn, h, x, newton_steps) if newton_steps > 0 else (
            h, jax.vmap(functools.partial(_q, step_fn))(h, x))

    return map_jit(solve, step_fn)


def _jacobians(step_fn):
    return map_jit(lambda step_fn, h, x: jax.vmap(jax.jacfwd(step_fn, argnums=(0, 1)))(h, x), step_fn)


def _as_inputs(inputs, n, input_dim, dtype):
    if inputs is None:
        return jnp.zeros((n, input_dim), dtype)
    x = jnp.asarray(inputs, dtype)
    if x.ndim == 0:
        x = x[None]
    if x.ndim == 1:
        x = jnp.broadcast_to(x, (n, x.shape[0]))
    if x.ndim != 2 or x.shape[0] != n:
        raise LorexError("inputs", f"shape {tuple(jnp.shape(inputs))}", f"(D,) or ({n}, D)")
    return x


def _dedup(points, inputs, q, tol):
    """Indices (into the given arrays, sorted by q) of points farther than ``tol`` from every lower-q kept point."""
    order = np.argsort(q, kind="stable")
    z = np.concatenate([points, inputs], axis=1)[order].astype(np.float64)
    sq = np.sum(z * z, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    close = d2 <= tol * tol
    keep = np.zeros(len(z), bool)
    for i in range(len(z)):  # greedy, host side, on a boolean matrix already computed
        keep[i] = not np.any(close[i, :i] & keep[:i])
    return order[keep]


def find_fixed_points(step_fn: Callable, initial_states, inputs=None, *, input_dim: int = 1, adam_steps: int = 500,
                      learning_rate: float = 1e-2, optimizer: optax.GradientTransformation | None = None,
                      newton_steps: int = 20, tol: float = 1e-10, dedup_tol: float = 1e-3,
                      max_norm: float | None = None) -> FixedPoints:
    """Fixed points of h' = step_fn(h, x*) from seeds ``initial_states`` (n, H); see the module docstring.

    ``inputs``: the constant input x*, (D,) or one per seed (n, D); zeros (input_dim,) when None.
    Options: ``adam_steps``/``learning_rate`` (or any optax ``optimizer``) for the first-order phase,
    ``newton_steps`` (maximum Newton iterations), ``tol`` (a seed converged iff q <= tol), ``dedup_tol`` (points
    within this Euclidean distance, inputs included, are merged), ``max_norm`` (drop points farther from 0).
    States are computed in the dtype of ``initial_states`` (pass float64 under x64 for q far below 1e-13).
    """
    h0 = jnp.asarray(initial_states)
    if not jnp.issubdtype(h0.dtype, jnp.floating):
        h0 = h0.astype(jnp.float32)
    if h0.ndim == 1:
        h0 = h0[None]
    if h0.ndim != 2 or h0.shape[0] == 0:
        raise LorexError("initial_states", f"shape {tuple(h0.shape)}", "(n, H) with n >= 1")
    n, H = h0.shape
    x = _as_inputs(inputs, n, input_dim, h0.dtype)
    if adam_steps < 0 or newton_steps < 0:
        raise LorexError("adam_steps/newton_steps", "negative", "integers >= 0")
    h, q = _solver(step_fn, float(learning_rate), optimizer, int(adam_steps), int(newton_steps))(h0, x)
    h, q, x_np = np.asarray(h), np.asarray(q), np.asarray(x)
    ok = np.isfinite(q) & (q <= tol) & np.all(np.isfinite(h), axis=1)
    n_converged = int(ok.sum())
    if max_norm is not None:
        ok &= np.linalg.norm(h, axis=1) <= max_norm
    idx = np.flatnonzero(ok)
    idx = idx[_dedup(h[idx], x_np[idx], q[idx], dedup_tol)] if idx.size else idx
    k, D = idx.size, x_np.shape[1]
    if k == 0:
        cdt = np.complex128
        return FixedPoints(np.zeros((0, H), h.dtype), np.zeros((0, D), h.dtype), np.zeros((0,), q.dtype),
                           np.zeros((0, H, H)), np.zeros((0, H, D)), np.zeros((0, H), cdt), np.zeros((0, H, H), cdt),
                           np.zeros((0, H, H), cdt), np.zeros((0,), bool), idx, q, n_converged, n)
    Jh, Jx = _jacobians(step_fn)(jnp.asarray(h[idx]), jnp.asarray(x_np[idx]))
    Jh, Jx = np.asarray(Jh), np.asarray(Jx)
    lam, R, L = eigenmodes(Jh)
    return FixedPoints(h[idx], x_np[idx], q[idx], Jh, Jx, lam, R, L, np.all(np.abs(lam) < 1.0, axis=1), idx, q,
                       n_converged, n)


def sample_seeds(states, n: int, noise: float, key: jax.Array) -> jax.Array:
    """``n`` seeds (n, H): states drawn uniformly (with replacement) from ``states`` (..., H) plus N(0, noise²)."""
    check_positive_int("n", n)
    states = jnp.asarray(states)
    flat = states.reshape((-1, states.shape[-1]))
    k1, k2 = jax.random.split(key)
    pick = flat[jax.random.randint(k1, (n,), 0, flat.shape[0])]
    return pick + noise * jax.random.normal(k2, pick.shape, pick.dtype)
