"""`lorex reproduce` at a tiny configuration writes every figure, every number and a self-contained report."""

import html
import json
import re

import pytest

from helpers import tiny_optimizer
from lorex import lopt
from lorex.errors import LorexError
from lorex.report import analyze
from lorex.report.reproduce import reproduce

FIGURES = ("1_performance", "2_momentum", "3_clipping", "4_schedule", "5_adaptation", "6_distill")
TOP_KEYS = {"format_version", "generated_utc", "command", "argv", "arguments", "seed", "seeds", "versions", "rules",
            "notes", "findings", "tasks", "figures", "wall_seconds"}
TASK_KEYS = {"optimizer", "benchmark", "performance", "trajectories", "fixed_point", "momentum", "clipping",
             "schedule", "adaptation", "analysis_wall_seconds", "distill"}
SECTION_KEYS = {
    "performance": {"final_loss", "mean_log_loss", "diverged", "tuned_hyperparameters", "tuning_warnings",
                    "learned_vs_best"},
    "trajectories": {"n_seeds", "steps", "n_coordinates", "hidden", "features", "late_steps", "gradient_abs",
                     "alpha_eff_method", "alpha_eff_fd_step", "final_loss_median"},
    "fixed_point": {"n_seeds", "n_converged", "n_distinct", "n_stable", "tolerance", "converged", "selection", "q",
                    "stable", "spectral_radius", "distance_to_final_states", "final_state_spread",
                    "update_at_fixed_point"},
    "momentum": {"eigenvalues", "slowest", "n_unstable_modes", "alpha_eff_sum", "dominant_mode", "implied_beta",
                 "implied_alpha", "implied_timescale", "polyak"},
    "clipping": {"grid_max", "max_gradient_met", "max_positive_gradient_met", "max_negative_gradient_met",
                 "fraction", "level_pos", "level_neg", "g90_pos", "g90_neg", "update_at_grid_max",
                 "update_at_grid_min", "update_at_zero", "share_beyond_g90", "share_beyond_g90_pos",
                 "share_beyond_g90_neg", "alpha_eff_h0"},
    "schedule": {"steps", "warmup_length", "initial", "peak", "final", "peak_over_initial", "final_over_peak",
                 "alpha_eff_min"},
    "adaptation": {"grid_min", "grid_max", "points_per_arm", "method", "points_from_relaxation", "converged_pos",
                   "converged_neg", "zero_alpha_eff",
                   "fit_range", "slope_pos", "slope_neg", "slope_mean", "n_fit_pos", "n_fit_neg", "rmsprop_slope",
                   "slope_minus_rmsprop", "rmsprop_alpha_pos", "rmsprop_alpha_neg",
                   "alpha_eff_ratio_max_over_min_fit"},
}
POLYAK_KEYS = {"alpha_star", "beta_star", "beta_minus_beta_star", "alpha_over_alpha_star", "distance",
               "distance_definition"}
