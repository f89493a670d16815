"""Several processes for real: two JAX processes on this machine (CPU, one device each, gloo collectives, coordinator
on 127.0.0.1) compute the same meta-gradient and the same three meta-steps as one process alone."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import sys
    import jax
    role, out = sys.argv[1], sys.argv[2]
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", 1)
    if role != "single":
        port = int(sys.argv[3])
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=int(role),
                                   initialization_timeout=60)
    import jax.numpy as jnp, numpy as np
    from jax.flatten_util import ravel_pytree
    from jax.sharding import NamedSharding, PartitionSpec
    from lorex import lopt, meta
    n = 1 if role == "single" else 2
    assert jax.process_count() == n and len(jax.devices()) == n and len(jax.local_devices()) == 1, jax.devices()
    cfg = meta.MetaConfig(task="linreg", hidden=8, batch=8, unroll=12, steps=5, output_scale=0.3)
    family = cfg.family()
    p0 = lopt.init_params(jax.random.PRNGKey(1), cfg.lopt_config())
    p0["readout"]["w"] = 0.3 * jax.random.normal(jax.random.PRNGKey(2), (8,))
    mesh = meta.batch_mesh()
    replicated = NamedSharding(mesh, PartitionSpec())
    keys = meta.shard_batch(meta.step_keys(cfg, 0), NamedSharding(mesh, PartitionSpec("batch")))
    loss, g = jax.jit(jax.value_and_grad(meta.batch_objective), static_argnums=(2, 3, 4))(
        jax.device_put(p0, replicated), keys, cfg, family, cfg.horizon())
    flat = lambda t: np.asarray(ravel_pytree(jax.tree_util.tree_map(np.asarray, t))[0])
    start = flat(p0)  # before the steps: a step donates its input buffers
    step = meta.make_meta_step(cfg, family)
    params, opt_state = p0, meta.meta_optimizer(cfg).init(p0)
    losses = []
    for i in range(3):
        params, opt_state, l = step(params, opt_state, meta.step_keys(cfg, i))
        losses.append(float(l))  # a replicated global array: every process reads its own copy
    assert len(params["readout"]["w"].sharding.device_set) == n
    np.savez(out, p0=start, loss=float(loss), grad=flat(g), params=flat(params), losses=np.array(losses),
             compilations=step.compilations())
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["JAX_PLATFORMS"] = "cpu"
    port = _free_port()
    run = lambda role, *a: subprocess.Popen(  # noqa: E731
        [sys.executable, "-c", SCRIPT, role, str(tmp_path / f"{role}.npz"), *a], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    procs = [run("0", str(port)), run("1", str(port))]
    single = run("single")
    try:
        outs = [p.communicate(timeout=300)[0] for p in [*procs, single]]
    finally:
        for p in [*procs, single]:
            p.kill()
    for p, o in zip([*procs, single], outs):
        assert p.returncode == 0, o[-3000:]
    r0, r1, one = (np.load(tmp_path / f"{r}.npz") for r in ("0", "1", "single"))
    for k in ("loss", "grad", "params", "losses"):
        np.testing.assert_array_equal(r0[k], r1[k])  # the all-reduced result is the same on both processes
        # against one process: the same sums in another order (float32 all-reduce of two partial means)
        np.testing.assert_allclose(r0[k], one[k], rtol=1e-5, atol=1e-6)
    assert np.abs(one["grad"]).max() > 0 and np.abs(one["params"] - one["p0"]).max() > 1e-4  # the steps moved
    assert int(r0["compilations"]) == int(one["compilations"]) == 1


@pytest.mark.slow  # ~1 min on 2 busy cores: three `lorex train` processes, each compiling its meta-step
def test_cli_train_on_two_processes_equals_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.update(JAX_PLATFORMS="cpu", LOREX_COMPILATION_CACHE="off")
    train = [sys.executable, "-m", "lorex.cli", "train", "--task", "linreg", "--hidden", "8", "--batch", "8",
             "--unroll", "12", "--steps", "3", "--val-every", "3", "--val-batch", "8"]
    port = str(_free_port())
    procs = [subprocess.Popen(train + ["--out", str(tmp_path / "two"), "--distributed", "--coordinator",
                                       f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    procs.append(subprocess.Popen(train + ["--out", str(tmp_path / "one")], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
    try:
        outs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-3000:]
    two, one = np.load(tmp_path / "two" / "params.npz"), np.load(tmp_path / "one" / "params.npz")
    assert sorted(two.files) == sorted(one.files)
    for k in one.files:  # process 0 wrote the run; float32 all-reduce order only
        np.testing.assert_allclose(two[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)
