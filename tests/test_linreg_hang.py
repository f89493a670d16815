"""Regression tests for the linreg sampler deadlock on jaxlib 0.10.x CPU.

jaxlib 0.10.x splits a large batched LAPACK kernel (e.g. a vmapped QR) into chunks, queues them on XLA's intra-op
pool and blocks on them; two such kernels running at once on a 2-thread pool wait for each other forever. The
linreg sampler used to make two independent batched QR calls, and at n = 20 with a large batch the jitted, vmapped
sampler stalled within a few hundred calls. These tests run lorex's own sampling code in a subprocess and fail if it
does not finish (a stalled process sleeps at 0 % CPU: a hang, not slowness).
"""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from lorex import tasks

# On the old sampler this stalled in 5 of 5 trials on a 2-core machine within 300 calls.
SAMPLER_LOOP = textwrap.dedent("""
    import jax
    from lorex import tasks
    family = tasks.make("linreg", n=20, m=40)
    sample = jax.jit(lambda k: jax.vmap(family.sample)(jax.random.split(k, 256)))
    for i in range(1000):
        jax.block_until_ready(sample(jax.random.PRNGKey(i)))
    print("finished")
""")

# The meta-training path the hang was first seen in (4 of 4 runs stalled between meta-steps 21 and 149).
TRAIN_LOOP = textwrap.dedent("""
    import sys
    from lorex import meta
    cfg = meta.default_config("linreg", task_overrides=(("m", 40), ("n", 20)), steps=300, hidden=8,
                              val_every=25, checkpoint_every=300)
    meta.train(cfg, sys.argv[1], progress=False)
    print("finished")
""")


def _run(code, *args, timeout):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    try:
        p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                           env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish within {timeout} s: the linreg sampler deadlocked")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "finished" in p.stdout


def test_linreg_sampler_uses_no_lapack():
    """The sampler is built from matmuls only: no batched LAPACK kernel that could deadlock."""
    family = tasks.make("linreg", n=20, m=40)
    hlo = jax.jit(jax.vmap(family.sample)).lower(jax.random.split(jax.random.PRNGKey(0), 64)).as_text()
    assert "lapack" not in hlo.lower() and "custom_call" not in hlo


def test_linreg_sampler_does_not_deadlock():
    _run(SAMPLER_LOOP, timeout=120)


@pytest.mark.slow
def test_linreg_n20_training_does_not_deadlock(tmp_path):
    _run(TRAIN_LOOP, str(tmp_path / "run"), timeout=600)
