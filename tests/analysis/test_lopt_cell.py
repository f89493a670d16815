"""Every tool runs on the learned optimizer's own cell (tiny untrained GRU, random nonzero readout)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lorex import lopt, tasks
from lorex.analysis import (autonomous, effective_lr, find_fixed_points, momentum_modes, record_trajectory,
                            s_curve, sample_seeds, saturation, update_along, update_function)
from lorex.evaluate import run


@pytest.fixture(scope="module")
def opt():
    config = lopt.LOptConfig(hidden=8, output_scale=0.1)
    params = lopt.init_params(jax.random.PRNGKey(0), config)
    params["readout"]["w"] = jax.random.normal(jax.random.PRNGKey(1), (8,))
    params["readout"]["b"] = jnp.asarray(0.01)
    params["h0"] = 0.3 * jax.random.normal(jax.random.PRNGKey(2), (8,))
    return params, config, lopt.recurrent_map(params, config)


def test_trajectory_matches_the_optax_transformation(opt):
    params, config, _ = opt
    fam = tasks.make("linreg", n=4, m=6)
    key = jax.random.PRNGKey(7)
    traj = record_trajectory(params, config, fam, key, steps=6)
    assert traj.states.shape == (6, 4, 8) and traj.updates.shape == (6, 4) and traj.losses.shape == (7,)
    np.testing.assert_allclose(traj.losses, run(lopt.learned_optimizer(params, config), fam, key, 6), rtol=1e-5)
    h1, u1 = lopt.step(params, config, jnp.broadcast_to(params["h0"], (4, 8)), traj.grads[0])
    np.testing.assert_allclose(traj.states[0], h1, atol=1e-6)
    np.testing.assert_allclose(traj.updates[0], u1, atol=1e-7)


def test_fixed_points_modes_and_update_function(opt):
    params, config, rmap = opt
    run_ = autonomous(rmap, 30)
    seeds = sample_seeds(run_.states, 16, 0.2, jax.random.PRNGKey(3))
    fps = find_fixed_points(rmap.step, seeds)
    assert fps.n_converged >= 1 and np.all(fps.q <= 1e-10)
    h_star = fps.points[0]
    modes = momentum_modes(rmap, h_star)
    np.testing.assert_allclose(modes.readout_grad, config.output_scale * np.asarray(params["readout"]["w"]), rtol=1e-6)
    np.testing.assert_allclose(modes.betas, fps.eigenvalues[0], atol=1e-5)
    a_eff = float(effective_lr(rmap, h_star))
    np.testing.assert_allclose(np.sum(modes.alphas).real, a_eff, rtol=1e-4, atol=1e-7)
    grads = jnp.linspace(-4, 4, 9)
    U = update_function(rmap, jnp.stack([h_star, rmap.h0]), grads)
    _, u_ref = lopt.step(params, config, jnp.broadcast_to(rmap.h0, (9, 8)), grads)
    np.testing.assert_allclose(U[1], u_ref, atol=1e-7)
    sat = saturation(grads, U)
    assert sat.level_pos.shape == (2,) and np.all(np.isfinite(sat.g90_pos))
    sl = update_along(rmap, h_star, modes.right_eigenvectors[:, 0], jnp.linspace(-1, 1, 3), grads)
    assert sl.updates.shape == (3, 9)


def test_autonomous_and_s_curve(opt):
    params, config, rmap = opt
    run_ = autonomous(rmap, 20)
    assert run_.states.shape == (21, 8) and run_.alpha_eff.shape == (21,)
    h1 = lopt.gru_cell(params["cell"], rmap.h0, lopt.input_features(jnp.zeros(()), config))
    np.testing.assert_allclose(run_.states[1], h1, atol=1e-6)
    g = np.array([-1.0, -0.1, 0.0, 0.1, 1.0])
    curve = s_curve(rmap, g)
    assert np.all(curve.q <= 1e-10) and curve.points.shape == (5, 8)
    np.testing.assert_allclose(curve.alpha_eff[2], curve.zero_alpha_eff, rtol=1e-6)


def test_log_sign_features_need_a_finite_difference():
    config = lopt.LOptConfig(hidden=4, features="log_sign")
    params = lopt.init_params(jax.random.PRNGKey(0), config)
    params["readout"]["w"] = jnp.ones(4)
    rmap = lopt.recurrent_map(params, config)
    a = float(effective_lr(rmap, rmap.h0, fd_step=1e-3))
    assert np.isfinite(a) and a != 0.0
