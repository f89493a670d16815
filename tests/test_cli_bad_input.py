"""Every bad input exits with status 2 and one line naming the field (or file), before anything is written.

Each case is (name, argv, expected text in the message); ``OUT`` in argv is a fresh folder that must stay empty
(or absent), and the temporary folder as a whole must not gain any file besides the fixtures the case set up.
"""

import json
import os
import subprocess
import sys

import pytest

from lorex import io, lopt
from lorex.errors import LorexError
from lorex.cli import main
from helpers import tiny_optimizer

HUGE = str(2**70)


def _run_json(tmp, content):
    d = tmp / "run"
    d.mkdir()
    (d / "run.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return str(d)


def _good_config():
    return {"task": "linreg", "task_overrides": {"n": 3, "m": 3}, "hidden": 4, "batch": 2, "unroll": 6, "steps": 6,
            "val_every": 2, "val_batch": 4, "checkpoint_every": 2}


def _run_with(tmp, **config):
    return _run_json(tmp, {"format_version": io.FORMAT_VERSION, "config": {**_good_config(), **config}})


def _opt_json(tmp, edit):
    d = tiny_optimizer(tmp / "opt", hidden=4)
    meta = json.loads((d / lopt.META_FILE).read_text())
    (d / lopt.META_FILE).write_text(json.dumps(edit(meta)))
    return str(d)


def _module(tmp, name, text):
    (tmp / "mods").mkdir(exist_ok=True)
    (tmp / "mods" / f"{name}.py").write_text(text)
    return f"{name}:family"


def _file(tmp):
    (tmp / "afile").write_text("x")
    return str(tmp / "afile")


def _readonly(tmp):
    if os.geteuid() == 0:  # root writes through permissions; a file system that refuses writes stands in
        return "/sys/lorex-out"
    d = tmp / "ro"
    d.mkdir()
    d.chmod(0o555)
    return str(d / "out")


def _population(tmp):
    """A folder with two members of different architectures (not one population), seed-0 and seed-2."""
    for k in (0, 2):
        tiny_optimizer(tmp / "pop" / f"seed-{k}", hidden=4 + k, seed=k)
    return tmp / "pop"


B = ["benchmark", "--task", "linreg", "--steps", "5", "--tuning-seeds", "2", "--test-seeds", "2", "--no-learned"]
T = ["train", "--task", "linreg", "--set", "n=3", "--set", "m=3", "--hidden", "4", "--batch", "2", "--unroll", "6",
     "--steps", "6"]

# (id, argv or a function tmp -> argv, text expected in the message)
CASES = [
    # --out that cannot be a folder
    ("benchmark-out-file", lambda t: B + ["--out", _file(t)], "--out"),
    ("benchmark-out-under-file", lambda t: B + ["--out", _file(t) + "/sub"], "--out"),
    ("train-out-file", lambda t: T + ["--out", _file(t)], "out"),
    ("train-out-under-file", lambda t: T + ["--out", _file(t) + "/sub/run"], "out"),
    ("reproduce-out-file", lambda t: ["reproduce", "--tasks", "linreg", "--out", _file(t)], "--out"),
    ("distill-out-file", lambda t: ["distill", "--optimizer", "linreg", "--out", _file(t)], "--out"),
    ("distill-out-under-file", lambda t: ["distill", "--optimizer", "linreg", "--out", _file(t) + "/x"], "--out"),
    ("benchmark-out-proc", lambda t: B + ["--out", "/proc/lorex-out"], "--out"),
    ("train-out-readonly", lambda t: T + ["--out", _readonly(t)], "out"),
    # tampered run.json
    ("resume-missing-config", lambda t: ["train", "--resume", _run_json(t, {"format_version": 1})], "run.json"),
    ("resume-list", lambda t: ["train", "--resume", _run_json(t, "[1, 2]")], "run.json"),
    ("resume-null", lambda t: ["train", "--resume", _run_json(t, "null")], "run.json"),
    ("resume-config-list", lambda t: ["train", "--resume", _run_json(t, {"format_version": 1, "config": [1]})],
     "run.json"),
    ("resume-config-null", lambda t: ["train", "--resume", _run_json(t, {"format_version": 1, "config": None})],
     "run.json"),
    ("resume-hidden-str", lambda t: ["train", "--resume", _run_with(t, hidden="abc")], "hidden"),
    ("resume-meta-lr-str", lambda t: ["train", "--resume", _run_with(t, meta_lr="abc")], "meta_lr"),
    ("resume-task-int", lambda t: ["train", "--resume", _run_with(t, task=5)], "task"),
    ("resume-overrides-list", lambda t: ["train", "--resume", _run_with(t, task_overrides=[1])], "task_overrides"),
    ("resume-override-type", lambda t: ["train", "--resume", _run_with(t, task_overrides={"n": "x"})], "linreg.n"),
    ("resume-unknown-field", lambda t: ["train", "--resume", _run_with(t, bogus=1)], "run.json"),
    ("resume-remat-str", lambda t: ["train", "--resume", _run_with(t, remat="yes")], "remat"),
    ("resume-corrupt-json", lambda t: ["train", "--resume", _run_json(t, "{not json")], "run.json"),
    ("resume-no-folder", lambda t: ["train", "--resume", str(t / "nope")], "run.json"),
    ("resume-plain-task", lambda t: ["train", "--resume", _run_with(t), "--task", "linreg"], "--task"),
    # tampered optimizer.json
    ("optimizer-json-list", lambda t: B[:-1] + ["--optimizer", _opt_json(t, lambda m: [1])], "optimizer.json"),
    ("optimizer-json-null", lambda t: B[:-1] + ["--optimizer", _opt_json(t, lambda m: None)], "optimizer.json"),
    ("optimizer-no-lopt-config", lambda t: B[:-1] + ["--optimizer", _opt_json(t, lambda m: {
        k: v for k, v in m.items() if k != "lopt_config"})], "optimizer.json"),
    ("optimizer-hidden-str", lambda t: B[:-1] + ["--optimizer", _opt_json(t, lambda m: {
        **m, "lopt_config": {**m["lopt_config"], "hidden": "abc"}})], "hidden"),
    ("optimizer-scale-inf", lambda t: B[:-1] + ["--optimizer", _opt_json(t, lambda m: {
        **m, "lopt_config": {**m["lopt_config"], "input_scale": float("inf")}})], "input_scale"),
    ("optimizer-lopt-config-list", lambda t: B[:-1] + ["--optimizer", _opt_json(t, lambda m: {
        **m, "lopt_config": [4]})], "optimizer.json"),
    ("optimizer-no-version", lambda t: B[:-1] + ["--optimizer", _opt_json(t, lambda m: {
        k: v for k, v in m.items() if k != "format_version"})], "format_version"),
    ("distill-task-int", lambda t: ["distill", "--optimizer", _opt_json(t, lambda m: {**m, "task": 7})], "task"),
    ("distill-task-unknown", lambda t: ["distill", "--optimizer", _opt_json(t, lambda m: {**m, "task": "zzz"})],
     "task"),
    # task fields of the wrong type or not finite
    ("rosenbrock-a-str", ["tune", "--task", "rosenbrock", "--set", "a=abc"], "rosenbrock.a"),
    ("rosenbrock-b-nan", ["tune", "--task", "rosenbrock", "--set", "b=nan"], "rosenbrock.b"),
    ("rosenbrock-range-str", ["tune", "--task", "rosenbrock", "--set", "x_range=abc"], "rosenbrock.x_range"),
    ("rosenbrock-range-3", ["tune", "--task", "rosenbrock", "--set", "x_range=[1,2,3]"], "rosenbrock.x_range"),
    ("rosenbrock-range-inf", ["tune", "--task", "rosenbrock", "--set", "y_range=[0,1e400]"], "rosenbrock.y_range"),
    ("two-moons-noise-str", ["tune", "--task", "two_moons", "--set", "noise=abc"], "two_moons.noise"),
    ("two-moons-hidden-str", ["tune", "--task", "two_moons", "--set", "hidden=abc"], "two_moons.hidden"),
    ("two-moons-hidden-zero", ["tune", "--task", "two_moons", "--set", "hidden=[0]"], "two_moons.hidden"),
    ("two-moons-hidden-float", ["tune", "--task", "two_moons", "--set", "hidden=[2.5]"], "two_moons.hidden"),
    ("two-moons-resample-maybe", ["tune", "--task", "two_moons", "--set", "resample_data=maybe"],
     "two_moons.resample_data"),
    ("two-moons-l2-negative", ["tune", "--task", "two_moons", "--set", "l2=-1"], "two_moons.l2"),
    ("linreg-lambda-min-nan", ["tune", "--task", "linreg", "--set", "lambda_min=nan"], "linreg.lambda_min"),
    ("linreg-lambda-max-inf", ["tune", "--task", "linreg", "--set", "lambda_max=inf"], "linreg.lambda_max"),
    ("linreg-lambda-order", ["tune", "--task", "linreg", "--set", "lambda_min=2"], "linreg.lambda_min"),
    ("linreg-noise-1e400", ["tune", "--task", "linreg", "--set", "noise=1e400"], "linreg.noise"),
    ("linreg-init-scale-1e400", ["tune", "--task", "linreg", "--set", "init_scale=1e400"], "linreg.init_scale"),
    ("linreg-pin-maybe", ["tune", "--task", "linreg", "--set", "pin_extremes=maybe"], "linreg.pin_extremes"),
    ("linreg-pin-int", ["tune", "--task", "linreg", "--set", "pin_extremes=1"], "linreg.pin_extremes"),
    ("linreg-n-str", ["tune", "--task", "linreg", "--set", "n=abc"], "linreg.n"),
    ("linreg-n-float", ["tune", "--task", "linreg", "--set", "n=2.5"], "linreg.n"),
    ("linreg-n-one", ["tune", "--task", "linreg", "--set", "n=1"], "linreg.n"),
    ("linreg-m-below-n", ["tune", "--task", "linreg", "--set", "n=12"], "linreg.m"),
    ("linreg-steps-zero", ["tune", "--task", "linreg", "--set", "steps=0"], "linreg.steps"),
    ("linreg-steps-bool", ["tune", "--task", "linreg", "--set", "steps=True"], "linreg.steps"),
    ("set-malformed", ["tune", "--task", "linreg", "--set", "n"], "--set"),
    ("set-unknown-field", ["tune", "--task", "linreg", "--set", "bogus=1"], "linreg.bogus"),
    ("train-set-nan", T[:3] + ["--out", "OUT", "--set", "lambda_min=nan"], "linreg.lambda_min"),
    # populations and presets
    ("train-seeds-repeated", T + ["--out", "OUT", "--seeds", "1", "1"], "seeds"),
    ("train-seeds-negative", T + ["--out", "OUT", "--seeds", "0", "-1"], "seed"),
    ("train-seeds-and-seed", T + ["--out", "OUT", "--seeds", "0", "1", "--seed", "3"], "--seeds"),
    ("train-preset-unknown", T + ["--out", "OUT", "--preset", "huge"], "preset"),
    ("benchmark-members-zero", B + ["--members", "0"], "members"),
    ("reproduce-members-zero", ["reproduce", "--out", "OUT", "--members", "0"], "members"),
    ("benchmark-population-mixed", lambda t: B[:-1] + ["--optimizer", str(_population(t))], "population member"),
    # float flags
    ("input-scale-inf", T + ["--out", "OUT", "--input-scale", "inf"], "input-scale"),
    ("input-scale-nan", T + ["--out", "OUT", "--input-scale", "nan"], "input-scale"),
    ("meta-lr-inf", T + ["--out", "OUT", "--meta-lr", "inf"], "meta-lr"),
    ("meta-lr-nan", T + ["--out", "OUT", "--meta-lr", "nan"], "meta-lr"),
    ("meta-lr-zero", T + ["--out", "OUT", "--meta-lr", "0"], "meta-lr"),
    ("meta-lr-str", T + ["--out", "OUT", "--meta-lr", "fast"], "meta-lr"),
    ("meta-lr-final-above", T + ["--out", "OUT", "--meta-lr", "1e-3", "--meta-lr-final", "1e-2"], "meta_lr_final"),
    ("output-scale-inf", T + ["--out", "OUT", "--output-scale", "1e999"], "output-scale"),
    ("clip-inf", T + ["--out", "OUT", "--clip", "inf"], "clip"),
    ("clip-negative", T + ["--out", "OUT", "--clip", "-1"], "clip"),
    # sizes beyond the machine
    ("hidden-1e6", T + ["--out", "OUT", "--hidden", "1000000"], "hidden"),
    ("linreg-n-1e9", ["tune", "--task", "linreg", "--set", "n=1000000000", "--set", "m=1000000000"],
     "tuning-seeds"),
    ("train-linreg-n-1e9", T[:3] + ["--out", "OUT", "--set", "n=1000000000", "--set", "m=1000000000"], "batch"),
    ("linreg-n-1e9-m-small", ["tune", "--task", "linreg", "--set", "n=1000000000"], "linreg.m"),
    ("tuning-seeds-1e9", ["tune", "--task", "linreg", "--tuning-seeds", "1000000000"], "tuning-seeds"),
    ("benchmark-tuning-seeds-1e9", B[:5] + ["--tuning-seeds", "1000000000", "--out", "OUT"], "tuning-seeds"),
    ("test-seeds-1e12", B[:7] + ["--test-seeds", "1000000000000", "--out", "OUT"], "test-seeds"),
    ("two-moons-points-1e9", ["tune", "--task", "two_moons", "--set", "n_points=1000000000"], "tuning-seeds"),
    ("train-batch-1e9", T + ["--out", "OUT", "--batch", "1000000000"], "batch"),
    ("train-unroll-1e12", T + ["--out", "OUT", "--unroll", "1000000000000"], "batch"),
    ("horizon-1e12", B[:3] + ["--steps", "1000000000000", "--out", "OUT"], "tuning-seeds"),
    ("seed-2**70", ["tune", "--task", "linreg", "--seed", HUGE], "seed"),
    ("seed-negative", ["tune", "--task", "linreg", "--seed", "-1"], "seed"),
    ("seed-str", ["tune", "--task", "linreg", "--seed", "x"], "seed"),
    ("train-seed-2**70", T + ["--out", "OUT", "--seed", HUGE], "seed"),
    ("reproduce-seed-2**70", ["reproduce", "--seed", HUGE, "--out", "OUT"], "seed"),
    ("reproduce-test-seeds-1e12", ["reproduce", "--tasks", "linreg", "--test-seeds", "1000000000000", "--out",
                                   "OUT"], "test-seeds"),
    ("distill-test-seeds-1e12", ["distill", "--optimizer", "linreg", "--test-seeds", "1000000000000", "--out",
                                 "OUT"], "test-seeds"),
    # user task modules that fail
    ("module-raises", lambda t: ["tune", "--task", _module(t, "lorex_raises", "raise RuntimeError('boom')\n")],
     "lorex_raises"),
    ("module-syntax-error", lambda t: ["tune", "--task", _module(t, "lorex_syntax", "def f(:\n")], "lorex_syntax"),
    ("module-factory-raises", lambda t: ["tune", "--task", _module(
        t, "lorex_factory", "def family():\n    raise ValueError('bad\\nfactory')\n")], "lorex_factory"),
    ("module-not-a-family", lambda t: ["tune", "--task", _module(t, "lorex_nofam", "family = 3\n")], "lorex_nofam"),
    ("module-missing-attr", lambda t: ["tune", "--task", _module(t, "lorex_noattr", "x = 1\n")], "lorex_noattr"),
    ("module-with-set", lambda t: ["tune", "--task", _module(t, "lorex_set", "x = 1\n"), "--set", "n=3"], "task"),
    # other choices
    ("unknown-task", ["tune", "--task", "nope"], "task"),
    ("unknown-optimizer", B + ["--optimizers", "lbfgs"], "optimizer"),
    ("optimizer-missing-dir", B[:-1] + ["--optimizer", "/no/such/dir"], "optimizer"),
    ("objective-max", T + ["--out", "OUT", "--objective", "max"], "objective"),
    ("features-bogus", T + ["--out", "OUT", "--features", "cube"], "features"),
    ("truncation-not-divisor", T + ["--out", "OUT", "--truncation", "4"], "truncation"),
    ("train-no-out", T, "train"),
    ("reproduce-unknown-task", ["reproduce", "--tasks", "nope", "--out", "OUT"], "--tasks"),
    ("reproduce-module-task", ["reproduce", "--tasks", "os:path", "--out", "OUT"], "--tasks"),
    ("reproduce-set-no-task", ["reproduce", "--set", "channels=[2]", "--out", "OUT"], "TASK.FIELD=VALUE"),
    ("reproduce-set-other-task", ["reproduce", "--tasks", "linreg", "--set", "digits.batch=4", "--out", "OUT"],
     "not among the tasks run"),
    ("reproduce-set-bad-field", ["reproduce", "--tasks", "digits", "--set", "digits.bogus=4", "--out", "OUT"],
     "digits.bogus"),
    ("steps-zero", B[:3] + ["--steps", "0"], "steps"),
    ("test-seeds-negative", B[:3] + ["--test-seeds", "-3"], "test-seeds"),
    ("search-bogus", B + ["--search", "random"], "--search"),
    # explicit multi-process settings (checked before jax.distributed.initialize is called)
    ("coordinator-alone", T + ["--out", "OUT", "--distributed", "--coordinator", "127.0.0.1:1234"],
     "--num-processes"),
    ("coordinator-no-port", T + ["--out", "OUT", "--distributed", "--coordinator", "localhost", "--num-processes",
                                 "2", "--process-id", "0"], "--coordinator"),
    ("coordinator-port-range", T + ["--out", "OUT", "--distributed", "--coordinator", "127.0.0.1:70000",
                                    "--num-processes", "2", "--process-id", "0"], "--coordinator"),
    ("coordinator-without-distributed", T + ["--out", "OUT", "--coordinator", "127.0.0.1:1234", "--num-processes",
                                             "2", "--process-id", "0"], "--coordinator"),
    ("process-id-too-large", T + ["--out", "OUT", "--distributed", "--coordinator", "127.0.0.1:1234",
                                  "--num-processes", "2", "--process-id", "2"], "--process-id"),
    ("process-id-negative", T + ["--out", "OUT", "--distributed", "--process-id", "-1"], "process-id"),
    ("num-processes-zero", T + ["--out", "OUT", "--distributed", "--num-processes", "0"], "num-processes"),
]


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    name, argv, expected = case
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    monkeypatch.chdir(tmp_path)
    argv = argv(tmp_path) if callable(argv) else list(argv)
    out = tmp_path / "OUT"
    argv = [str(out) if a == "OUT" else a for a in argv]
    before = _listing(tmp_path)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    assert code == 2, name
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("lorex: error:") and expected in err, err
    assert "Traceback" not in err
    assert _listing(tmp_path) == before, "something was written"
    assert not out.exists()


def test_enough_cases():
    assert len(CASES) >= 100


def test_batch_not_dividing_devices_fails_before_writing(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "lorex.cli", *T[:-4], "--batch", "3", "--unroll", "6", "--steps", "6",
                        "--out", str(out)], capture_output=True, text=True, env=env)
    assert p.returncode == 2, p.stderr
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and "batch" in err and "2 devices" in err, err
    assert not out.exists()


def test_halving_is_sized_by_its_chunks_not_the_whole_grid(monkeypatch):
    """Successive halving runs HALVING_CHUNK runs at once: a grid x seeds too big to run at once (search=grid) still
    fits under halving, while a seed count whose bookkeeping alone cannot fit is refused under both."""
    from lorex import resources, tasks
    from lorex.baselines import HALVING_CHUNK

    family = tasks.make("linreg")
    one_run = resources.evaluation_bytes(family, 1, family.steps, resources.STATE_FLOATS["adam"])
    monkeypatch.setattr(resources, "available_bytes", lambda: 4 * HALVING_CHUNK * one_run)
    kw = dict(optimizers=["adam"], tuning_seeds=64, test_seeds=8, steps=family.steps)
    resources.check_benchmark(family, search="halving", **kw)
    with pytest.raises(LorexError, match="tuning-seeds"):
        resources.check_benchmark(family, search="grid", **kw)
    with pytest.raises(LorexError, match="tuning-seeds"):
        resources.check_benchmark(family, search="halving", **{**kw, "tuning_seeds": 10**12})
