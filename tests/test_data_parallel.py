"""Data-parallel meta-training: 1, 2 and 4 host devices give the same meta-gradient and meta-step."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from jax.flatten_util import ravel_pytree
    from lorex import meta, lopt
    assert len(jax.devices()) == 4, jax.devices()
    cfg = meta.MetaConfig(task="linreg", hidden=8, batch=8, unroll=12, steps=5, output_scale=0.3)
    family = cfg.family()
    p0 = lopt.init_params(jax.random.PRNGKey(1), cfg.lopt_config())
    p0["readout"]["w"] = 0.3 * jax.random.normal(jax.random.PRNGKey(2), (8,))
    keys = meta.step_keys(cfg, 0)
    out = {}
    for n in (1, 2, 4):
        mesh = Mesh(np.array(jax.devices()[:n]), ("batch",))
        sk = jax.device_put(keys, NamedSharding(mesh, PartitionSpec("batch")))
        loss, g = jax.jit(jax.value_and_grad(meta.batch_objective), static_argnums=(2, 3, 4))(
            p0, sk, cfg, family, cfg.horizon())
        step = meta.make_meta_step(cfg, family, mesh)
        params, opt_state = jax.tree_util.tree_map(jnp.copy, p0), meta.meta_optimizer(cfg).init(p0)
        for i in range(3):
            params, opt_state, l = step(params, opt_state, meta.step_keys(cfg, i))
        assert len(params["readout"]["w"].sharding.device_set) == n
        out[n] = (float(loss), np.asarray(ravel_pytree(g)[0]), np.asarray(ravel_pytree(params)[0]))
    for n in (2, 4):
        np.testing.assert_allclose(out[n][0], out[1][0], rtol=1e-5)
        np.testing.assert_allclose(out[n][1], out[1][1], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out[n][2], out[1][2], rtol=1e-4, atol=1e-6)
    assert np.abs(out[1][1]).max() > 0
    print("OK")
""")


def test_meta_gradient_and_step_equal_on_2_and_4_devices():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
