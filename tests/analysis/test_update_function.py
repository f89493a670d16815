import jax.numpy as jnp
import numpy as np

from lorex.analysis import (effective_lr, gradient_density, reference, saturation, share_beyond, update_along,
                            update_function)


def test_heavy_ball_update_is_linear_with_slope_minus_alpha():
    alpha, beta = 0.1, 0.8
    hb = reference.heavy_ball(alpha, beta)
    states = jnp.array([[-1.0], [0.0], [2.0]])
    grads = jnp.linspace(-3, 3, 13)
    U = update_function(hb, states, grads)
    assert U.shape == (3, 13)
    np.testing.assert_allclose(U, -alpha * (beta * states + grads[None, :]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(effective_lr(hb, states), alpha, rtol=1e-6)
    np.testing.assert_allclose(effective_lr(hb, states, fd_step=0.5), alpha, rtol=1e-5)
    sl = update_along(hb, jnp.zeros(1), jnp.ones(1), jnp.array([-1.0, 1.0]), grads)
    np.testing.assert_allclose(sl.updates, -alpha * (beta * sl.offsets[:, None] + grads), atol=1e-6)
    sat = saturation(grads, U)
    np.testing.assert_allclose(sat.level_pos, alpha * 3, rtol=1e-6)
    np.testing.assert_allclose(sat.g90_pos, 0.9 * 3, rtol=1e-5)  # linear: no saturation inside the grid
    np.testing.assert_allclose(sat.g90_neg, 0.9 * 3, rtol=1e-5)


def test_saturating_update_level_and_g90():
    c, s = 0.02, 0.5
    step = lambda h, x: x  # noqa: E731  (state = last gradient)
    readout = lambda h: -c * jnp.tanh(h[0] / s) + 0.01  # noqa: E731  (with a drift, removed by centering)
    grads = jnp.linspace(-5, 5, 2001)
    U = update_function(step, jnp.zeros((1, 1)), grads, readout=readout)
    sat = saturation(grads, U)
    level = c * np.tanh(5 / s)
    np.testing.assert_allclose([sat.level_pos[0], sat.level_neg[0]], level, rtol=1e-5)
    g90 = s * np.arctanh(0.9 * np.tanh(5 / s))
    np.testing.assert_allclose([sat.g90_pos[0], sat.g90_neg[0]], g90, rtol=1e-3)
    np.testing.assert_allclose([sat.limit_pos[0], sat.limit_neg[0]], [0.01 - level, 0.01 + level], rtol=1e-5)
    np.testing.assert_allclose(effective_lr(step, jnp.zeros(1), readout=readout), c / s, rtol=1e-6)


def test_gradient_density_and_share_beyond():
    g = np.concatenate([np.full(90, 0.01), np.full(10, -5.0), [np.nan, 0.0]])
    edges, dens = gradient_density(g, bins=10)
    assert edges[0] > 0 and np.isclose(np.sum(dens * np.diff(edges)), 1.0)
    edges, dens = gradient_density(g, bins=10, signed=True)
    assert edges[0] == -5.0 and np.isclose(np.sum(dens * np.diff(edges)), 1.0)
    assert np.isclose(share_beyond(g, 1.0), 10 / 101)
