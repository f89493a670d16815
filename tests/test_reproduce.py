"""`lorex reproduce` at a tiny configuration writes every figure, every number and a self-contained report."""

import html
import json
import pickle
import re

import pytest

from helpers import die_at_once, progress_slot, tiny_optimizer
from lorex import lopt
from lorex.errors import LorexError, RunError
from lorex.report import analyze
from lorex.report import reproduce as reproduce_module
from lorex.report.reproduce import reproduce

FIGURES = ("1_performance", "2_momentum", "3_clipping", "4_schedule", "5_adaptation", "6_distill")
TOP_KEYS = {"format_version", "generated_utc", "command", "argv", "arguments", "seed", "seeds", "versions", "rules",
            "notes", "findings", "agreement", "tasks", "figures", "wall_seconds"}
TASK_KEYS = {"optimizer", "benchmark", "performance", "evidence", "momentum", "clipping", "schedule", "adaptation",
             "analysis_wall_seconds", "distill"}
SECTION_KEYS = {
    "performance": {"final_loss", "mean_log_loss", "diverged", "tuned_hyperparameters", "tuning_warnings",
                    "learned_vs_best"},
    "evidence": {"n_runs", "steps", "n_coordinates", "hidden", "converged_runs", "gradient_abs", "zero_gradient_met",
                 "zero_input_ratio", "zero_input_reason", "alpha_eff_method", "final_loss_median", "features"},
    "schedule": {"alpha_eff_method", "steps", "autonomous", "trajectories", "zero_input_ratio"},
    "adaptation": {"trajectories", "s_curve"},
}
FINDING_KEYS = {"task", "mechanism", "verdict", "value", "interval_95", "interval_kind", "threshold", "direction",
                "margin", "decisive", "reason", "measure", "statement", "sensitivity", "rule"}
TINY = dict(trajectories=2, fp_seeds=16, clip_points=21, scurve_points=5, update_offsets=3, update_curves=3,
            relax_steps=50)


