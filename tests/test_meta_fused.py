"""The fast meta-training path equals the straightforward one: the GRU cell's hand-written backward against
autodiff, and the fused meta-objective, meta-gradient and meta-step against the reference unroll
(:func:`lorex.meta.reference_batch_objective`: :func:`lorex.evaluate.run` with the optax transformation)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads

from lorex import evaluate, lopt, meta


def cell_args(key, lead, H, D, dtype=jnp.float32):
    ks = jax.random.split(key, 4)
    cell = lopt.init_params(ks[0], lopt.LOptConfig(hidden=H, features="raw" if D == 1 else "log_sign"))["cell"]
    cell = {k: (v + 0.1 * jax.random.normal(ks[1], v.shape)).astype(dtype) for k, v in cell.items()}
    h = jnp.tanh(jax.random.normal(ks[2], (*lead, H))).astype(dtype)
    x = jax.random.normal(ks[3], (*lead, D)).astype(dtype)
    return cell, h, x


@pytest.mark.parametrize("lead,D", [((7,), 1), ((2, 5), 2)])
def test_fast_cell_backward_equals_autodiff(lead, D):
    cell, h, x = cell_args(jax.random.PRNGKey(0), lead, 6, D)
    out, vjp_auto = jax.vjp(lopt.gru_cell, cell, h, x)
    out_fast, vjp_fast = jax.vjp(lopt.gru_cell_fast_vjp, cell, h, x)
    np.testing.assert_array_equal(out_fast, out)  # the same forward function
    ct = jax.random.normal(jax.random.PRNGKey(1), out.shape)
    for a, b in zip(jax.tree_util.tree_leaves(vjp_fast(ct)), jax.tree_util.tree_leaves(vjp_auto(ct))):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)


def test_fast_cell_gradients_numerically_to_second_order_in_reverse_mode():
    with jax.enable_x64(True):
        cell, h, x = cell_args(jax.random.PRNGKey(2), (3,), 4, 1, jnp.float64)
        check_grads(lopt.gru_cell_fast_vjp, (cell, h, x), order=2, modes=("rev",), atol=1e-6, rtol=1e-6)


TWO_MOONS = (("hidden", (3,)), ("n_points", 8))
CONFIGS = {  # tiny versions of each task's shipped meta-training setting, and the variants the fused path handles
    "linreg second order": dict(task="linreg", task_overrides=(("m", 4), ("n", 3))),
    "linreg second order, no remat, ratio": dict(task="linreg", task_overrides=(("m", 4), ("n", 3)), remat=False,
                                                 objective="ratio"),
    "two moons first order": dict(task="two_moons", task_overrides=TWO_MOONS, first_order=True, input_scale=100.0),
    "two moons first order, no remat, log_sign, final": dict(
        task="two_moons", task_overrides=TWO_MOONS, first_order=True, remat=False, features="log_sign",
        objective="final"),
    "rosenbrock truncated first order": dict(task="rosenbrock", first_order=True, truncation=3, input_scale=0.01),
    "digits (minibatches) second order": dict(task="digits", task_overrides=(("channels", (2,)), ("batch", 2)),
                                              input_scale=10.0),
    "digits log_final (final loss on the whole training part)": dict(
        task="digits", task_overrides=(("channels", (2,)), ("batch", 2)), input_scale=10.0, objective="log_final"),
}


def setup(name):
    cfg = meta.MetaConfig(**{"hidden": 4, "batch": 2, "unroll": 6, "output_scale": 0.3, **CONFIGS[name]})
    p = lopt.init_params(jax.random.PRNGKey(1), cfg.lopt_config())
    p["readout"]["w"] = 0.5 * jax.random.normal(jax.random.PRNGKey(2), p["readout"]["w"].shape)
    return cfg, cfg.family(), p, meta.step_keys(cfg, 0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_meta_step_equals_the_reference(name):
    cfg, family, p, keys = setup(name)
    assert meta.fusable(family, keys)
    opt = meta.meta_optimizer(cfg)
    out = {}
    for fused in (True, False):
        @jax.jit
        def step(params, opt_state, keys):
            loss, g = jax.value_and_grad(meta.batch_objective)(params, keys, cfg, family, cfg.horizon(), fused=fused)
            return meta.guarded_update(opt, params, opt_state, g, loss), loss, g

        (params, _), loss, g = step(p, opt.init(p), keys)
        out[fused] = float(loss), ravel_pytree(g)[0], ravel_pytree(params)[0]
    (l_f, g_f, p_f), (l_r, g_r, p_r) = out[True], out[False]
    assert np.abs(g_r).max() > 0
    np.testing.assert_allclose(l_f, l_r, rtol=1e-6)
    np.testing.assert_allclose(g_f, g_r, rtol=1e-4, atol=1e-5 * np.abs(g_r).max())
    np.testing.assert_allclose(p_f, p_r, rtol=1e-6, atol=1e-7)


def test_first_order_meta_gradient_drops_the_hessian_terms():
    """The first-order loss's derivative reuses the gradient: it differs from the full (second-order) one."""
    cfg, family, p, keys = setup("two moons first order")
    grads = [ravel_pytree(jax.grad(meta.batch_objective)(p, keys, c, family, 6))[0]
             for c in (cfg, dataclasses.replace(cfg, first_order=False))]
    assert np.all(np.isfinite(grads[0])) and not np.allclose(grads[0], grads[1], rtol=1e-3)


