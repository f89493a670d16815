"""The digits task: network, minibatches, held-out metrics, the IDX reader and MNIST folders, field validation."""

import gzip
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lorex
from lorex.cli import main
from lorex.errors import LorexError
from lorex.evaluate import evaluate_with_metrics, problem_and_params, run
from lorex.tasks.digits import conv3x3, load_data, maxpool2
from lorex.tasks.idx import MNIST_FILES, read_idx

TINY = {"channels": (2, 3), "batch": 4}


def test_shapes_parameter_count_and_loss(key):
    f = lorex.tasks.make("digits")
    assert f.n_params() == 994  # the count the module docstring documents for channels=(8, 8)
    problem, params = problem_and_params(f, key)
    assert params["conv0"]["w"].shape == (3, 3, 1, 8) and params["linear"]["w"].shape == (2 * 2 * 8, 10)
    d = load_data("", None, 0)
    assert d["x_train"].shape == (1500, 8, 8) and d["x_heldout"].shape == (297, 8, 8)
    assert set(np.unique(d["y_train"]).tolist()) == set(range(10))
    batch = f.minibatch(problem, 3)
    assert batch["x"].shape == (16, 8, 8) and batch["y"].shape == (16,)
    z = f.logits(params, f._images(batch["x"]))
    assert z.shape == (16, 10)
    # the loss is the mean softmax cross-entropy of the minibatch, computed independently here
    zn = np.asarray(z, np.float64)
    logp = zn - np.log(np.exp(zn).sum(axis=1, keepdims=True))
    expected = -np.mean(logp[np.arange(16), np.asarray(batch["y"])])
    np.testing.assert_allclose(float(f.loss(params, batch)), expected, rtol=1e-5)
    # the bare problem's loss is over the whole training part (deterministic), summed chunk by chunk: it equals the
    # mean over all 1500 images at once, and the held-out metrics equal those over all 297 held-out images
    full = float(f.loss(params, problem))
    assert full == float(f.loss(params, problem))

    def at_once(x, y):
        zn = np.asarray(f.logits(params, f._images(x)), np.float64)
        logp = zn - np.log(np.exp(zn).sum(axis=1, keepdims=True))
        return -np.mean(logp[np.arange(len(y)), y]), np.mean(zn.argmax(axis=1) == y)

    np.testing.assert_allclose(full, at_once(d["x_train"], d["y_train"])[0], rtol=1e-5)
    m = f.metrics(params, problem)
    np.testing.assert_allclose([float(m["heldout_loss"]), float(m["accuracy"])],
                               at_once(d["x_heldout"], d["y_heldout"]), rtol=1e-5)


def test_conv_and_pool_match_references(key):
    x = jax.random.normal(key, (2, 5, 5, 3))
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 4))
    b = jnp.arange(4.0)
    ref = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
    np.testing.assert_allclose(conv3x3(x, w, b), ref, rtol=1e-5, atol=1e-5)
    p = maxpool2(x)
    assert p.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(p[0, 1, 0, 2], x[0, 2:4, 0:2, 2].max())


def test_minibatches_differ_by_step_and_problem_and_are_reproducible(key):
    f = lorex.tasks.make("digits", **TINY)
    p1, p2 = f.sample(jax.random.PRNGKey(1)), f.sample(jax.random.PRNGKey(2))
    a, b, c = f.minibatch(p1, 0)["y"], f.minibatch(p1, 1)["y"], f.minibatch(p2, 0)["y"]
    big = lorex.tasks.make("digits", batch=64)
    assert not np.array_equal(big.minibatch(p1, 0)["x"], big.minibatch(p1, 1)["x"])
    assert not np.array_equal(big.minibatch(p1, 0)["x"], big.minibatch(p2, 0)["x"])
    np.testing.assert_array_equal(a, f.minibatch(p1, 0)["y"])
    assert a.shape == b.shape == c.shape == (4,)


def test_through_evaluate_with_heldout_accuracy():
    f = lorex.tasks.make("digits", channels=(4,), batch=8)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    curves, metrics = evaluate_with_metrics(optax.adam(0.03), f, keys, steps=60)
    assert curves.shape == (3, 61) and np.isfinite(curves).all()
    assert set(metrics) == {"accuracy", "heldout_loss"} and metrics["accuracy"].shape == (3,)
    assert (metrics["accuracy"] > 0.5).all()  # chance is 0.1; a few dozen Adam steps already classify
    np.testing.assert_allclose(lorex.evaluate_optimizer(optax.adam(0.03), f, keys, steps=60), curves, rtol=1e-5)
    # index t is the loss of the parameters after t steps on step t's minibatch
    assert float(curves[:, -10:].mean()) < 0.5 * float(curves[:, 0].mean())
    # families without metrics report none
    _, none = evaluate_with_metrics(optax.sgd(0.1), lorex.tasks.make("rosenbrock"), keys, steps=5)
    assert none == {}


