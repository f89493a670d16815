import jax.numpy as jnp
import numpy as np

from lorex.analysis import autonomous, pca, schedule_summary


def test_autonomous_schedule_known_answer():
    # h = (t, g_last): t counts steps, the readout scales the gradient by f(t) = t·exp(−t/τ), peaked at t = τ.
    tau = 5.0
    f = lambda t: t * jnp.exp(-t / tau)  # noqa: E731
    step = lambda h, x: jnp.stack([h[0] + 1.0, x[0]])  # noqa: E731
    readout = lambda h: -f(h[0]) * h[1]  # noqa: E731
    run = autonomous(step, 20, h0=jnp.zeros(2), readout=readout)
    assert run.states.shape == (21, 2)
    k = np.arange(21)
    np.testing.assert_allclose(run.states[:, 0], k)
    np.testing.assert_allclose(run.alpha_eff, (k + 1) * np.exp(-(k + 1) / tau), rtol=1e-6)  # state k → step k + 1
    s = schedule_summary(run.alpha_eff)
    assert s.warmup == 4
    np.testing.assert_allclose(s.peak_over_initial, 5 * np.exp(-1) / np.exp(-0.2), rtol=1e-6)
    np.testing.assert_allclose(s.final_over_peak, 21 * np.exp(-21 / tau) / (5 * np.exp(-1)), rtol=1e-5)


def test_pca_recovers_axes():
    rng = np.random.default_rng(0)
    d1, d2 = np.array([1.0, 2.0, 2.0]) / 3, np.array([2.0, 1.0, -2.0]) / 3
    z = rng.normal(size=(500, 2)) * [3.0, 0.5]
    x = (z @ np.stack([d1, d2]) + [1.0, -1.0, 0.5]).reshape(50, 10, 3)
    p = pca(x, 2)
    assert p.components.shape == (2, 3)
    np.testing.assert_allclose(np.abs(p.components @ d1), [1, 0], atol=1e-2)
    assert p.explained_variance_ratio[0] > 0.95 and np.isclose(p.explained_variance_ratio.sum(), 1.0)
    np.testing.assert_allclose(p.reconstruct(p.project(x)), x, atol=1e-10)
    assert p.project(x).shape == (50, 10, 2)
