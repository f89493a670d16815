import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lorex
from lorex.errors import LorexError
from lorex.evaluate import problem_and_params

TASKS = ["linreg", "rosenbrock", "two_moons", "digits"]
SMALL = {"two_moons": {"hidden": (8,), "n_points": 32}, "digits": {"channels": (2,), "batch": 4}}


def family(name):
    return lorex.tasks.make(name, **SMALL.get(name, {}))


@pytest.mark.parametrize("name", TASKS)
def test_finite_loss_and_gradient(name, key):
    f = family(name)
    problem, params = problem_and_params(f, key)
    loss, grads = jax.value_and_grad(f.loss)(params, problem)
    assert loss.shape == () and jnp.isfinite(loss)
    assert all(jnp.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))
    assert f.steps == 200


@pytest.mark.parametrize("name", TASKS)
def test_distinct_problems_and_vmap(name):
    f = family(name)
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    problems, params = jax.vmap(lambda k: problem_and_params(f, k))(keys)
    losses = jax.vmap(f.loss)(params, problems)
    assert losses.shape == (4,)
    assert len(set(np.round(np.asarray(losses), 6).tolist())) == 4  # distinct keys -> distinct problems


def test_linreg_known_optimum(key):
    f = lorex.tasks.make("linreg", n=6, m=12)
    p = f.sample(key)
    assert float(f.loss(p.x_star, p)) == 0.0
    hess = p.A.T @ p.A / f.m
    eig = np.linalg.eigvalsh(np.asarray(hess, np.float64))
    assert eig.min() >= f.lambda_min * (1 - 1e-3) and eig.max() <= f.lambda_max * (1 + 1e-3)
    np.testing.assert_allclose(np.sort(eig), np.sort(np.asarray(p.eigvals)), rtol=1e-3, atol=1e-6)
    # the excess loss equals f(x) - f(x*) of the least-squares objective (checked in float64 arithmetic)
    x = np.asarray(f.init(key, p), np.float64)
    A, b = np.asarray(p.A, np.float64), np.asarray(p.b, np.float64)
    ls = lambda v: 0.5 * np.sum((A @ v - b) ** 2) / f.m  # noqa: E731
    np.testing.assert_allclose(float(f.loss(jnp.asarray(x, jnp.float32), p)), ls(x) - ls(np.asarray(p.x_star)),
                               rtol=1e-4)
    pinned = lorex.tasks.make("linreg", pin_extremes=True).sample(key)
    assert np.isclose(pinned.eigvals.min(), 1e-3) and np.isclose(pinned.eigvals.max(), 1.0)


def test_rosenbrock_known_optimum(key):
    f = lorex.tasks.make("rosenbrock", a=1.5)
    assert float(f.loss(jnp.array([1.5, 2.25]), f.sample(key))) == 0.0
    start = f.sample(key)
    assert -2 <= start[0] <= 2 and -1 <= start[1] <= 3


def test_two_moons_falls_under_adam():
    f = family("two_moons")
    curves = lorex.evaluate_optimizer(optax.adam(0.05), f, jax.random.split(jax.random.PRNGKey(2), 3), steps=100)
    assert (curves[:, -1] < 0.5 * curves[:, 0]).all()


def test_make_errors():
    with pytest.raises(LorexError, match="linreg.*rosenbrock.*two_moons"):
        lorex.tasks.make("nope")
    with pytest.raises(LorexError, match=r"linreg\.bogus.*lambda_min"):
        lorex.tasks.make("linreg", bogus=1)
    with pytest.raises(LorexError, match="linreg.lambda_min"):
        lorex.tasks.make("linreg", lambda_min=2.0)
    with pytest.raises(LorexError, match="module:attribute"):
        lorex.tasks.make("a:b:c")


def test_user_task_by_module_attribute(tmp_path, monkeypatch):
    (tmp_path / "my_tasks.py").write_text(
        "import jax, jax.numpy as jnp\n"
        "class Quad:\n"
        "    steps = 20\n"
        "    def sample(self, key): return jax.random.normal(key, (3,))\n"
        "    def init(self, key, problem): return jnp.zeros(3)\n"
        "    def loss(self, params, problem): return jnp.sum((params - problem) ** 2)\n"
        "quad = Quad()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    f = lorex.tasks.make("my_tasks:quad")
    curves = lorex.evaluate_optimizer(optax.sgd(0.1), f, jax.random.split(jax.random.PRNGKey(0), 2))
    assert curves.shape == (2, 21) and (curves[:, -1] < 1e-3 * curves[:, 0]).all()
    with pytest.raises(LorexError, match="no attribute"):
        lorex.tasks.make("my_tasks:missing")