def test_minibatch_hook_is_used_and_truncation_agrees():
    f = lorex.tasks.make("digits", **TINY)
    k = jax.random.PRNGKey(5)
    a = run(optax.sgd(0.1, momentum=0.5), f, k, 8)
    b = run(optax.sgd(0.1, momentum=0.5), f, k, 8, remat=True, truncation=4)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    problem, params = problem_and_params(f, k)
    np.testing.assert_allclose(a[0], f.loss(params, f.minibatch(problem, 0)), rtol=1e-6)


# ----------------------------------------------------------------------------------------------- IDX and MNIST


def idx_bytes(a: np.ndarray, code: int) -> bytes:
    dt = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    header = bytes([0, 0, code, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.astype(dt).tobytes()


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("code", [0x08, 0x0B, 0x0D])
def test_read_idx_raw_and_gzipped(tmp_path, gz, code):
    a = (np.arange(2 * 3 * 4).reshape(2, 3, 4) * 7 % 200).astype(np.float32)
    data = idx_bytes(a, code)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, a)
    assert out.dtype == {0x08: np.uint8, 0x0B: np.int16, 0x0D: np.float32}[code]


def test_read_idx_errors(tmp_path):
    good = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4), 0x08)
    (tmp_path / "short").write_bytes(good[:-3])
    with pytest.raises(LorexError, match=r"short: truncated: 9 data bytes for shape \(3, 4\).*expected 12"):
        read_idx(tmp_path / "short")
    (tmp_path / "short.gz").write_bytes(gzip.compress(good[:10]))
    with pytest.raises(LorexError, match="short.gz: truncated header"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "magic").write_bytes(b"\x08\x03" + good[2:])
    with pytest.raises(LorexError, match="magic: bad magic number"):
        read_idx(tmp_path / "magic")
    (tmp_path / "code").write_bytes(good[:2] + b"\x07" + good[3:])
    with pytest.raises(LorexError, match="unknown IDX dtype code 0x07"):
        read_idx(tmp_path / "code")
    with pytest.raises(LorexError, match="missing: file not found") as e:
        read_idx(tmp_path / "missing")
    assert len(str(e.value).splitlines()) == 1


def write_mnist(directory, n_train=40, n_test=12, gz=True, side=28):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": rng.integers(0, 256, (n_train, side, side)), "train_labels": np.arange(n_train) % 10,
              "test_images": rng.integers(0, 256, (n_test, side, side)), "test_labels": np.arange(n_test) % 10}
    for key, stem in MNIST_FILES.items():
        data = idx_bytes(np.asarray(arrays[key]), 0x08)
        if gz:
            (directory / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_folder(tmp_path, gz):
    arrays = write_mnist(tmp_path / "mnist", gz=gz)
    f = lorex.tasks.make("digits", data=str(tmp_path / "mnist"), **TINY)
    d = load_data(str(tmp_path / "mnist"), None, 0)
    assert d["x_train"].shape == (40, 14, 14) and d["x_heldout"].shape == (12, 14, 14)  # 2×2-averaged
    np.testing.assert_allclose(d["x_train"][3, 0, 0], np.round(arrays["train_images"][3, :2, :2].mean()))
    problem, params = problem_and_params(f, jax.random.PRNGKey(0))
    assert params["linear"]["w"].shape == (3 * 3 * 3, 10)
    assert lorex.tasks.make("digits", data=str(tmp_path / "mnist")).n_params() == 1394  # as documented
    assert np.isfinite(float(f.loss(params, f.minibatch(problem, 0))))
    assert lorex.tasks.make("digits", data=str(tmp_path / "mnist"), heldout=5, **TINY).metrics(params, problem)


def test_mnist_folder_errors(tmp_path):
    write_mnist(tmp_path / "m", gz=False)
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(LorexError, match="t10k-labels-idx1-ubyte: file not found.*train-images-idx3-ubyte"):
        lorex.tasks.make("digits", data=str(tmp_path / "m"))
    write_mnist(tmp_path / "n", gz=False)
    p = tmp_path / "n" / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(LorexError, match="train-images-idx3-ubyte: truncated"):
        lorex.tasks.make("digits", data=str(tmp_path / "n"))
    with pytest.raises(LorexError, match="not a folder"):
        lorex.tasks.make("digits", data=str(tmp_path / "nowhere"))


# ----------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("overrides,field", [
    ({"bogus": 1}, r"digits\.bogus.*channels, batch, heldout"),
    ({"channels": (8, 0)}, "digits.channels"),
    ({"channels": (4, 4, 4, 4)}, "digits.channels.*at most 3 layers"),
    ({"channels": "8"}, "digits.channels"),
    ({"batch": 0}, "digits.batch"),
    ({"batch": 2.5}, "digits.batch"),
    ({"batch": True}, "digits.batch"),
    ({"heldout": 1797}, "digits.heldout"),
    ({"heldout": float("nan")}, "digits.heldout"),
    ({"steps": -1}, "digits.steps"),
    ({"split_seed": "a"}, "digits.split_seed"),
    ({"data": 3}, "digits.data"),
])
def test_field_validation(overrides, field):
    with pytest.raises(LorexError, match=field):
        lorex.tasks.make("digits", **overrides)


