"""Files never run code; non-finite updates are never applied; failed runs fail; writes are safe and strict."""

import errno
import json
import math
import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_optimizer
from lorex import io, lopt, meta
from lorex.cli import main
from lorex.errors import LorexError, RunError

T = ["train", "--task", "linreg", "--set", "n=3", "--set", "m=3", "--hidden", "4", "--batch", "2", "--unroll", "6",
     "--steps", "6", "--val-every", "2", "--val-batch", "4", "--checkpoint-every", "2"]
TINY = dict(task="linreg", task_overrides=(("m", 3), ("n", 3)), hidden=4, batch=2, unroll=6, steps=6,
            val_every=2, val_batch=4, checkpoint_every=2)
MARKER_MODULE = """
import pathlib, os
pathlib.Path(os.environ["LOREX_MARKER"]).write_text("imported")
from lorex import tasks
family = tasks.make("linreg", n=3, m=3)
"""


@pytest.fixture
def marker(tmp_path, monkeypatch):
    """A task module ``lorex_marker:family`` whose import leaves a file behind."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "lorex_marker.py").write_text(MARKER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    monkeypatch.setenv("LOREX_MARKER", str(tmp_path / "imported"))
    return tmp_path / "imported"


def _one_line_error(capsys, code, expected_code, text):
    """The command failed with ``expected_code`` and one error line (after any progress bar lines)."""
    assert code == expected_code
    lines = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("lorex: error:")]
    assert len(errors) == 1 and text in errors[0] and lines[-1] == errors[0], lines
    assert not any("Traceback" in ln for ln in lines)
    return errors[0]


# ------------------------------------------------------------------------------------- files never run code


def test_resume_never_imports_a_task_named_in_run_json(tmp_path, marker, capsys):
    run = tmp_path / "run"
    run.mkdir()
    cfg = {**meta.MetaConfig(**TINY).to_json(), "task": "lorex_marker:family", "task_overrides": {}}
    io.save_json(run / meta.RUN_FILE, {"format_version": io.FORMAT_VERSION, "config": cfg})
    _one_line_error(capsys, main(["train", "--resume", str(run)]), 2, "--task")
    assert not marker.exists()
    # the user names it on the command line: now it may run (and does)
    assert main(["train", "--resume", str(run), "--task", "lorex_marker:family"]) == 0
    assert marker.exists() and (run / lopt.META_FILE).exists()


def test_run_json_task_module_with_truncation_is_not_imported(marker):
    cfg = {**meta.MetaConfig(**TINY).to_json(), "task": "lorex_marker:family", "task_overrides": {},
           "truncation": 2}
    with pytest.raises(LorexError, match="registered"):
        meta.MetaConfig.from_json(cfg, "run.json")
    assert not marker.exists()


def test_distill_never_imports_a_task_named_in_optimizer_json(tmp_path, marker, capsys):
    d = tiny_optimizer(tmp_path / "opt", hidden=4)
    m = json.loads((d / lopt.META_FILE).read_text())
    (d / lopt.META_FILE).write_text(json.dumps({**m, "task": "lorex_marker:family"}))
    _one_line_error(capsys, main(["distill", "--optimizer", str(d), "--out", str(tmp_path / "o")]), 2,
                    "not a registered task")
    assert not marker.exists() and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------- non-finite and failed runs


def test_update_that_overflows_the_parameters_is_skipped():
    cfg = meta.MetaConfig(**{**TINY, "meta_lr": 3e38, "meta_lr_final": 3e38})
    st = meta.init_state(cfg)
    params = jax.tree_util.tree_map(lambda x: jnp.full_like(x, 3e38), st.params)
    grads = jax.tree_util.tree_map(lambda x: -jnp.ones_like(x), params)  # Adam steps +lr: 3e38 + 3e38 = inf
    opt = meta.meta_optimizer(cfg)
    unguarded = jax.tree_util.tree_leaves(
        __import__("optax").apply_updates(params, opt.update(grads, opt.init(params), params)[0]))
    assert not all(np.isfinite(np.asarray(x)).all() for x in unguarded)  # the guard below has work to do
    new, state = meta.guarded_update(opt, params, opt.init(params), grads, jnp.float32(1.0))
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)
    assert int(state.total_notfinite) == 1 and not bool(state.last_finite)
    # the inner Adam state is left as it was, so the next step is as if this one never happened
    for a, b in zip(jax.tree_util.tree_leaves(state.inner_state), jax.tree_util.tree_leaves(opt.init(params).inner_state)):
        np.testing.assert_array_equal(a, b)
    # a finite update is applied and not counted
    new, state = meta.guarded_update(opt, jax.tree_util.tree_map(jnp.zeros_like, params), opt.init(params), grads,
                                     jnp.float32(1.0))
    assert int(state.total_notfinite) == 0 and all(np.isfinite(np.asarray(x)).all()
                                                   for x in jax.tree_util.tree_leaves(new))


def test_training_that_never_beats_the_start_fails(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(T + ["--out", str(out), "--meta-lr", "1e-30", "--meta-lr-final", "1e-30"])
    _one_line_error(capsys, code, 1, "never beat the starting point")
    assert not (out / lopt.META_FILE).exists() and (out / meta.CHECKPOINT_FILE).exists()


NAN_MODULE = """
import jax.numpy as jnp
from lorex import tasks
base = tasks.make("linreg", n=3, m=3)
class NaNTask:
    steps = 6
    def sample(self, key): return base.sample(key)
    def init(self, key, problem): return base.init(key, problem)
    def loss(self, params, problem): return base.loss(params, problem) * jnp.nan
