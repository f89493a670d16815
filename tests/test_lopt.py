import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from lorex import lopt
from lorex.errors import LorexError


def trained_like(key, cfg):
    """Random weights and a non-zero readout, as a trained optimizer would have."""
    p = lopt.init_params(key, cfg)
    p["readout"]["w"] = jax.random.normal(jax.random.fold_in(key, 1), (cfg.hidden,))
    p["readout"]["b"] = jnp.float32(0.1)
    p["h0"] = 0.1 * jax.random.normal(jax.random.fold_in(key, 2), (cfg.hidden,))
    return p


PARAMS = {"a": jnp.ones((3, 2)), "nested": {"b": jnp.arange(4.0), "c": [jnp.zeros(()), jnp.ones((1,))]}}


def test_zero_readout_gives_zero_updates(key):
    cfg = lopt.LOptConfig(hidden=8)
    tx = lopt.learned_optimizer(lopt.init_params(key, cfg), cfg)
    grads = jax.tree_util.tree_map(lambda x: x + 1.0, PARAMS)
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree_util.tree_leaves(updates))
    assert jax.tree_util.tree_structure(updates) == jax.tree_util.tree_structure(PARAMS)


@pytest.mark.parametrize("features", ["raw", "log_sign"])
def test_state_structure_kept_and_chain_and_nested(key, features):
    cfg = lopt.LOptConfig(hidden=8, features=features)
    tx = optax.chain(optax.clip(1.0), lopt.learned_optimizer(trained_like(key, cfg), cfg))
    state = tx.init(PARAMS)
    grads = jax.tree_util.tree_map(lambda x: jnp.cos(x), PARAMS)
    updates, new_state = tx.update(grads, state, PARAMS)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(new_state)):
        assert a.shape == b.shape and a.dtype == b.dtype
    for u, p in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(PARAMS)):
        assert u.shape == p.shape and jnp.isfinite(u).all() and float(jnp.abs(u).max()) > 0


def test_second_update_does_not_recompile(key):
    cfg = lopt.LOptConfig(hidden=8)
    tx = lopt.learned_optimizer(trained_like(key, cfg), cfg)
    update = jax.jit(tx.update)
    state = tx.init(PARAMS)
    _, state = update(PARAMS, state, PARAMS)
    n = update._cache_size()
    _, state = update(PARAMS, state, PARAMS)
    assert update._cache_size() == n == 1


def test_one_source_of_truth(key):
    """The transformation, lopt.step and the analysis map compute the same update."""
    cfg = lopt.LOptConfig(hidden=6, input_scale=2.0, output_scale=0.3)
    p = trained_like(key, cfg)
    g = jnp.array([0.5, -1.0, 2.0])
    updates, state = lopt.learned_optimizer(p, cfg).update(g, lopt.learned_optimizer(p, cfg).init(g))
    rmap = lopt.recurrent_map(p, cfg)
    for i in range(3):
        h = rmap.step(rmap.h0, g[i : i + 1])
        np.testing.assert_allclose(rmap.readout(h), updates[i], rtol=1e-6)
        np.testing.assert_allclose(h, state.hidden[i], rtol=1e-6)


def raveled_reference(p, cfg, grads_seq, params):
    """The transformation as it was written before per-leaf states: every coordinate in one raveled (N, H) state."""
    flat, unravel = ravel_pytree(params)
    h = jnp.broadcast_to(p["h0"], (flat.size, cfg.hidden))
    out = []
    for grads in grads_seq:
        g, _ = ravel_pytree(grads)
        h, u = lopt.step(p, cfg, h, g)
        out.append(unravel(u))
    return out, h


@pytest.mark.parametrize("features", ["raw", "log_sign"])
def test_per_leaf_state_matches_the_raveled_computation(key, features):
    cfg = lopt.LOptConfig(hidden=8, features=features, input_scale=2.0)
    p = trained_like(key, cfg)
    grads_seq = [jax.tree_util.tree_map(lambda x, t=t: jnp.sin(x + 0.3 * t) * (t + 1), PARAMS) for t in range(4)]
    want, h_want = raveled_reference(p, cfg, grads_seq, PARAMS)
    tx = lopt.learned_optimizer(p, cfg)
    state = tx.init(PARAMS)
    for leaf, s in zip(jax.tree_util.tree_leaves(PARAMS), jax.tree_util.tree_leaves(state.hidden)):
        assert s.shape == (*leaf.shape, cfg.hidden)
    for grads, w in zip(grads_seq, want):
        u, state = tx.update(grads, state, PARAMS)
        for a, b in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(w)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    h = jnp.concatenate([s.reshape(-1, cfg.hidden) for s in jax.tree_util.tree_leaves(state.hidden)])
    np.testing.assert_allclose(h, h_want, rtol=1e-6, atol=1e-7)


