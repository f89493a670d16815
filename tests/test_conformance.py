"""Every optax transformation lorex builds behaves as an optax transformation should (the checks of optax's own alias
tests): stable state structure, shapes and dtypes; updates in the parameters' dtype; one compilation; composition
with ``optax.chain``, ``optax.MultiSteps`` and ``optax.masked``; extra arguments accepted uniformly.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import toy_surrogate
from lorex import lopt, meta
from lorex.baselines import baseline, baseline_from_json
from lorex.distill import family as mechanism_family
from lorex.distill.lens import input_linearized_learned, pinned_learned
from lorex.distill.surrogate import surrogate_optimizer


@functools.lru_cache(maxsize=None)
def shipped():
    params, config, _ = lopt.load_params("linreg")
    return params, config


def pinned():
    rmap = lopt.recurrent_map(*shipped())
    return pinned_learned(rmap, jnp.stack([rmap.h0, 0.5 * rmap.h0, 0.25 * rmap.h0]))


FACTORIES = {
    "learned_optimizer": lambda: lopt.learned_optimizer(*shipped()),
    "surrogate_optimizer": lambda: surrogate_optimizer(toy_surrogate()),
    "pinned_learned": pinned,
    "input_linearized_learned": lambda: input_linearized_learned(lopt.recurrent_map(*shipped()), None),
    "baseline": lambda: baseline("adam", 0.01, 0.9),
    "baseline_from_json": lambda: baseline_from_json("momentum", {"learning_rate": 0.01, "momentum": 0.9}),
    "meta_optimizer": lambda: meta.meta_optimizer(meta.default_config("linreg")),
    "mechanism_family": lambda: mechanism_family.mechanism_family(
        mechanism_family.init_params(lr=0.05, betas=(0.9, 0.5), tau=1.0, p=0.5), 20),  # every mechanism on
    # the other code path: bias correction, mechanisms switched off by the mask (Adam as a member, one mode)
    "mechanism_family_adam": lambda: mechanism_family.mechanism_family(
        mechanism_family.init_params(lr=0.01, betas=(0.9,), modes=1, rho=0.999, p=0.5), 20, bias_correction=True,
        mask=mechanism_family.full_mask(clipping=False, schedule=False)),
}
NAMES = sorted(FACTORIES)


def make_params(dtype):
    return {"w": jnp.linspace(-1.0, 1.0, 6, dtype=dtype).reshape(2, 3), "b": jnp.full((3,), 0.5, dtype),
            "s": jnp.asarray(0.25, dtype), "layers": [jnp.ones((1, 2), dtype)]}


def grads_like(params, t):
    return jax.tree_util.tree_map(lambda x: (jnp.cos(x.astype(jnp.float32) + t) * 0.3).astype(x.dtype), params)


def shapes_dtypes(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return jax.tree_util.tree_structure(tree), [(jnp.shape(x), jnp.result_type(x)) for x in leaves]


def assert_trees_close(a, b, rtol=1e-6):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=rtol, atol=1e-7)


def test_every_transformation_lorex_builds_is_listed():
    """A new factory returning a GradientTransformation must join FACTORIES (and so this battery)."""
    import ast
    from pathlib import Path

    import lorex

    found = set()
    for path in Path(lorex.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.returns is not None and "GradientTransformation" in (
                    ast.unparse(node.returns)):
                found.add(node.name)
    covered = set(FACTORIES) | {"baseline", "transformation", "load_optimizer", "mechanistic_optimizer",
                                "scale_by_mechanisms"}  # the same transformations as listed ones
    assert found <= covered, f"not in the conformance battery: {sorted(found - covered)}"


@pytest.mark.parametrize("name", NAMES)
def test_is_extra_args_transformation(name):
    tx = FACTORIES[name]()
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    params = make_params(jnp.float32)
    state = tx.init(params)
    g = grads_like(params, 0)
    want, _ = tx.update(g, state, params)
    assert_trees_close(tx.update(g, state, params, some_extra_arg=1.0)[0], want)
    assert_trees_close(tx.update(g, state, params=params, some_extra_arg=jnp.ones(2))[0], want)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_state_stable_and_updates_in_param_dtype(name, dtype):
    tx = FACTORIES[name]()
    params = make_params(dtype)
    state = tx.init(params)
    before = shapes_dtypes(state)
    update = jax.jit(tx.update)  # a cached transformation (baseline) shares its compilations between dtypes
    compiled = []
    for t in range(3):
        updates, state = update(grads_like(params, t), state, params)
        compiled.append(update._cache_size())
        assert shapes_dtypes(state) == before
        assert shapes_dtypes(updates) == shapes_dtypes(params)
        assert all(bool(jnp.isfinite(u.astype(jnp.float32)).all()) for u in jax.tree_util.tree_leaves(updates))
        params = optax.apply_updates(params, updates)
    assert compiled[0] == compiled[-1], "the second jitted update compiled again"


@pytest.mark.parametrize("name", NAMES)
def test_in_chain_multisteps_and_masked(name):
    tx = FACTORIES[name]()
    params = make_params(jnp.float32)
    g = grads_like(params, 0)
    want, _ = tx.update(g, tx.init(params), params)

    chained = optax.chain(tx, optax.scale(1.0))
    assert_trees_close(chained.update(g, chained.init(params), params)[0], want)

    multi = optax.MultiSteps(tx, 2)
    state = multi.init(params)
    first, state = multi.update(g, state, params)
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree_util.tree_leaves(first))
    second, state = multi.update(g, state, params)  # the mean of two equal gradients is the gradient
    assert_trees_close(second, want, rtol=1e-5)

    mask = {"w": True, "b": False, "s": True, "layers": [False]}
    masked = optax.masked(tx, mask)
    got, _ = masked.update(g, masked.init(params), params)
    sub = {"w": params["w"], "s": params["s"]}
    sub_want, _ = tx.update({"w": g["w"], "s": g["s"]}, tx.init(sub), sub)
    assert_trees_close({"w": got["w"], "s": got["s"]}, sub_want)
    assert_trees_close({"b": got["b"], "layers": got["layers"]}, {"b": g["b"], "layers": g["layers"]})


def test_learned_optimizer_decreases_an_unseen_quadratic():
    """The shipped linreg optimizer on a random 7-dimensional quadratic f(x) = ½ (x − x*)ᵀ A (x − x*)."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(7), 3)
    q, _ = jnp.linalg.qr(jax.random.normal(k1, (7, 7)))
    a = (q * jnp.linspace(0.2, 1.0, 7)) @ q.T
    x_star, x0 = jax.random.normal(k2, (7,)), jax.random.normal(k3, (7,))

    def f(x):
        return 0.5 * (x - x_star) @ a @ (x - x_star)

    tx = lopt.learned_optimizer(*shipped())

    def body(carry, _):
        x, state = carry
        u, state = tx.update(jax.grad(f)(x), state, x)
        return (x + u, state), f(x)

    (x, _), losses = jax.lax.scan(body, (x0, tx.init(x0)), None, length=50)
    assert float(f(x)) < 0.1 * float(losses[0])
