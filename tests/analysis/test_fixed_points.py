import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lorex
from lorex import lopt
from lorex.analysis import find_fixed_points, q_value, sample_seeds
from lorex.errors import LorexError


def _linear(H=6, D=2, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(H, H))
    A = 0.9 * A / np.max(np.abs(np.linalg.eigvals(A)))
    B = rng.normal(size=(H, D))
    return A.astype(np.float32), B.astype(np.float32)


def test_public_signature_and_lazy_import():
    params = list(inspect.signature(lorex.analysis.find_fixed_points).parameters)
    assert params[:3] == ["step_fn", "initial_states", "inputs"]


def test_linear_map_fixed_point_and_spectrum():
    A, B = _linear()
    x_star = np.array([0.7, -1.3], np.float32)
    step = lambda h, x: jnp.asarray(A) @ h + jnp.asarray(B) @ x  # noqa: E731
    seeds = jax.random.normal(jax.random.PRNGKey(0), (8, 6))
    fps = find_fixed_points(step, seeds, x_star)
    assert fps.points.shape == (1, 6) and fps.n_seeds == 8 and fps.n_converged == 8
    expected = np.linalg.solve(np.eye(6) - A.astype(np.float64), B.astype(np.float64) @ x_star)
    np.testing.assert_allclose(fps.points[0], expected, rtol=1e-5, atol=1e-5)
    assert fps.q[0] <= 1e-10
    np.testing.assert_allclose(fps.jac_state[0], A, atol=1e-6)
    np.testing.assert_allclose(fps.jac_input[0], B, atol=1e-6)
    np.testing.assert_allclose(np.sort_complex(fps.eigenvalues[0]), np.sort_complex(np.linalg.eigvals(A)), atol=1e-5)
    assert np.all(np.diff(np.abs(fps.eigenvalues[0])) <= 1e-12)  # sorted by modulus, descending
    R, L = fps.right_eigenvectors[0], fps.left_eigenvectors[0]
    np.testing.assert_allclose(L.T @ R, np.eye(6), atol=1e-8)  # l_iᵀ r_j = δ_ij
    np.testing.assert_allclose((R * fps.eigenvalues[0]) @ L.T, A, atol=1e-5)
    assert fps.stable[0]


def test_per_seed_inputs_give_distinct_points():
    A, B = _linear()
    step = lambda h, x: jnp.asarray(A) @ h + jnp.asarray(B) @ x  # noqa: E731
    xs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    fps = find_fixed_points(step, np.zeros((3, 6), np.float32), xs)
    assert len(fps.points) == 2 and fps.n_converged == 3 and fps.inputs.shape == (2, 2)
    for p, x in zip(fps.points, fps.inputs):
        np.testing.assert_allclose(p, np.linalg.solve(np.eye(6) - A, B @ x), atol=1e-5)


def test_bistable_map_classified_and_merged():
    h_star = 1.0
    for _ in range(200):
        h_star = np.tanh(2.0 * h_star)
    step = lambda h, x: jnp.tanh(2.0 * h)  # noqa: E731
    fps = find_fixed_points(step, np.linspace(-2, 2, 21, dtype=np.float32)[:, None])
    assert fps.n_converged == 21 and len(fps.points) == 3  # duplicates merged
    order = np.argsort(fps.points[:, 0])
    np.testing.assert_allclose(fps.points[order, 0], [-h_star, 0.0, h_star], atol=1e-6)
    assert list(fps.stable[order]) == [True, False, True]
    np.testing.assert_allclose(fps.eigenvalues[order, 0].real, [2 * (1 - h_star**2), 2.0, 2 * (1 - h_star**2)],
                               atol=1e-5)
    assert fps.jac_input.shape == (3, 1, 1) and np.all(fps.jac_input == 0)