TINY = dict(trajectories=2, fp_seeds=16, fp_adam_steps=50, fp_newton_steps=10, clip_points=21, scurve_points=7,
            update_offsets=3, update_curves=3, relax_steps=50,
            density_bins=20)


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
    assert set(t) == TASK_KEYS
    for section, keys in SECTION_KEYS.items():
        assert set(t[section]) == keys, section
    assert set(t["momentum"]["polyak"]) == POLYAK_KEYS
    assert set(t["performance"]["learned_vs_best"]["learned"]) == {"final_loss", "mean_log_loss"}
    assert set(t["performance"]["tuned_hyperparameters"]) == {"sgd", "momentum", "rmsprop", "adam"}
    assert t["benchmark"]["test_seeds"] == 8 and t["benchmark"]["steps"] == 30
    assert t["trajectories"]["n_seeds"] == 2 and t["fixed_point"]["n_seeds"] == 16
    assert res["seed"] == 0 and res["seeds"]["tuning"] == {"linreg": 4} and res["seeds"]["test"] == {"linreg": 8}
    assert res["versions"]["jax"] and res["arguments"]["test_seeds"] == 8 and "reproduce" in res["command"]
    assert set(res["wall_seconds"]["tasks"]["linreg"]) == {"optimizer", "benchmark", "analysis", "figures", "distill"}
    assert {"surrogate", "explained_fraction", "ablations", "references"} <= set(t["distill"])
    assert {"value", "se"} <= set(t["distill"]["explained_fraction"])
    mech = [(f["task"], f["mechanism"]) for f in res["findings"]]
    assert mech == [("linreg", m) for m in analyze.MECHANISMS]
    for f in res["findings"]:
        assert set(f) == {"task", "mechanism", "present", "value", "statement", "rule"}
        assert ("present" if f["present"] else "NOT found") in f["statement"]
    # strict JSON: non-finite numbers are written as null, never as NaN/Infinity
    json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in results.json"))

    page = (out / "report.html").read_text()
    assert len(re.findall(r"src='data:image/png;base64,", page)) == len(FIGURES)
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*['"](?!data:)""", page)
    for needle in ("Findings", "momentum", "clipping", "schedule", "adaptation", html.escape(res["command"]),
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


def _numbers(beta=0.9, g90=0.1, gmax=1.0, peak_over_initial=1.0, final_over_peak=1.0, slope=-1.0):
    mode = {"index": 0, "eigenvalue_re": beta, "eigenvalue_im": 0.0, "abs": beta, "timescale": 10.0,
            "alpha_re": 1.0, "alpha_im": 0.0}
    return {
        "fixed_point": {"stable": True, "spectral_radius": beta, "n_converged": 10, "n_seeds": 10},
        "momentum": {"implied_beta": beta, "implied_alpha": 1.0, "implied_timescale": 10.0, "polyak": None,
                     "dominant_mode": mode},
        "clipping": {"g90_pos": g90, "g90_neg": g90, "max_gradient_met": gmax, "share_beyond_g90": 0.1},
        "schedule": {"peak_over_initial": peak_over_initial, "final_over_peak": final_over_peak,
                     "warmup_length": 3},
        "adaptation": {"slope_mean": slope, "slope_pos": slope, "slope_neg": slope, "fit_range": [0.1, 1.0],
                       "converged_pos": 5, "converged_neg": 5, "points_per_arm": 5},
    }


@pytest.mark.parametrize("kw,expected", [
    ({}, {"momentum": True, "clipping": True, "schedule": False, "adaptation": True}),
    ({"beta": 0.4, "g90": 2.0, "peak_over_initial": 1.3, "slope": -0.1},
     {"momentum": False, "clipping": False, "schedule": True, "adaptation": False}),
    ({"final_over_peak": 0.7, "beta": None}, {"momentum": False, "schedule": True}),
])
def test_findings_rules(kw, expected):
    got = {f["mechanism"]: f["present"] for f in analyze.findings("t", _numbers(**kw))}
    for k, v in expected.items():
        assert got[k] is v, k


@pytest.mark.slow
def test_retrain_trains_then_reuses(tmp_path):
    kw = dict(tasks=["linreg"], retrain=True, test_seeds=8, tuning_seeds=4, steps=30, progress=False,
              baselines=("momentum", "rmsprop", "adam"), analysis_options=TINY,
              train_overrides=dict(steps=5, hidden=8, batch=4, val_every=5, checkpoint_every=5))
    out = reproduce(tmp_path / "run", **kw)
    opt = out / "optimizers" / "linreg"
    assert (opt / "optimizer.json").exists()
    stamp = (opt / "params.npz").stat().st_mtime_ns
    reproduce(tmp_path / "run", **kw)  # the finished run is reused, not retrained
    assert (opt / "params.npz").stat().st_mtime_ns == stamp
    res = json.loads((out / "results.json").read_text())
    assert res["tasks"]["linreg"]["optimizer"]["source"] == "retrained"
    assert res["tasks"]["linreg"]["optimizer"]["lopt_config"]["hidden"] == 8
    with pytest.raises(LorexError, match="another configuration"):
        reproduce(tmp_path / "run", **{**kw, "train_overrides": dict(steps=6, hidden=8, batch=4)})