def test_reproduce_tiny_writes_everything(tmp_path):
    opt = tiny_optimizer(tmp_path / "opt")
    out = reproduce(tmp_path / "run", tasks=["linreg"], seed=0, test_seeds=8, tuning_seeds=4, progress=False,
                    steps=30, optimizers={"linreg": opt}, analysis_options=TINY)
    assert out == tmp_path / "run"
    for stem in FIGURES:
        for ext in ("png", "pdf"):
            p = out / "figures" / f"linreg_{stem}.{ext}"
            assert p.exists() and p.stat().st_size > 1000, p

    res = json.loads((out / "results.json").read_text())
    assert set(res) == TOP_KEYS
    assert set(res["tasks"]) == {"linreg"}
    t = res["tasks"]["linreg"]
    assert set(t) == TASK_KEYS  # one optimizer given: no population section, no paper-preset one
    assert res["agreement"] == []
    for section, keys in SECTION_KEYS.items():
        assert set(t[section]) == keys, section
    assert set(t["performance"]["learned_vs_best"]["learned"]) == {"final_loss", "mean_log_loss"}
    assert set(t["performance"]["tuned_hyperparameters"]) == {"sgd", "momentum", "rmsprop", "adam"}
    assert t["benchmark"]["test_seeds"] == 8 and t["benchmark"]["steps"] == 30
    assert t["evidence"]["n_runs"] == 2 and t["evidence"]["steps"] == 30
    assert res["seed"] == 0 and res["seeds"]["tuning"] == {"linreg": 4} and res["seeds"]["test"] == {"linreg": 8}
    assert res["versions"]["jax"] and res["arguments"]["test_seeds"] == 8 and "reproduce" in res["command"]
    assert set(res["wall_seconds"]["tasks"]["linreg"]) == {"optimizer", "benchmark", "analysis", "figures", "population",
                                                           "distill"}
    assert {"surrogate", "explained_fraction", "ablations", "references"} <= set(t["distill"])
    assert {"value", "se"} <= set(t["distill"]["explained_fraction"])
    mech = [(f["task"], f["mechanism"]) for f in res["findings"]]
    assert mech == [("linreg", m) for m in analyze.MECHANISMS]
    for f in res["findings"]:
        assert set(f) == FINDING_KEYS
        assert f["verdict"] in ("present", "absent", "not applicable")
        assert f["verdict"] in f["statement"]
        assert (f["reason"] is not None) == (f["verdict"] == "not applicable")
        assert (f["margin"] is None) == (f["verdict"] == "not applicable")
        assert set(f["sensitivity"]) == {"threshold_x0.5", "threshold_x1.5"}
    # strict JSON: non-finite numbers are written as null, never as NaN/Infinity
    json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in results.json"))

    page = (out / "report.html").read_text()
    assert len(re.findall(r"src='data:image/png;base64,", page)) == len(FIGURES)
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*['"](?!data:)""", page)
    for needle in ("Findings", "Sensitivity to the thresholds", "95 % interval", "momentum", "clipping", "schedule", "adaptation", html.escape(res["command"]),
                   res["versions"]["jax"], "<table"):
        assert needle in page
    for ext in ("png", "pdf"):  # matplotlib's default metadata names its web site; ours must not
        data = (out / "figures" / f"linreg_2_momentum.{ext}").read_bytes()
        assert b"http" not in data


def test_missing_shipped_optimizer_names_task_and_retrain(tmp_path, monkeypatch):
    monkeypatch.setattr(lopt, "PRETRAINED_DIR", tmp_path / "none")
    with pytest.raises(LorexError) as e:
        reproduce(tmp_path / "run", tasks=["two_moons"], progress=False)
    assert "two_moons" in str(e.value) and "--retrain" in str(e.value)
    assert not (tmp_path / "run").exists()


def test_bad_analysis_option(tmp_path):
    with pytest.raises(LorexError, match="analysis_options"):
        reproduce(tmp_path / "run", tasks=["linreg"], progress=False, optimizers={"linreg": tmp_path},
                  analysis_options={"fixed_point_seeds": 3})


@pytest.mark.slow
def test_retrain_trains_then_reuses(tmp_path):
    kw = dict(tasks=["linreg"], retrain=True, test_seeds=8, tuning_seeds=4, steps=30, progress=False,
              baselines=("momentum", "rmsprop", "adam"), analysis_options=TINY, members=2,
              train_overrides=dict(steps=5, hidden=8, batch=4, val_every=5, checkpoint_every=5, meta_lr=0.01))
    out = reproduce(tmp_path / "run", **kw)
    opt = out / "optimizers" / "linreg" / "seed-0"
    assert (opt / "optimizer.json").exists() and (opt.parent / "seed-1" / "optimizer.json").exists()
    stamp = (opt / "params.npz").stat().st_mtime_ns
    reproduce(tmp_path / "run", **kw)  # the finished run is reused, not retrained
    assert (opt / "params.npz").stat().st_mtime_ns == stamp
    res = json.loads((out / "results.json").read_text())
    assert res["tasks"]["linreg"]["optimizer"]["source"] == "retrained"
    assert res["tasks"]["linreg"]["optimizer"]["lopt_config"]["hidden"] == 8
    assert [m["seed"] for m in res["tasks"]["linreg"]["population"]["members"]] == [0, 1]
    with pytest.raises(LorexError, match="another configuration"):
        reproduce(tmp_path / "run", **{**kw, "train_overrides": dict(steps=6, hidden=8, batch=4)})


def test_reproduce_tiny_digits_covers_the_fourth_task(tmp_path):
    """The shipped digits optimizer through every stage on a tiny CNN: figures, findings, held-out accuracy."""
    out = reproduce(tmp_path / "run", tasks=["digits"], seed=0, test_seeds=4, tuning_seeds=2, members=1,
                    progress=False, steps=12, analysis_options=TINY, baselines=("momentum", "adam"),
                    task_overrides={"digits": {"channels": (2,), "batch": 4}})
    for stem in FIGURES:
        assert (out / "figures" / f"digits_{stem}.png").stat().st_size > 1000, stem
    res = json.loads((out / "results.json").read_text())
    assert set(res["tasks"]) == {"digits"} and res["arguments"]["task_overrides"] == {"digits": {"channels": [2],
                                                                                                 "batch": 4}}
    t = res["tasks"]["digits"]
    assert TASK_KEYS <= set(t)
    assert [f["mechanism"] for f in res["findings"]] == list(analyze.MECHANISMS)
    rows = t["benchmark"]["optimizers"]
    assert set(rows) == {"learned", "adam", "momentum"}
    for name, row in rows.items():  # the task's own metric, held-out accuracy, for every optimizer
        assert 0.0 <= row["metrics"]["accuracy"]["mean"] <= 1.0, name
    assert "accuracy" in (out / "report.html").read_text()


def test_reproduce_task_overrides_errors(tmp_path):
    with pytest.raises(LorexError, match="task_overrides.*'digits'.*not among"):
        reproduce(tmp_path / "run", tasks=["linreg"], task_overrides={"digits": {"batch": 4}}, progress=False)
    with pytest.raises(LorexError, match=r"digits\.bogus"):
        reproduce(tmp_path / "run", tasks=["digits"], task_overrides={"digits": {"bogus": 4}}, progress=False)


def _without_times(x):
    """``x`` without its wall times (every key that names seconds), which differ from run to run."""
    if isinstance(x, dict):
        return {k: _without_times(v) for k, v in x.items() if "seconds" not in k}
    if isinstance(x, list):
        return [_without_times(v) for v in x]
    return x


def test_worker_processes_give_the_same_report(tmp_path):
    """Two tasks reported side by side in two worker processes: the same numbers, findings and figures as in one."""
    opt = tiny_optimizer(tmp_path / "opt")
    kw = dict(tasks=["rosenbrock", "linreg"], seed=0, test_seeds=4, tuning_seeds=2, progress=False, steps=12,
              analysis_options=TINY, baselines=("momentum", "adam"), optimizers={"linreg": opt, "rosenbrock": opt})
    one = json.loads((reproduce(tmp_path / "one", jobs=1, **kw) / "results.json").read_text())
    two = json.loads((reproduce(tmp_path / "two", jobs=2, **kw) / "results.json").read_text())
    assert one["arguments"].pop("jobs") == 1 and two["arguments"].pop("jobs") == 2
    assert "jobs=2" in two["command"]
    for res in (one, two):
        for key in ("generated_utc", "command", "argv"):
            res.pop(key)
        res["arguments"].pop("out")
    assert list(two["tasks"]) == ["rosenbrock", "linreg"]  # the order asked for, not the order they finished in
    assert _without_times(two) == _without_times(one)
    for task, kinds in two["figures"].items():
        for rel in kinds["momentum"]:
            assert (tmp_path / "two" / rel).stat().st_size > 1000, rel
    with pytest.raises(LorexError, match="jobs"):
        reproduce(tmp_path / "bad", jobs=0, **kw)


def test_errors_survive_the_trip_back_from_a_worker(tmp_path):
    """A task that fails in a worker process fails the reproduction with lorex's own one-line error."""
    err = LorexError("jobs", "got 0", ["1", "2"])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is LorexError and str(back) == str(err) and back.field == "jobs"
    back = pickle.loads(pickle.dumps(RunError("run folder", "gone")))
    assert type(back) is RunError and str(back) == "run folder: gone"
    missing = tmp_path / "no-such-optimizer"
    with pytest.raises(LorexError, match="no-such-optimizer"):
        reproduce(tmp_path / "run", tasks=["rosenbrock", "linreg"], jobs=2, progress=False,
                  optimizers={"rosenbrock": missing, "linreg": missing})


def test_a_worker_that_dies_is_a_one_line_error(tmp_path, monkeypatch):
    """A worker process killed mid-task (e.g. out of memory) ends the run with lorex's error, suggesting fewer
    jobs."""
    monkeypatch.setattr(reproduce_module, "_report_task", die_at_once)
    with pytest.raises(RunError, match="worker process.*--jobs 1"):
        reproduce(tmp_path / "run", tasks=["rosenbrock", "linreg"], jobs=2, progress=False)
    assert not (tmp_path / "run" / "results.json").exists()


def test_workers_bars_and_messages_are_drawn_by_the_main_process(monkeypatch, capsys):
    """Two workers at once: each takes a line of its own, and their bars and messages reach the main process's
    stderr whole (one process draws them all, so they cannot overwrite each other). On a terminal narrower than a
    finished bar (the bars here are 30 columns wide), the line it leaves is still whole."""
    monkeypatch.setattr(reproduce_module, "_report_task", progress_slot)
    got = reproduce_module._report_tasks(None, ["rosenbrock", "linreg"], jobs=2)
    assert len({g["pid"] for g in got}) == 2
    assert sorted(g["slot"] for g in got) == [0, 1]
    err = capsys.readouterr().err
    for task in ("rosenbrock", "linreg"):
        assert f"message from {task}\n" in err
        assert re.search(rf"bar of {task}: 100%.*3/3.*task={task}", err), err
