import jax
import numpy as np
import optax
import pytest

from lorex import tasks
from lorex.evaluate import run
from lorex.analysis import record_map_trajectory, reference


@pytest.mark.parametrize("name", ["heavy_ball", "rmsprop", "adam"])
def test_reference_maps_match_optax(name):
    fam = tasks.make("linreg", n=4, m=6)
    rmap, tx = {
        "heavy_ball": (reference.heavy_ball(0.1, 0.9), optax.sgd(0.1, momentum=0.9)),
        "rmsprop": (reference.rmsprop(0.01, 0.9, 1e-8, eps_in_sqrt=True), optax.rmsprop(0.01, 0.9, 1e-8)),
        "adam": (reference.adam(0.01, 0.9, 0.999, 1e-8), optax.adam(0.01, 0.9, 0.999, 1e-8)),
    }[name]
    key = jax.random.PRNGKey(3)
    traj = record_map_trajectory(rmap, fam, key, 15)
    assert traj.states.shape == (15, 4, rmap.h0.shape[0]) and traj.grads.shape == (15, 4)
    assert traj.losses.shape == (16,) and traj.params.shape == (16, 4)
    np.testing.assert_allclose(traj.losses, run(tx, fam, key, 15), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(traj.params[1:] - traj.params[:-1], traj.updates, atol=1e-6)
