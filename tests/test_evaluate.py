import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lorex
from lorex import seeds
from lorex.evaluate import summarize
from lorex.errors import LorexError


def test_shape_and_index_zero_is_initial_loss():
    f = lorex.tasks.make("linreg")
    keys = seeds.keys(0, "test", 5)
    curves = lorex.evaluate_optimizer(optax.sgd(0.5), f, keys, steps=30)
    assert curves.shape == (5, 31)
    from lorex.evaluate import problem_and_params

    p, x0 = problem_and_params(f, keys[2])
    np.testing.assert_allclose(curves[2, 0], f.loss(x0, p), rtol=1e-6)


def test_no_recompile_on_second_call():
    f = lorex.tasks.make("rosenbrock")
    tx = optax.adam(0.1)
    lorex.evaluate_optimizer(tx, f, seeds.keys(0, "test", 4), steps=10)
    with jax.log_compiles():
        import logging

        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("jax").addHandler(handler)
        try:
            lorex.evaluate_optimizer(tx, f, seeds.keys(1, "test", 4), steps=10)
        finally:
            logging.getLogger("jax").removeHandler(handler)
    assert not [r for r in records if "Compiling" in r.getMessage()]


def test_summarize_statistics_and_divergence():
    losses = np.array([[1.0, 0.5, 0.25], [1.0, 0.1, 0.01], [1.0, np.nan, np.nan]])
    s = summarize(losses[:2])
    assert s["diverged"] == 0
    np.testing.assert_allclose(s["final_loss"]["mean"], 0.13)
    np.testing.assert_allclose(s["final_loss"]["se"], np.std([0.25, 0.01], ddof=1) / np.sqrt(2))
    np.testing.assert_allclose(s["mean_log_loss"]["mean"], np.mean([np.log([0.5, 0.25]).mean(),
                                                                   np.log([0.1, 0.01]).mean()]))
    s3 = summarize(losses)
    assert s3["diverged"] == 1 and s3["final_loss"]["mean"] == float("inf")


def test_streams_disjoint():
    named = {n: {tuple(k) for k in np.asarray(seeds.keys(0, n, 256))} for n in seeds.STREAMS}
    names = list(named)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not named[a] & named[b], (a, b)
    assert np.array_equal(seeds.keys(0, "test", 3), seeds.keys(0, "test", 3))
    with pytest.raises(LorexError):
        seeds.keys(0, "nope", 2)


def test_bad_steps():
    with pytest.raises(LorexError, match="steps"):
        lorex.evaluate_optimizer(optax.sgd(0.1), lorex.tasks.make("linreg"), seeds.keys(0, "test", 2), steps=0)


def test_truncation_and_remat_do_not_change_forward():
    from lorex.evaluate import run

    f = lorex.tasks.make("linreg")
    k = jax.random.PRNGKey(3)
    a = run(optax.sgd(0.3, momentum=0.5), f, k, 20)
    b = run(optax.sgd(0.3, momentum=0.5), f, k, 20, remat=True, truncation=5)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert jnp.all(jnp.isfinite(a))


def test_jit_once_matches_jit_at_top_level_and_inside_transformations():
    """``jit_once`` (evaluation programs compiled at LLVM -O1 on CPU) computes what ``jax.jit`` computes, both as
    an outermost call and nested in ``jit``/``vmap``, where compiler options are not allowed."""
    from lorex.evaluate import jit_once

    def f(x, scale):
        return jnp.tanh(x @ x.T * scale).sum(axis=-1)

    x = jax.random.normal(jax.random.PRNGKey(0), (8, 5))
    once = jit_once(f)
    want = np.asarray(jax.jit(f)(x, 0.3))
    np.testing.assert_allclose(np.asarray(once(x, 0.3)), want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda y: once(y, 0.3))(x)), want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.vmap(lambda s: once(x, s))(jnp.array([0.3, 0.3])))[1], want,
                               rtol=1e-6)
