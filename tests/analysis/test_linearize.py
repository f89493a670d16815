import jax.numpy as jnp
import numpy as np

from lorex import tasks
from lorex.analysis import momentum_modes, polyak_optimum, reference, timescales


def test_heavy_ball_modes_exact():
    alpha, beta = 0.05, 0.9
    modes = momentum_modes(reference.heavy_ball(alpha, beta), jnp.zeros(1))
    np.testing.assert_allclose(modes.betas, [beta], rtol=1e-7)
    np.testing.assert_allclose(modes.alphas, [alpha], rtol=1e-7)
    np.testing.assert_allclose(modes.timescales, [-1 / np.log(beta)], rtol=1e-6)
    np.testing.assert_allclose(modes.alpha_eff, alpha, rtol=1e-7)


def test_linear_optimizer_impulse_response_is_sum_of_momentum_terms():
    # h' = A h + b g, u = wᵀh' + c: impulse response u_k = wᵀA^k b must equal −Σ α_i β_i^k.
    rng = np.random.default_rng(1)
    H = 5
    A = rng.normal(size=(H, H))
    A = 0.95 * A / np.max(np.abs(np.linalg.eigvals(A)))
    b, w = rng.normal(size=H), rng.normal(size=H)
    Aj, bj, wj = (jnp.asarray(a, jnp.float32) for a in (A, b, w))
    step = lambda h, x: Aj @ h + bj * x[0]  # noqa: E731
    readout = lambda h: wj @ h + 0.3  # noqa: E731
    modes = momentum_modes(step, jnp.zeros(H), readout=readout)
    assert np.all(np.diff(modes.timescales) <= 1e-9)  # slowest first
    for k in range(12):
        expected = w @ np.linalg.matrix_power(A, k) @ b
        np.testing.assert_allclose(-np.sum(modes.alphas * modes.betas**k).real, expected, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(np.sum(modes.alphas).real, modes.alpha_eff, rtol=1e-5)
    np.testing.assert_allclose(modes.readout_grad, w, rtol=1e-6)


def test_batched_states():
    modes = momentum_modes(reference.rmsprop(0.1, 0.9), jnp.array([[1.0, 0.0], [4.0, 0.0]]))
    assert modes.betas.shape == (2, 2) and modes.alpha_eff.shape == (2,)
    # RMSProp at state (s, ·), g = 0: the new state is (ρs, 0), so dU/dg = −α/(√(ρs) + ε)
    np.testing.assert_allclose(modes.alpha_eff, [0.1 / (np.sqrt(0.9) * 1 + 1e-8), 0.1 / (np.sqrt(0.9) * 2 + 1e-8)],
                               rtol=1e-6)


def test_polyak_optimum_matches_linreg():
    fam = tasks.make("linreg", lambda_min=1e-2, lambda_max=4.0)
    np.testing.assert_allclose(polyak_optimum(fam.lambda_min, fam.lambda_max), fam.polyak(), rtol=1e-12)
    a, b = polyak_optimum(1.0, 1.0)
    assert a == 1.0 and b == 0.0


def test_timescales_edge_cases():
    t = timescales(np.array([1.0, 0.0, np.exp(-0.5), 2.0]))
    assert np.isinf(t[0]) and t[1] == 0 and np.isclose(t[2], 2.0) and t[3] < 0