def test_updates_keep_each_leaf_dtype(key):
    cfg = lopt.LOptConfig(hidden=8)
    p = trained_like(key, cfg)
    params = {"w": jnp.linspace(-1, 1, 6, dtype=jnp.bfloat16), "b": jnp.ones((2,), jnp.float32)}
    tx = lopt.learned_optimizer(p, cfg)
    state = tx.init(params)
    u, state = tx.update(params, state, params)
    assert u["w"].dtype == jnp.bfloat16 and u["b"].dtype == jnp.float32
    assert all(s.dtype == jnp.float32 for s in jax.tree_util.tree_leaves(state.hidden))
    full, _ = tx.update(jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), params), tx.init(params))
    np.testing.assert_allclose(u["w"].astype(jnp.float32), full["w"], rtol=1e-2)  # float32 inside, rounded once


SHARDED = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from lorex import lopt
    assert len(jax.devices()) == 2, jax.devices()
    cfg = lopt.LOptConfig(hidden=8)
    p = lopt.init_params(jax.random.PRNGKey(0), cfg)
    p["readout"]["w"] = jax.random.normal(jax.random.PRNGKey(1), (8,))
    tx = lopt.learned_optimizer(p, cfg)
    params = {"w": jnp.linspace(-2.0, 2.0, 12).reshape(4, 3), "b": jnp.arange(3.0)}
    mesh = Mesh(np.array(jax.devices()), ("x",))
    sharded = dict(params, w=jax.device_put(params["w"], NamedSharding(mesh, P("x"))))
    update = jax.jit(tx.update)
    want, s_want = params, tx.init(params)
    got, s_got = sharded, jax.jit(tx.init)(sharded)
    for _ in range(3):
        want, s_want = update(want, s_want, params)
        got, s_got = update(got, s_got, sharded)
    assert len(got["w"].sharding.device_set) == 2 and got["w"].dtype == jnp.float32
    for a, b in zip(jax.tree_util.tree_leaves((got, s_got)), jax.tree_util.tree_leaves((want, s_want))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    print("OK")
""")


def test_update_of_a_parameter_sharded_over_2_devices_equals_the_unsharded_one():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_gru_cell_equations(key):
    """The fused cell matches the GRU equations written out gate by gate."""
    cfg = lopt.LOptConfig(hidden=4)
    c = trained_like(key, cfg)["cell"]
    c = {k: v + 0.1 for k, v in c.items()}
    h, x = jnp.linspace(-1, 1, 4), jnp.array([0.7])
    H = 4
    wz, wr, wn = c["w_x"][:, :H], c["w_x"][:, H:2 * H], c["w_x"][:, 2 * H:]
    uz, ur, un = c["w_h"][:, :H], c["w_h"][:, H:2 * H], c["w_h"][:, 2 * H:]
    bx, bh = c["b_x"], c["b_h"]
    z = jax.nn.sigmoid(x @ wz + bx[:H] + h @ uz + bh[:H])
    r = jax.nn.sigmoid(x @ wr + bx[H:2 * H] + h @ ur + bh[H:2 * H])
    n = jnp.tanh(x @ wn + bx[2 * H:] + r * (h @ un + bh[2 * H:]))
    np.testing.assert_allclose(lopt.gru_cell(c, h, x), (1 - z) * n + z * h, rtol=1e-6)


def test_save_load_round_trip(tmp_path, key):
    cfg = lopt.LOptConfig(hidden=5, features="log_sign", input_scale=3.0)
    p = trained_like(key, cfg)
    lopt.save_optimizer(tmp_path / "opt", p, cfg, {"note": "test"})
    assert not list((tmp_path / "opt").glob("*.tmp"))
    tx_a, tx_b = lopt.learned_optimizer(p, cfg), lopt.load_optimizer(tmp_path / "opt")
    g = {"w": jnp.linspace(-3, 3, 7)}
    ua, _ = tx_a.update(g, tx_a.init(g))
    ub, _ = tx_b.update(g, tx_b.init(g))
    np.testing.assert_array_equal(ua["w"], ub["w"])
    _, cfg2, meta = lopt.load_params(tmp_path / "opt")
    assert cfg2 == cfg and meta["note"] == "test" and "jax" in meta["versions"]


def test_load_errors(tmp_path, key):
    with pytest.raises(LorexError, match="optimizer"):
        lopt.load_optimizer(tmp_path / "missing")
    cfg = lopt.LOptConfig(hidden=5)
    lopt.save_optimizer(tmp_path / "opt", trained_like(key, cfg), cfg)
    (tmp_path / "opt" / "params.npz").write_bytes(b"not a zip file")
    with pytest.raises(LorexError, match="corrupt"):
        lopt.load_optimizer(tmp_path / "opt")


def test_config_validation():
    with pytest.raises(LorexError, match="features.*raw, log_sign"):
        lopt.LOptConfig(features="sqrt")
    with pytest.raises(LorexError, match="hidden"):
        lopt.LOptConfig(hidden=0)
    with pytest.raises(LorexError, match="output_scale"):
        lopt.LOptConfig(output_scale=-1.0)
