import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lorex
from lorex import seeds
from lorex.baselines import OPTIMIZERS, Grid, baseline, default_grid, tune
from lorex.errors import LorexError


class Parabola:
    steps = 100

    def sample(self, key):
        return jax.random.uniform(key, (4,), minval=0.5, maxval=2.0)  # curvatures

    def init(self, key, problem):
        return jax.random.normal(key, (4,))

    def loss(self, params, problem):
        return 0.5 * jnp.sum(problem * params**2)


@pytest.mark.parametrize("name,lr", [("sgd", 0.5), ("momentum", 0.3), ("rmsprop", 0.03), ("adam", 0.05)])
def test_converges_on_parabola(name, lr):
    curves = lorex.evaluate_optimizer(baseline(name, lr), Parabola(), seeds.keys(0, "test", 4))
    assert (curves[:, -1] < 1e-3 * curves[:, 0]).all()


def test_converges_on_rosenbrock():
    f = lorex.tasks.make("rosenbrock", steps=3000)
    curves = lorex.evaluate_optimizer(baseline("momentum", 1e-3, 0.9), f, seeds.keys(0, "test", 4))
    assert (curves[:, -1] < 1e-6).all()


def test_tuned_linreg_inside_grid_and_no_recompile():
    f = lorex.tasks.make("linreg", steps=60)
    t = tune("momentum", f, seeds.keys(0, "tuning", 8))
    lrs = t.grid.learning_rates
    assert lrs[0] < t.learning_rate < lrs[-1]
    assert not t.warnings
    assert len(lrs) >= 4 * np.log10(lrs[-1] / lrs[0])  # at least 4 per decade
    assert t.scores.shape == (len(lrs), len(t.grid.second))
    test_keys = seeds.keys(0, "test", 8)
    lorex.evaluate_optimizer(t.transformation(), f, test_keys)
    n_before = lorex.evaluate._compiled.cache_info().misses
    lorex.evaluate_optimizer(t.transformation(), f, test_keys)
    assert lorex.evaluate._compiled.cache_info().misses == n_before


def test_grid_edge_warns():
    f = lorex.tasks.make("linreg", steps=30)
    with pytest.warns(UserWarning, match="grid edge"):
        t = tune("sgd", f, seeds.keys(0, "tuning", 4), grid=Grid((1e-4, 1e-3, 1e-2), (0.0,)))
    assert t.learning_rate == 1e-2 and t.warnings


def test_unknown_optimizer():
    with pytest.raises(LorexError, match="adam"):
        default_grid("lbfgs", "linreg")
    assert set(OPTIMIZERS) == {"sgd", "momentum", "rmsprop", "adam"}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_halving_selects_the_grids_hyperparameters(name):
    family, keys = Parabola(), seeds.keys(0, "tuning", 16)  # rounds on 1, 4 and 16 seeds
    g = tune(name, family, keys, steps=40, search="grid")
    h = tune(name, family, keys, steps=40)  # the default search
    assert h.search == "halving" and g.search == "grid"
    assert h.hyperparameters == g.hyperparameters and not g.diverged
    assert h.objective == pytest.approx(g.objective, rel=1e-6)  # the selected point ran on every tuning seed
    assert g.runs == g.scores.size * 16 and h.runs < g.runs / 3
    survivors = ~np.isnan(h.scores)  # points that ran on every seed; the others were dropped on fewer seeds
    assert survivors.sum() < h.scores.size or h.scores.size <= 3
    np.testing.assert_allclose(h.scores[survivors], g.scores[survivors], rtol=1e-6)


def test_halving_where_every_point_diverges_reports_as_the_grid():
    grid, keys = Grid((10.0, 100.0), (0.0,)), seeds.keys(0, "tuning", 8)  # |1 - lr·c| > 1 on every curvature c
    with pytest.warns(UserWarning, match="DIVERGED"):
        g = tune("sgd", Parabola(), keys, steps=20, grid=grid, search="grid")
    with pytest.warns(UserWarning, match="DIVERGED"):
        h = tune("sgd", Parabola(), keys, steps=20, grid=grid)
    assert h.diverged and g.diverged and h.learning_rate == g.learning_rate and h.warnings == g.warnings
    assert h.runs > g.runs  # the halving rounds, then the full grid for the least-diverged point


def test_unknown_search():
    with pytest.raises(LorexError, match="halving"):
        tune("sgd", Parabola(), seeds.keys(0, "tuning", 2), steps=5, search="random")
