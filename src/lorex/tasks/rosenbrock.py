"""Rosenbrock: f(x, y) = (a − x)² + b(y − x²)², minimum 0 at (a, a²); problems differ by their starting point."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lorex.tasks.base import TaskPolicy, check_field, register


POLICY = TaskPolicy(
    lr_range=(-5.0, 0.5),
    # Rosenbrock's gradients reach ~1e3 and its unrolls are chaotic: raw gradients scaled ×0.01 (so the GRU is not
    # saturated, and a zero gradient stays an input it meets, which the mechanism analysis needs; log/sign features
    # never meet g = 0), truncated first-order meta-gradients (full second-order BPTT gave meta-gradients of norm
    # ~1e25 and stalled).
    meta_defaults={"input_scale": 0.01, "truncation": 20, "first_order": True, "steps": 10000},
    # Mechanism family: as on linreg, 300 meta-steps (the ladder within ~2 minutes on 2 CPU cores) and 128
    # validation problems, so the selection among members resolves differences well below the spread of the
    # per-problem mean log loss.
    family_defaults={"steps": 300, "val_batch": 128},
)


@register("rosenbrock")
@dataclasses.dataclass(frozen=True)
class Rosenbrock:
    a: float = 1.0
    b: float = 100.0
    x_range: tuple[float, float] = (-2.0, 2.0)
    y_range: tuple[float, float] = (-1.0, 3.0)
    steps: int = 200

    policy = POLICY  # how lorex tunes and meta-trains on this task (see POLICY)

    def __post_init__(self):
        check_field("rosenbrock", "b", self.b > 0, "a positive number", self.b)
        for f in ("x_range", "y_range"):
            r = getattr(self, f)
            check_field("rosenbrock", f, len(r) == 2 and r[0] < r[1], "(low, high) with low < high", r)
            object.__setattr__(self, f, tuple(float(v) for v in r))
        check_field("rosenbrock", "steps", isinstance(self.steps, int) and self.steps > 0, "a positive integer",
                    self.steps)

    def sample(self, key: jax.Array) -> jax.Array:
        """The problem is its starting point (2,)."""
        lo = jnp.array([self.x_range[0], self.y_range[0]])
        hi = jnp.array([self.x_range[1], self.y_range[1]])
        return jax.random.uniform(key, (2,), minval=lo, maxval=hi)

    def init(self, key: jax.Array, problem: jax.Array) -> jax.Array:
        del key
        return problem

    def loss(self, params: jax.Array, problem: jax.Array) -> jax.Array:
        del problem
        x, y = params[0], params[1]
        return (self.a - x) ** 2 + self.b * (y - x**2) ** 2
