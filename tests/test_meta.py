import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import lorex
from lorex import io, lopt, meta, seeds
from lorex.errors import LorexError

TINY = dict(task="linreg", task_overrides=(("m", 3), ("n", 3)), hidden=4, batch=2, unroll=6, steps=6,
            val_every=2, val_batch=4, checkpoint_every=2)


def nonzero_params(cfg, key=jax.random.PRNGKey(0)):
    p = lopt.init_params(key, cfg.lopt_config())
    p["readout"]["w"] = 0.5 * jax.random.normal(key, p["readout"]["w"].shape)
    return p


@pytest.mark.parametrize("remat", [False, True])
def test_meta_gradient_is_correct(remat):
    with jax.enable_x64(True):
        cfg = meta.MetaConfig(**{**TINY, "unroll": 3, "remat": remat, "output_scale": 0.3})
        params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), nonzero_params(cfg))
        keys = seeds.keys(0, "meta_train", 2)
        f = lambda p: meta.batch_objective(p, keys, cfg, cfg.family(), 3)  # noqa: E731
        check_grads(f, (params,), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


def test_truncation_blocks_gradient_across_windows():
    cfg = meta.MetaConfig(**{**TINY, "unroll": 4, "truncation": 2, "output_scale": 0.3})
    p = nonzero_params(cfg)
    keys = seeds.keys(0, "meta_train", 2)
    g_trunc = jax.grad(meta.batch_objective)(p, keys, cfg, cfg.family(), 4)
    g_full = jax.grad(meta.batch_objective)(p, keys, meta.MetaConfig(**{**TINY, "unroll": 4, "output_scale": 0.3}),
                                            cfg.family(), 4)
    a, b = (np.asarray(jax.flatten_util.ravel_pytree(g)[0]) for g in (g_trunc, g_full))
    assert np.isfinite(a).all() and not np.allclose(a, b)


def test_few_meta_steps_lower_meta_loss():
    cfg = meta.MetaConfig(task="linreg", hidden=8, batch=16, unroll=30, steps=40, meta_lr=1e-2, val_batch=32)
    family = cfg.family()
    st = meta.init_state(cfg)
    step = meta.make_meta_step(cfg, family)
    validate = meta.make_validation(cfg, family)
    before = float(validate(st.params))
    params, opt_state = st.params, st.opt_state
    for i in range(cfg.steps):
        params, opt_state, _ = step(params, opt_state, meta.step_keys(cfg, i))
    after = float(validate(params))
    assert abs(before) < 1e-6  # the untrained optimizer does nothing: f_t = f_0 (to rounding)
    assert after < -0.5, after
    assert step.compilations() == 1  # the first call's single-device state does not force a second compilation


def test_meta_step_compiles_once(caplog):
    """The state from init_state (on one device) and the state a step returns (replicated over the mesh) must meet
    the same compiled step: over three meta-steps JAX lowers and compiles ``meta_step`` exactly once."""
    cfg = meta.MetaConfig(**{**TINY, "hidden": 5, "unroll": 5})  # a config no other test compiles in this process
    st = meta.init_state(cfg)
    step = meta.make_meta_step(cfg, cfg.family())
    params, opt_state = st.params, st.opt_state
    with jax.log_compiles(True), caplog.at_level("WARNING", logger="jax"):
        for i in range(3):
            params, opt_state, loss = step(params, opt_state, meta.step_keys(cfg, i))
        jax.block_until_ready(loss)
    compiles = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling jit(meta_step)")]
    assert len(compiles) == 1, compiles
    assert step.compilations() == 1


class NaNFamily:
    """linreg whose first sampled problem (odd key bit) has a NaN loss."""

    steps = 5

    def __init__(self):
        self.base = lorex.tasks.make("linreg", n=3, m=3)

    def sample(self, key):
        return self.base.sample(key), jax.random.bernoulli(key)

    def init(self, key, problem):
        return self.base.init(key, problem[0])

    def loss(self, params, problem):
        return self.base.loss(params, problem[0]) + jnp.where(problem[1], jnp.nan, 0.0)


def test_nan_problem_step_is_skipped(monkeypatch):
    cfg = meta.MetaConfig(**{**TINY, "unroll": 5, "batch": 8})
    st = meta.init_state(cfg)
    step = meta.make_meta_step(cfg, NaNFamily())
    keys = meta.step_keys(cfg, 0)
    assert bool(jax.vmap(lambda k: NaNFamily().sample(jax.random.split(k)[0])[1])(keys).any())
    before = jax.tree_util.tree_map(np.asarray, st.params)
    params, opt_state, loss = step(st.params, st.opt_state, keys)
    assert not np.isfinite(float(loss))
    assert int(opt_state.total_notfinite) == 1
    for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)