def test_cli_set_data_missing_is_one_line(tmp_path, capsys):
    code = main(["tune", "--task", "digits", "--set", f"data={tmp_path}", "--optimizers", "sgd"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "train-images-idx3-ubyte" in err


# ----------------------------------------------------------------------------------------------- train, benchmark


def test_tiny_train_and_benchmark_with_accuracy(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", "--task", "digits", "--set", "channels=(2,)", "--set", "batch=4", "--out", str(run_dir),
                 "--steps", "3", "--batch", "2", "--unroll", "6", "--truncation", "3", "--val-every", "3",
                 "--val-batch", "2"])
    assert code == 0
    info = json.loads((run_dir / "optimizer.json").read_text())
    assert info["meta_steps"] == 3
    assert info["config"]["input_scale"] == lorex.tasks.digits.POLICY.meta_defaults["input_scale"]
    assert np.isfinite(info["best_validation"])
    capsys.readouterr()
    code = main(["benchmark", "--task", "digits", "--set", "channels=(2,)", "--set", "batch=4", "--steps", "6",
                 "--tuning-seeds", "2", "--test-seeds", "3", "--optimizers", "sgd", "--optimizer", str(run_dir),
                 "--out", str(tmp_path / "bench")])
    assert code == 0
    out = capsys.readouterr().out
    assert "accuracy (mean ± s.e.)" in out.splitlines()[1]
    res = json.loads((tmp_path / "bench" / "results.json").read_text())["benchmark"]
    for row in res["optimizers"].values():
        acc = row["metrics"]["accuracy"]
        assert 0.0 <= acc["mean"] <= 1.0 and acc["se"] >= 0
    assert (tmp_path / "bench" / "performance_digits.png").exists()


def test_table_shows_metric_columns_only_for_families_with_metrics():
    from lorex.benchmark import format_table

    row = {"kind": "baseline", "hyperparameters": {"learning_rate": 0.1}, "diverged": 0,
           "final_loss": {"mean": 0.5, "se": 0.01}, "mean_log_loss": {"mean": -1.0, "se": 0.02}}
    result = {"task": "t", "test_seeds": 2, "steps": 5, "warnings": [], "optimizers": {"sgd": row}}
    plain = format_table(result)
    assert "accuracy" not in plain and plain.splitlines()[2].endswith("0")
    result["optimizers"]["sgd"] = {**row, "metrics": {"accuracy": {"mean": 0.9123, "se": 0.0045}}}
    lines = format_table(result).splitlines()
    assert "accuracy (mean ± s.e.)" in lines[1] and "0.9123 ± 0.0045" in lines[2]


def test_analysis_runs_see_the_minibatch_of_each_step():
    """The analysis records the learned optimizer on the same per-step minibatches as evaluation and meta-training."""

    from lorex.analysis import record_map_trajectory
    from lorex.analysis.reference import heavy_ball
    from lorex.evaluate import run

    family = lorex.tasks.make("digits", steps=3)
    hb = heavy_ball(0.05, 0.9)
    key = jax.random.PRNGKey(3)
    tr = record_map_trajectory(hb, family, key, 3)
    losses = run(optax.sgd(0.05, momentum=0.9), family, key, 3)
    assert jnp.allclose(tr.losses, losses, rtol=1e-5, atol=1e-6)
