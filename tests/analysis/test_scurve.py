import jax.numpy as jnp
import numpy as np

from lorex.analysis import find_fixed_points, reference, s_curve, s_curve_summary


def _grid():
    g = np.logspace(-3, 1, 9)
    return np.concatenate([-g[::-1], [0.0], g])


def test_rmsprop_fixed_point_under_constant_gradient():
    g_star = np.float32(-0.3)
    fps = find_fixed_points(reference.rmsprop(0.01, 0.9).step, np.ones((4, 2), np.float32), [g_star])
    assert len(fps.points) == 1
    np.testing.assert_allclose(fps.points[0], [g_star**2, g_star], rtol=1e-6)
    np.testing.assert_allclose(sorted(np.abs(fps.eigenvalues[0])), [0.0, 0.9], atol=1e-7)


def test_rmsprop_s_curve_exact():
    alpha, rho, eps = 0.01, 0.9, 1e-8
    g = _grid()
    curve = s_curve(reference.rmsprop(alpha, rho, eps), g)
    np.testing.assert_allclose(curve.points[:, 0], g**2, rtol=1e-5, atol=1e-12)  # s* = g*²
    np.testing.assert_allclose(curve.points[:, 1], g, rtol=1e-6)
    assert np.all(curve.q <= 1e-10)
    # α_eff = −dU/dg at g = 0 at h*(g*): the readout sees s' = ρ g*², hence α/(√ρ|g*| + ε) exactly.
    np.testing.assert_allclose(curve.alpha_eff, alpha / (np.sqrt(rho) * np.abs(g) + eps), rtol=1e-5)
    s = s_curve_summary(curve)
    np.testing.assert_allclose([s.slope_pos, s.slope_neg], -1.0, atol=1e-5)
    np.testing.assert_allclose([s.rmsprop_alpha_pos, s.rmsprop_alpha_neg], alpha / np.sqrt(rho), rtol=1e-5)
    assert s.n_fit_pos == 9 and s.n_fit_neg == 9
    assert curve.projection.shape == (19, 2)


def test_heavy_ball_s_curve_is_flat():
    alpha, beta = 0.1, 0.5
    g = _grid()
    curve = s_curve(reference.heavy_ball(alpha, beta), g)
    np.testing.assert_allclose(curve.points[:, 0], g / (1 - beta), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(curve.alpha_eff, alpha, rtol=1e-6)
    assert s_curve_summary(curve).n_fit_pos == 0  # no adaptation: nothing to fit by default
    s = s_curve_summary(curve, fit_range=(1e-3, 10.0))
    np.testing.assert_allclose([s.slope_pos, s.slope_neg], 0.0, atol=1e-5)


def test_adam_without_bias_correction_s_curve():
    # Adam fixed point under g*: m = g*, v = g*²; readout sees m' = b1 g*, v' = b2 g*², so α_eff = α(1−b1)/(√b2|g*|+ε)
    alpha, b1, b2, eps = 1e-3, 0.9, 0.99, 1e-8
    g = np.array([-2.0, -0.1, 0.1, 2.0])
    curve = s_curve(reference.adam(alpha, b1, b2, eps, bias_correction=False), g, h0=jnp.zeros(2))
    np.testing.assert_allclose(curve.points, np.stack([g, g**2], 1), rtol=1e-5)
    # dU/dg at g = 0 = −α[(1−b1)/(√v'+ε)] (the √v' term has zero derivative at g = 0 since v' depends on g²)
    np.testing.assert_allclose(curve.alpha_eff, alpha * (1 - b1) / (np.sqrt(b2) * np.abs(g) + eps), rtol=1e-5)


def test_relaxation_finds_the_driven_fixed_point_from_a_bad_start():
    """Continuation from a wrong h*(0) with no Newton steps stays put; relaxation reaches s* = g*² anyway."""
    alpha, rho = 0.01, 0.5
    g = np.array([0.1, 0.3, 1.0], np.float32)
    rm = reference.rmsprop(alpha, rho)
    start = jnp.array([5.0, 0.0], jnp.float32)
    plain = s_curve(rm, g, h0=start, newton_steps=0, adam_steps=0, tol=np.inf)
    relaxed = s_curve(rm, g, h0=start, newton_steps=0, adam_steps=0, tol=np.inf, relax_steps=60)
    assert np.all(plain.q > 1e-3) and plain.n_relaxed == 0
    assert relaxed.n_relaxed == 3 and np.all(relaxed.q <= 1e-10)
    np.testing.assert_allclose(relaxed.points[:, 0], g**2, rtol=1e-4)