def _planted_gru(H=12, seed=0):
    """A lorex GRU cell (scaled-up recurrent weights) with a fixed point planted at h_p for x = 0."""
    config = lopt.LOptConfig(hidden=H)
    params = lopt.init_params(jax.random.PRNGKey(seed), config)
    cell = dict(params["cell"])
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed + 1))
    cell["w_h"] = 2.0 * cell["w_h"]
    cell["b_h"] = 0.5 * jax.random.normal(k1, (3 * H,))
    h_p = jax.random.uniform(k2, (H,), minval=-0.8, maxval=0.8)
    gh = h_p @ cell["w_h"] + cell["b_h"]
    r = jax.nn.sigmoid(cell["b_x"][H:2 * H] + gh[H:2 * H])
    cell["b_x"] = cell["b_x"].at[2 * H:].set(jnp.arctanh(h_p) - r * gh[2 * H:])
    return (lambda h, x: lopt.gru_cell(cell, h, x)), cell, np.asarray(h_p)


def test_gru_planted_point_float32_and_x64():
    step, cell, h_p = _planted_gru()
    seeds = h_p + 0.05 * np.asarray(jax.random.normal(jax.random.PRNGKey(3), (16, 12)))
    fps = find_fixed_points(step, seeds.astype(np.float32))
    assert fps.n_converged >= 12 and np.all(fps.q <= 1e-10)
    d = np.linalg.norm(fps.points - h_p, axis=1)
    assert d.min() < 1e-5
    with jax.enable_x64(True):
        cell64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), cell)
        step64 = lambda h, x: lopt.gru_cell(cell64, h, x)  # noqa: E731
        fps64 = find_fixed_points(step64, seeds.astype(np.float64))
        assert fps64.points.dtype == np.float64
        assert np.all(fps64.q <= 1e-24)
        assert np.linalg.norm(fps64.points - h_p, axis=1).min() < 1e-6  # h_p itself is only float32-exact
        assert float(q_value(step64, fps64.points).max()) <= 1e-24


def test_no_fixed_point_gives_empty_record():
    step = lambda h, x: h + 1.0  # noqa: E731
    fps = find_fixed_points(step, np.zeros((4, 3), np.float32), adam_steps=5, newton_steps=2)
    assert fps.points.shape == (0, 3) and fps.eigenvalues.shape == (0, 3) and fps.n_converged == 0
    assert fps.seed_q.shape == (4,)


def test_inputs_shape_checked_and_input_dim_option():
    step = lambda h, x: 0.5 * h + x[:1]  # noqa: E731
    fps = find_fixed_points(step, np.ones((2, 1), np.float32), input_dim=3)
    assert fps.inputs.shape == (1, 3) and fps.jac_input.shape == (1, 1, 3)
    with pytest.raises(LorexError):
        find_fixed_points(step, np.ones((2, 1), np.float32), np.zeros((3, 3), np.float32))


def test_sample_seeds():
    states = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    s = sample_seeds(states, 7, 0.0, jax.random.PRNGKey(0))
    assert s.shape == (7, 2)
    rows = {tuple(r) for r in states.reshape(-1, 2).tolist()}
    assert all(tuple(r) in rows for r in np.asarray(s).tolist())
    s2 = sample_seeds(states, 7, 0.1, jax.random.PRNGKey(0))
    assert 0 < float(jnp.abs(s2 - s).max()) < 1.0


def test_singular_newton_system_is_guarded():
    # F(h) = h − G(h), G = (h0² − 1, h1): I − J = diag(2h0, 1) is singular at h0 = 0 (a critical point of q).
    step = lambda h, x: h - jnp.stack([h[0] ** 2 - 1.0, h[1]])  # noqa: E731
    fps = find_fixed_points(step, np.array([[0.0, 1.0], [0.5, 1.0]], np.float32), adam_steps=0)
    assert np.all(np.isfinite(fps.seed_q)) and fps.seed_q[0] > 0.1 and fps.n_converged == 1
    np.testing.assert_allclose(fps.points, [[1.0, 0.0]], atol=1e-6)