family = NaNTask()
"""


def test_training_with_every_step_skipped_fails(tmp_path, capsys, monkeypatch):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "lorex_nantask.py").write_text(NAN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    out = tmp_path / "run"
    code = main(["train", "--task", "lorex_nantask:family", *T[7:], "--out", str(out)])
    _one_line_error(capsys, code, 1, "all 6 meta-steps were skipped")
    assert not (out / lopt.META_FILE).exists()


# ------------------------------------------------------------------------------------- files


def test_json_is_strict(tmp_path):
    io.save_json(tmp_path / "a.json", {"x": math.inf, "y": [math.nan, np.float32(-np.inf), np.arange(2)],
                                       "z": 1.5})
    text = (tmp_path / "a.json").read_text()
    d = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert d == {"x": "inf", "y": ["nan", "-inf", [0, 1]], "z": 1.5}


def test_disk_full_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_savez = np.savez
    calls = []

    def savez(f, **arrays):
        calls.append(int(arrays["scalar_step"]))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(f, **arrays)

    monkeypatch.setattr(meta.np, "savez", savez)
    err = _one_line_error(capsys, main(T + ["--out", str(out)]), 1, "No space left on device")
    assert str(out / meta.CHECKPOINT_FILE) in err
    with np.load(out / meta.CHECKPOINT_FILE) as d:
        assert int(d["scalar_step"]) == calls[0] == 2
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_run_folder_deleted_mid_run_is_not_recreated(tmp_path, capsys, monkeypatch):
    import shutil

    out = tmp_path / "run"
    real = meta.step_keys

    def step_keys(cfg, step):
        if step == 3:
            shutil.rmtree(out)
        return real(cfg, step)

    monkeypatch.setattr(meta, "step_keys", step_keys)
    _one_line_error(capsys, main(T + ["--out", str(out)]), 1, "disappeared")
    assert not out.exists()


def test_resume_removes_orphaned_tmp_files(tmp_path):
    cfg = meta.MetaConfig(**TINY)
    meta.train(cfg, tmp_path / "a", progress=False, stop_after=2)
    orphan = tmp_path / "a" / f".{meta.CHECKPOINT_FILE}.k2j3h4.tmp"
    orphan.write_bytes(b"half a checkpoint")
    meta.resume(tmp_path / "a", progress=False)
    assert not orphan.exists() and (tmp_path / "a" / lopt.META_FILE).exists()


def test_atomic_write_fsyncs_the_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real(fd)

    monkeypatch.setattr(io.os, "fsync", fsync)
    io.save_json(tmp_path / "x.json", {"a": 1})
    assert synced == [False, True]  # the file, then its folder after the rename


def test_write_error_is_a_run_error_naming_the_path(tmp_path, monkeypatch):
    (tmp_path / "old.json").write_text('{"kept": true}\n')

    def replace(a, b):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(io.os, "replace", replace)
    with pytest.raises(RunError, match="old.json: write failed"):
        io.save_json(tmp_path / "old.json", {"kept": False})
    assert json.loads((tmp_path / "old.json").read_text()) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"]


def test_benchmark_where_every_grid_point_diverges_reports_it(tmp_path, capsys):
    code = main(["benchmark", "--task", "rosenbrock", "--set", "b=1e8", "--steps", "20", "--tuning-seeds", "4",
                 "--test-seeds", "8", "--no-learned", "--optimizers", "sgd", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "DIVERGED at every tuning grid point" in out
    res = json.loads((tmp_path / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    row = res["benchmark"]["optimizers"]["sgd"]
    assert row["tuning_diverged"] is True and row["diverged"] == 8 and row["final_loss"]["mean"] == "inf"


def test_tune_where_every_grid_point_diverges(capsys):
    code = main(["tune", "--task", "rosenbrock", "--set", "b=1e8", "--steps", "20", "--tuning-seeds", "4",
                 "--optimizers", "sgd"])
    assert code == 0 and "DIVERGED at every grid point" in capsys.readouterr().out
