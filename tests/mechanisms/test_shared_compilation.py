"""A population (same config, different weights) shares compiled analysis code; the cache never mixes programs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lorex import lopt, mechanisms as M, seeds, tasks
from lorex.analysis._common import map_jit
from lorex.analysis.reference import heavy_ball
from lorex.lopt import RecurrentMap

CONFIG = lopt.LOptConfig(hidden=6, output_scale=0.1)
FAMILY = tasks.make("linreg", n=4, m=6)
STEPS = 30
SIZES = dict(fp_seeds=8, scurve_points=4, relax_steps=50)


def member(seed):
    params = lopt.init_params(jax.random.PRNGKey(0), CONFIG)
    params["readout"]["w"] = jax.random.normal(jax.random.PRNGKey(1), (CONFIG.hidden,))
    params["h0"] = 0.3 * jax.random.normal(jax.random.PRNGKey(2), (CONFIG.hidden,))
    leaves, tree = jax.tree_util.tree_flatten(params)
    noise = [1e-6 * seed * jax.random.normal(jax.random.PRNGKey(10 + i), x.shape) for i, x in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(tree, [x + e for x, e in zip(leaves, noise)])


def record_and_analyze(rmap):
    ev = M.record(rmap, FAMILY, seeds.keys(0, "analysis", 3), STEPS)
    return ev, M.analyze(rmap, ev, task="linreg", **SIZES)


class Compiles:
    """Counts XLA backend compiles while active."""

    def __init__(self):
        self.n, self.active = 0, False
        jax.monitoring.register_event_duration_secs_listener(self.listen)

    def listen(self, event, duration, **kw):
        if self.active and "backend_compile" in event:
            self.n += 1


def values(an):
    return [(f.verdict, np.nan if f.value is None else f.value) for f in an.findings] + [(None, v) for v in (an.schedule.autonomous_alpha,
                                                                                an.clipping.updates)]


def test_second_member_compiles_nothing_and_matches_the_closed_over_map():
    count = Compiles()
    first = lopt.recurrent_map(member(0), CONFIG)
    _, an0 = record_and_analyze(first)
    second = lopt.recurrent_map(member(1), CONFIG)
    assert jax.tree_util.tree_structure(second) == jax.tree_util.tree_structure(first)
    count.active = True
    ev, an = record_and_analyze(second)
    count.active = False
    assert (an.fd_step is None) == (an0.fd_step is None)  # same α_eff method (the step itself is an argument)
    assert count.n == 0
    # the same weights closed over (the fallback path: weights compiled in as constants, as before)
    closed = RecurrentMap(lambda h, x: second.step(h, x), lambda h: second.readout(h), second.h0)
    ev_c, an_c = record_and_analyze(closed)
    np.testing.assert_allclose(ev.states, ev_c.states, rtol=1e-5, atol=1e-6)
    for (v1, a), (v2, b) in zip(values(an), values(an_c)):
        assert v1 == v2
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_cache_key_holds_every_closed_over_value():
    rmap = lopt.recurrent_map(member(0), CONFIG)
    x = jnp.ones((CONFIG.hidden,))

    def scaled(k):
        return map_jit(lambda rmap, h: rmap.step(h, jnp.ones((1,))) * k, rmap)

    assert float(scaled(2.0)(x)[0]) == pytest.approx(2 * float(scaled(1.0)(x)[0]))
    assert float(scaled(2)(x)[0]) == pytest.approx(float(scaled(2.0)(x)[0]))  # int and float: two entries, same value
    # unhashable values (arrays) by identity
    arrays = [np.array(1.0), np.array(3.0)]
    outs = [float(map_jit(lambda rmap, h: rmap.step(h, jnp.ones((1,))) * a, rmap)(x)[0]) for a in arrays]
    assert outs[1] == pytest.approx(3 * outs[0])
    # steps and families of the same shapes
    keys = seeds.keys(0, "analysis", 2)
    short, long_ = (M.record(rmap, FAMILY, keys, s) for s in (3, 5))
    np.testing.assert_array_equal(short.states, long_.states[:, :3])
    other = tasks.make("linreg", n=4, m=6, lambda_max=10.0)
    assert not np.allclose(M.record(rmap, other, keys, 3).grads, short.grads)


def test_closure_maps_are_compiled_in_and_reused_only_for_the_same_objects():
    a, b = heavy_ball(0.1, 0.9), heavy_ball(0.1, 0.5)

    def run(rmap, h):
        return rmap.step(h, jnp.ones((1,)))

    assert map_jit(run, a) is map_jit(run, a)
    assert map_jit(run, a) is not map_jit(run, b)
    h = jnp.ones((1,))
    assert float(map_jit(run, a)(h)[0]) == pytest.approx(1.9)
    assert float(map_jit(run, b)(h)[0]) == pytest.approx(1.5)
