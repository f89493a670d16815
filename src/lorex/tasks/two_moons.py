"""Two moons: a tanh MLP classifies the two-moons data with a logistic loss plus a small L2 penalty.

Each problem draws its own initialization (LeCun normal) and, with ``resample_data=True``, its own data set;
otherwise the data are fixed by ``data_seed``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lorex.tasks.base import TaskPolicy, check_field, register


def make_moons(key: jax.Array, n: int, noise: float) -> tuple[jax.Array, jax.Array]:
    """The classic two interleaving half circles (as scikit-learn's make_moons), Gaussian noise added."""
    k_noise, k_perm = jax.random.split(key)
    n_out = n // 2
    n_in = n - n_out
    t_out = jnp.linspace(0.0, jnp.pi, n_out)
    t_in = jnp.linspace(0.0, jnp.pi, n_in)
    outer = jnp.stack([jnp.cos(t_out), jnp.sin(t_out)], axis=1)
    inner = jnp.stack([1.0 - jnp.cos(t_in), 0.5 - jnp.sin(t_in)], axis=1)
    x = jnp.concatenate([outer, inner]) + noise * jax.random.normal(k_noise, (n, 2))
    y = jnp.concatenate([jnp.zeros(n_out), jnp.ones(n_in)])
    perm = jax.random.permutation(k_perm, n)
    return x[perm], y[perm]


POLICY = TaskPolicy(
    lr_range=(-3.0, 1.0),
    # two moons varies little between seeds and costs ~100x more per run than linreg
    tuning_seeds=16,
    # Gradients ~1e-2 at the start and ~1e-5 late, so they are scaled up ×100 before the GRU; GRU-16, 8 problems per
    # step and first-order meta-gradients keep 1000 meta-steps within ~10 minutes on 2 CPU cores.
    meta_defaults={"hidden": 16, "batch": 8, "first_order": True, "input_scale": 100.0, "steps": 1000,
                   "val_every": 50, "val_batch": 16, "checkpoint_every": 50},
    # Mechanism family: a two-moons meta-step costs ~40x a linreg one (an MLP on 256 points per unroll step), so one
    # seed per leave-one-out variant. 40 meta-steps (~2 minutes) left the family under-trained (most members' best
    # validation was their start); with 200 the validation objective stops improving after ~100 and the ladder's
    # meta-training takes ~6 minutes on 2 CPU cores (`lorex distill --bound-only`: 7 minutes in all).
    family_defaults={"steps": 200, "loo_seeds": (0,), "val_batch": 16},
)


@register("two_moons")
@dataclasses.dataclass(frozen=True)
class TwoMoons:
    hidden: tuple[int, ...] = (32, 32)
    n_points: int = 256
    noise: float = 0.1
    l2: float = 1e-4
    resample_data: bool = False
    data_seed: int = 0
    steps: int = 200

    policy = POLICY  # how lorex tunes and meta-trains on this task (see POLICY)

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        check_field("two_moons", "hidden", len(self.hidden) >= 1 and all(h > 0 for h in self.hidden),
                    "one or more positive layer widths", self.hidden)
        check_field("two_moons", "n_points", isinstance(self.n_points, int) and self.n_points >= 2,
                    "an integer >= 2", self.n_points)
        check_field("two_moons", "l2", self.l2 >= 0, "a number >= 0", self.l2)
        check_field("two_moons", "steps", isinstance(self.steps, int) and self.steps > 0, "a positive integer",
                    self.steps)

    def sample(self, key: jax.Array) -> dict:
        if self.resample_data:
            x, y = make_moons(key, self.n_points, self.noise)
        else:
            x, y = make_moons(jax.random.PRNGKey(self.data_seed), self.n_points, self.noise)
        return {"x": x, "y": y}

    def init(self, key: jax.Array, problem: dict) -> list[dict]:
        sizes = (2, *self.hidden, 1)
        keys = jax.random.split(key, len(sizes) - 1)
        return [
            {"w": jax.random.normal(k, (i, o)) / jnp.sqrt(i), "b": jnp.zeros((o,))}
            for k, i, o in zip(keys, sizes[:-1], sizes[1:])
        ]

    def logits(self, params: list[dict], x: jax.Array) -> jax.Array:
        h = x
        for layer in params[:-1]:
            h = jnp.tanh(h @ layer["w"] + layer["b"])
        return (h @ params[-1]["w"] + params[-1]["b"])[..., 0]

    def loss(self, params: list[dict], problem: dict) -> jax.Array:
        z = self.logits(params, problem["x"])
        nll = jnp.mean(jax.nn.softplus(z) - problem["y"] * z)  # logistic loss, stable form
        l2 = sum(jnp.sum(layer["w"] ** 2) for layer in params)
        return nll + 0.5 * self.l2 * l2