def test_mixed_dtype_parameters_use_the_reference_unroll():
    class Mixed:
        steps = 3

        def sample(self, key):
            return jnp.zeros(())

        def init(self, key, problem):
            return {"a": jnp.ones(2, jnp.float32), "b": jnp.ones(2, jnp.float16)}

        def loss(self, params, problem):
            return jnp.sum(params["a"] ** 2) + jnp.sum(params["b"].astype(jnp.float32) ** 2)

    assert not meta.fusable(Mixed(), meta.step_keys(meta.MetaConfig(batch=2), 0))


def test_log_final_adds_the_whole_problem_final_loss():
    """``log_final`` = ``log`` + log(f_T / f_0); for a stochastic family f_T is the final parameters' loss on the
    whole training part (not one more minibatch), checked against the reference unroll's pieces."""
    cfg, family, p, keys = setup("digits log_final (final loss on the whole training part)")
    tx = lopt.learned_optimizer(p, cfg.lopt_config())
    expected = []
    for k in keys:
        losses, x_final, problem = evaluate.unroll(tx, family, k, 6)
        np.testing.assert_allclose(float(losses[-1]), float(family.loss(x_final, problem)), rtol=1e-6)
        assert float(losses[-1]) != float(family.loss(x_final, family.minibatch(problem, 6)))
        log_ratio = np.log(np.asarray(losses) / float(losses[0]))
        expected.append(log_ratio[1:].mean() + log_ratio[-1])
    np.testing.assert_allclose(float(meta.batch_objective(p, keys, cfg, family, 6)), np.mean(expected), rtol=1e-5)


@pytest.mark.parametrize("name", ["linreg second order", "two moons first order", "rosenbrock truncated first order"])
def test_storing_the_gates_changes_memory_not_the_meta_gradient(name, monkeypatch):
    """Under rematerialization the GRU's gates are stored when they fit in ``SAVE_GATES_MAX_BYTES`` and recomputed
    otherwise: the same meta-loss and meta-gradient, more memory when stored."""
    cfg, family, p, keys = setup(name)
    assert cfg.remat
    out = {}
    for budget in (0, meta.SAVE_GATES_MAX_BYTES):
        monkeypatch.setattr(meta, "SAVE_GATES_MAX_BYTES", budget)
        f = jax.jit(jax.value_and_grad(lambda q: meta.batch_objective(q, keys, cfg, family, cfg.horizon())))
        temp = f.lower(p).compile().memory_analysis().temp_size_in_bytes
        loss, g = f(p)
        out[budget] = float(loss), ravel_pytree(g)[0], temp
    (l_r, g_r, t_r), (l_s, g_s, t_s) = out[0], out[meta.SAVE_GATES_MAX_BYTES]
    np.testing.assert_allclose(l_s, l_r, rtol=1e-7)
    np.testing.assert_allclose(g_s, g_r, rtol=1e-5, atol=1e-6 * np.abs(g_r).max())
    gates = cfg.horizon() * cfg.batch * family_size(family) * 4 * cfg.hidden * 4  # float32 gates, every step
    assert t_s >= t_r + gates // 2, (t_s, t_r, gates)


def family_size(family):
    return ravel_pytree(evaluate.problem_and_params(family, jax.random.PRNGKey(0))[1])[0].size