def test_train_writes_run_and_resume_equals_uninterrupted(tmp_path):
    cfg = meta.MetaConfig(**TINY)
    full = meta.train(cfg, tmp_path / "full", progress=False)
    meta.train(cfg, tmp_path / "cut", progress=False, stop_after=3)
    assert not (tmp_path / "cut" / lopt.META_FILE).exists()
    meta.resume(tmp_path / "cut", progress=False)
    pa, _, ma = lopt.load_params(full)
    pb, _, mb = lopt.load_params(tmp_path / "cut")
    for a, b in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
        np.testing.assert_array_equal(a, b)
    assert ma["meta_loss_history"] == mb["meta_loss_history"] and len(ma["meta_loss_history"]) == cfg.steps
    for k in ("versions", "seed", "wall_seconds", "validation_history", "format_version"):
        assert k in ma
    assert ma["versions"]["jax"] == jax.__version__
    assert not list(full.glob("*.npy")) and not list(full.glob("*.pkl"))


def test_checkpoint_errors(tmp_path):
    cfg = meta.MetaConfig(**TINY)
    meta.train(cfg, tmp_path / "a", progress=False, stop_after=2)
    other = meta.MetaConfig(**{**TINY, "hidden": 5})
    with pytest.raises(LorexError, match="another config"):
        meta.load_checkpoint(tmp_path / "a", other)
    (tmp_path / "a" / meta.CHECKPOINT_FILE).write_bytes(b"garbage")
    with pytest.raises(LorexError, match="corrupt"):
        meta.resume(tmp_path / "a", progress=False)
    with pytest.raises(LorexError, match="already holds a run"):
        meta.train(cfg, tmp_path / "a", progress=False)


def test_config_errors():
    with pytest.raises(LorexError, match="objective"):
        meta.MetaConfig(objective="max")
    with pytest.raises(LorexError, match="truncation"):
        meta.MetaConfig(unroll=10, truncation=3)
    with pytest.raises(LorexError, match="batch"):
        meta.MetaConfig(batch=0)


CLI_TINY = ["--task", "linreg", "--set", "n=3", "--set", "m=3", "--hidden", "4", "--batch", "2", "--unroll", "6",
            "--steps", "40", "--val-every", "5", "--val-batch", "4", "--checkpoint-every", "1"]


def _cli(*args):
    return [sys.executable, "-m", "lorex.cli", "train", *args]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    subprocess.run(_cli(*CLI_TINY, "--out", str(tmp_path / "full")), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(_cli(*CLI_TINY, "--out", str(tmp_path / "killed")), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / meta.CHECKPOINT_FILE
    deadline = time.time() + 120
    while time.time() < deadline:
        if ckpt.exists():
            try:
                with np.load(ckpt) as d:
                    if int(d["scalar_step"]) >= 5:
                        break
            except Exception:
                pass
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with np.load(ckpt) as d:
        assert 5 <= int(d["scalar_step"]) < 40  # killed mid-run
    subprocess.run(_cli("--resume", str(tmp_path / "killed")), check=True, env=env, capture_output=True)
    pa, _, _ = lopt.load_params(tmp_path / "full")
    pb, _, _ = lopt.load_params(tmp_path / "killed")
    for a, b in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
        np.testing.assert_array_equal(a, b)
    assert io.load_json(tmp_path / "killed" / lopt.META_FILE)["meta_steps"] == 40
