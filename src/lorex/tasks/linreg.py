"""Random linear regression with a known spectrum: min_x ½‖Ax − b‖²/m.

A = √m · U diag(√λ) Qᵀ with U (m×n) orthonormal columns and Q (n×n) orthogonal, so the Hessian AᵀA/m = Q diag(λ) Qᵀ
has eigenvalues λ exactly, log-uniform in [λmin, λmax] (with ``pin_extremes`` the two extremes are set exactly).
The loss is the excess loss f(x) − f(x*) = ½ Σᵢ λᵢ ((Qᵀ(x − x*))ᵢ)², computed in the eigenbasis: never as a
difference of two float32 losses, which cancels to noise exactly where optimizers are compared.

U and Q are Haar-distributed (uniform over orthonormal frames): the Q factor of a Gaussian matrix with the signs
fixed so that R has a positive diagonal. The QR is computed by Householder reflections written as matmuls
(:func:`random_orthonormal`), not by ``jnp.linalg.qr``: jaxlib 0.10.x's CPU LAPACK kernels deadlock when two batched
QR calls run at once (both threads of XLA's pool wait for chunks nobody runs), which the vmapped sampler at n = 20
did within a few hundred calls.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lorex.tasks.base import TaskPolicy, check_field, register


def random_orthonormal(key: jax.Array, rows: int, cols: int) -> jax.Array:
    """A Haar-distributed (rows, cols) matrix with orthonormal columns (rows >= cols), from matmuls only.

    Householder QR of a standard Gaussian matrix G = QR, with the columns of Q multiplied by sign(diag R) so that
    R has a positive diagonal; that Q is uniformly distributed over orthonormal frames (Mezzadri 2007). No LAPACK
    call, so nothing here can meet jaxlib's batched-LAPACK deadlock, whatever the batch.
    """
    G = jax.random.normal(key, (rows, cols))
    row = jnp.arange(rows)

    def reflect(k, carry):
        R, Q = carry  # R = H_{k-1}…H_0 G (zero below the diagonal in columns < k), Q = H_0…H_{k-1}
        x = jnp.where(row >= k, R[:, k], 0.0)
        sign = jnp.where(x[k] >= 0, 1.0, -1.0)
        v = x.at[k].add(sign * jnp.sqrt(jnp.sum(x * x)))
        vv = jnp.sum(v * v)
        beta = jnp.where(vv > 0, 2.0 / jnp.where(vv > 0, vv, 1.0), 0.0)  # H_k = I − β v vᵀ
        return R - beta * jnp.outer(v, v @ R), Q - beta * jnp.outer(Q @ v, v)

    R, Q = jax.lax.fori_loop(0, cols, reflect, (G, jnp.eye(rows, dtype=G.dtype)))
    d = jnp.where(jnp.diagonal(R)[:cols] >= 0, 1.0, -1.0)
    return Q[:, :cols] * d


POLICY = TaskPolicy(
    lr_range=(-3.0, 1.5),
    meta_defaults={"steps": 15000},  # what `lorex train --task linreg` uses unless told otherwise (CPU)
    # Mechanism family (`lorex distill --bound`): 300 meta-steps keep the whole ladder's meta-training (the bound on
    # 3 seeds + 4 leave-one-out variants) within ~2 minutes on 2 CPU cores. 128 validation problems: the selection
    # among members must resolve differences well below the spread of linreg's per-problem mean log loss (32
    # problems chose a member 1.2 nats worse on test).
    family_defaults={"steps": 300, "val_batch": 128},
)


class LinregProblem(NamedTuple):
    A: jax.Array  # (m, n)
    b: jax.Array  # (m,)
    eigvals: jax.Array  # (n,) Hessian eigenvalues
    eigvecs: jax.Array  # (n, n) columns are eigenvectors
    x_star: jax.Array  # (n,) the minimizer


@register("linreg")
@dataclasses.dataclass(frozen=True)
class Linreg:
    n: int = 5
    m: int = 10
    lambda_min: float = 1e-3
    lambda_max: float = 1.0
    pin_extremes: bool = False
    noise: float = 0.0
    init_scale: float = 1.0
    steps: int = 200

    policy = POLICY  # how lorex tunes and meta-trains on this task (see POLICY)

    def __post_init__(self):
        check_field("linreg", "n", isinstance(self.n, int) and self.n >= 2, "an integer >= 2", self.n)
        check_field("linreg", "m", isinstance(self.m, int) and self.m >= self.n, "an integer >= n", self.m)
        check_field("linreg", "lambda_min", 0 < self.lambda_min <= self.lambda_max, "0 < lambda_min <= lambda_max",
                    self.lambda_min)
        check_field("linreg", "noise", self.noise >= 0, "a number >= 0", self.noise)
        check_field("linreg", "steps", isinstance(self.steps, int) and self.steps > 0, "a positive integer",
                    self.steps)

    def sample(self, key: jax.Array) -> LinregProblem:
        kq, ku, kl, kx, kn = jax.random.split(key, 5)
        n, m = self.n, self.m
        Q = random_orthonormal(kq, n, n)
        U = random_orthonormal(ku, m, n)
        lo, hi = jnp.log(self.lambda_min), jnp.log(self.lambda_max)
        lam = jnp.exp(jax.random.uniform(kl, (n,), minval=lo, maxval=hi))
        if self.pin_extremes:
            lam = lam.at[0].set(self.lambda_min).at[1].set(self.lambda_max)
        A = jnp.sqrt(m) * (U * jnp.sqrt(lam)) @ Q.T
        x_true = jax.random.normal(kx, (n,))
        b = A @ x_true + self.noise * jax.random.normal(kn, (m,))
        # x* = A⁺ b = Q diag(1/√λ) Uᵀ b / √m  (exact for the construction above)
        x_star = Q @ ((U.T @ b) / (jnp.sqrt(m) * jnp.sqrt(lam)))
        return LinregProblem(A, b, lam, Q, x_star)

    def init(self, key: jax.Array, problem: LinregProblem) -> jax.Array:
        return self.init_scale * jax.random.normal(key, (self.n,))

    def loss(self, params: jax.Array, problem: LinregProblem) -> jax.Array:
        r = problem.eigvecs.T @ (params - problem.x_star)
        return 0.5 * jnp.sum(problem.eigvals * r * r)

    def polyak(self) -> tuple[float, float]:
        """Optimal heavy-ball (α*, β*) for Hessian eigenvalues in [λmin, λmax] (Polyak 1964)."""
        a, b = self.lambda_min**0.5, self.lambda_max**0.5
        return 4.0 / (a + b) ** 2, ((b - a) / (b + a)) ** 2
