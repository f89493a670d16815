"""`lorex distill`: the mechanistic surrogate recovers known optimizers, is a valid optax transformation, and the
whole distillation runs end to end at a tiny size."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import toy_surrogate
from lorex import lopt, tasks
from lorex.analysis import reference
from lorex.cli import main
from lorex.distill import (
    build_surrogate,
    distill,
    distill_figure,
    distill_html,
    explained_fraction,
    format_table,
    surrogate_optimizer,
)
from lorex import mechanisms as M
from lorex.distill.lens import lens_from_analysis, reference_lens_of
from lorex.distill.surrogate import fit_clipping, select_modes



GEO = np.geomspace(1e-3, 10.0, 21)
CLIP_GRID = np.concatenate([-GEO[::-1], [0.0], GEO])


def _gradients(S=4, T=30, N=16, lo=1e-2, hi=10.0, decay=0.8):
    """Synthetic runs: coordinate scales from ``lo`` to ``hi``, random signs, shrinking ``decay``× per step."""
    rng = np.random.default_rng(0)
    c = np.exp(rng.uniform(np.log(lo), np.log(hi), (S, 1, N)))
    return (c * np.sign(rng.normal(size=(S, T, N))) * decay ** np.arange(T)[None, :, None]).astype(np.float32)
PARAMS = {"a": jnp.ones(3), "b": jnp.zeros((2, 2))}


def _compare(tx, ref, steps=25, scale=0.3):
    s1, s2 = tx.init(PARAMS), ref.init(PARAMS)
    worst = 0.0
    for k in range(steps):
        key = jax.random.PRNGKey(k)
        g = jax.tree_util.tree_map(lambda x, key=key: scale * jax.random.normal(key, x.shape), PARAMS)
        u1, s1 = tx.update(g, s1, PARAMS)
        u2, s2 = ref.update(g, s2, PARAMS)
        for a, b in zip(jax.tree_util.tree_leaves(u1), jax.tree_util.tree_leaves(u2)):
            worst = max(worst, float(jnp.max(jnp.abs(a - b) / (jnp.abs(b) + 1e-6))))
    return worst


def test_surrogate_of_heavy_ball_is_heavy_ball():
    hb = reference.heavy_ball(0.3, 0.8)
    an = M.analyze(hb, M.replay(hb, _gradients()), fp_seeds=16, scurve_points=7, relax_steps=100)
    sur, _ = build_surrogate(lens_from_analysis(hb, an), 30)
    assert np.allclose(sur.betas, [0.8]) and np.allclose(sur.weights, [0.3])
    assert sur.clip_kind == "none" and np.allclose(sur.schedule, 1.0) and np.allclose(sur.adapt_ratio, 1.0)
    assert an.momentum.heavy_ball["beta"] == pytest.approx(0.8)
    assert _compare(surrogate_optimizer(sur), optax.sgd(0.3, momentum=0.8)) < 1e-5


@pytest.mark.parametrize("name,hp,ref,h_lin,tol", [
    pytest.param("rmsprop", {"learning_rate": 0.01, "decay": 0.9}, optax.rmsprop(0.01, decay=0.9), [0.01, 0.0], 2e-2,
                 marks=pytest.mark.xfail(strict=True, reason=(
                     "known, open: built from recorded runs (lorex.mechanisms), the lens's update function at h0 "
                     "holds RMSProp's first step from a zero second moment, u = −α sign(g)/√(1 − ρ), which the "
                     "surrogate's clipping fit takes for a hard clip; the surrogate is rebuilt as a trainable "
                     "mechanism family in the distillation issue"))),
    ("adam", {"learning_rate": 0.01, "b1": 0.9}, optax.adam(0.01, b1=0.9), [0.0, 0.01, 30.0], 1e-3),
])
def test_surrogate_of_adaptive_references(name, hp, ref, h_lin, tol):
    """Known answers beyond heavy ball: RMSProp's and Adam's own maps distil back into (nearly) themselves."""
    rmap = {"rmsprop": reference.rmsprop(0.01, 0.9, 1e-8, eps_in_sqrt=True), "adam": reference.adam(0.01, 0.9)}[name]
    rng = np.random.default_rng(0)  # gradients log-uniform over 1e-3..10: the grids span the same range
    grads = (np.sign(rng.normal(size=(4, 30, 16))) * np.exp(rng.uniform(np.log(1e-3), np.log(10), (4, 30, 16))))
    lens, _ = reference_lens_of(name, hp, M.replay(rmap, grads.astype(np.float32)), h_lin=h_lin)
    sur, info = build_surrogate(lens, 30)
    assert sur.clip_kind == "none"
    assert info["adaptation"]["rate"]["bias_correction"] == (name == "adam")
    assert _compare(surrogate_optimizer(sur), ref) < tol


def test_surrogate_is_a_valid_optax_transformation():
    s = toy_surrogate()
    tx = surrogate_optimizer(s)
    state = tx.init(PARAMS)
    g = jax.tree_util.tree_map(jnp.ones_like, PARAMS)
    _, state2 = jax.jit(tx.update)(g, state, PARAMS)
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(state2)
    assert all(a.shape == b.shape for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(state2)))
    chained = optax.chain(optax.clip_by_global_norm(10.0), tx)
    cs = chained.init(PARAMS)
    p = PARAMS
    for _ in range(3):
        up, cs = chained.update(g, cs, p)
        p = optax.apply_updates(p, up)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(p))
    # the complex mode is folded exactly: compare one coordinate with a direct complex recurrence
    gs = [0.3, -1.2, 2.0, 0.1]
    st = tx.init(jnp.zeros(()))
    m, nu = np.zeros(3, complex), 0.0
    for t, gv in enumerate(gs):
        u1, st = tx.update(jnp.asarray(gv, jnp.float32), st)
        m = s.betas * m + 0.5 * np.tanh(gv / 0.5)
        nu = 0.9 * nu + 0.1 * gv * gv
        r = np.sqrt(nu / (1 - 0.9 ** (t + 1)))
        a = np.exp(np.interp(np.log(r), np.log(s.adapt_grid), np.log(s.adapt_ratio)))
        assert float(u1) == pytest.approx(-s.schedule[t] * a * np.sum(s.weights * m).real, rel=1e-4)


def test_ablations_keep_alpha_eff():
    s = toy_surrogate()
    for mech in ("momentum", "clipping", "schedule", "adaptation"):
        a = s.ablate(mech)
        assert a.alpha_eff == pytest.approx(s.alpha_eff)
    assert s.ablate("momentum").betas.tolist() == [0j]
    with pytest.raises(ValueError):
        s.ablate("nope")


def test_select_modes_folds_pairs_and_keeps_alpha_eff():
    lam = np.array([0.9 + 0.1j, 0.9 - 0.1j, 0.5, 0.05, 1.2])
    al = np.array([0.2 + 0.05j, 0.2 - 0.05j, 0.3, 0.01, 0.02])
    betas, weights, info = select_modes(lam, al, 100)
    assert betas[0] == pytest.approx(0.9 + 0.1j) and weights[0] == pytest.approx(0.4 + 0.1j)
    assert np.sum(weights.real) == pytest.approx(np.sum(al).real)  # the β = 0 residual keeps Σα
    assert info["n_unstable"] == 1 and betas[-1] == 0


@pytest.mark.parametrize("kind", ["none", "tanh", "hard"])
def test_fit_clipping_recovers_the_shape(kind):
    g = CLIP_GRID
    u = {"none": -0.3 * g, "tanh": -0.7 * np.tanh(g / 0.2), "hard": -0.7 * np.clip(g / 0.2, -1, 1)}[kind] + 0.01
    got, s, info = fit_clipping(g, u)
    assert got == kind
    if kind != "none":
        assert s == pytest.approx(0.2, rel=0.05) and info["error"] < 0.01


def test_explained_fraction_on_synthetic_numbers():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=64)
    b, ll = 1.0 + noise, 0.0 + noise + 0.1 * rng.normal(size=64)
    s = b - 0.75 * (b - ll)
    ef = explained_fraction(b, s, ll, n_boot=500)
    assert ef["value"] == pytest.approx(0.75)
    assert 0 <= ef["se"] < 0.01 and ef["ci95"][0] <= 0.75 <= ef["ci95"][1]
    s2 = b - 0.5 + 0.3 * rng.normal(size=64)  # a noisier surrogate has a larger s.e.
    assert explained_fraction(b, s2, ll, n_boot=500)["se"] > ef["se"]
    assert explained_fraction(b, np.r_[s[:-1], np.inf], ll)["value"] is None


def _tiny_optimizer(hidden=8):
    cfg = lopt.LOptConfig(hidden=hidden)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    params = lopt.init_params(k1, cfg)
    params["readout"]["w"] = jax.random.normal(k2, (hidden,)) / hidden**0.5
    params["h0"] = 0.1 * jax.random.normal(k3, (hidden,))
    return params, cfg


def _fake_benchmark(steps, test_seeds):
    """A precomputed benchmark as `run_benchmark` returns it (only what distill reads), tuned by hand."""
    def row(hp, mll):
        return {"kind": "baseline", "hyperparameters": hp, "mean_log_loss": {"mean": mll, "se": 0.1}}

    return {"task": "linreg", "steps": steps, "seed": 0, "tuning_seeds": 4, "test_seeds": test_seeds,
            "optimizers": {"sgd": row({"learning_rate": 1.0}, -3.0),
                           "adam": row({"learning_rate": 0.1, "b1": 0.9}, -4.0)},
            "warnings": [], "comparison": {}}




def test_distill_end_to_end_tiny(tmp_path):
    family = tasks.make("linreg", steps=30)
    from lorex.distill.bound import FamilyConfig

    fc = FamilyConfig(steps=2, val_every=1, val_batch=4, seeds=(0,), batch=4)
    r = distill(_tiny_optimizer(), family, test_seeds=8, benchmark=_fake_benchmark(30, 8), progress=False,
                analysis_runs=2, n_boot=200, bound=True, family_config=fc)
    ext, vs = r["extracted"], r["extracted_vs_trained"]  # the extracted rung beside the ladder
    assert set(ext["gates"]) == set(r["surrogate"]["gates"]) and ext["rejected"] == r["surrogate"]["rejected"]
    assert vs["meta_steps"] == 2 and vs["per_parameter"]
    assert {"task", "optimizer", "steps", "seed", "test_seeds", "tuning_seeds", "surrogate", "performance",
            "explained_fraction", "ablations", "references", "learned_lens", "notes", "findings",
            "wall_seconds"} <= set(r)
    assert set(r["surrogate"]) == {"momentum", "clipping", "schedule", "adaptation", "parameters", "gates",
                                   "gate_thresholds", "applicable", "rejected", "not_applicable_reason"}
    assert set(r["surrogate"]["gates"]) == {"momentum", "clipping", "schedule", "adaptation"}
    assert r["performance"]["best_baseline"] == "adam"
    assert {"value", "se", "ci95", "method"} <= set(r["explained_fraction"])
    assert [a["removed"] for a in r["ablations"] if a["model"] == "surrogate"] == [
        "momentum", "clipping", "schedule", "adaptation"]
    assert len([a for a in r["ablations"] if a["model"] == "learned"]) == 4
    assert set(r["references"]) == {"adam"}  # sgd is a baseline but not a reference
    for ref in r["references"].values():
        assert {"state_layout", "momentum", "clipping", "schedule", "adaptation", "surrogate"} <= set(ref)
    assert len(r["performance"]["rows"]["surrogate"]["curve_mean"]) == 31
    json.dumps(r, allow_nan=False)
    assert r["findings"] and "distill" in format_table(r) and "extracted" in format_table(r)
    h = distill_html(r)
    assert "<table>" in h and "<script" not in h.lower() and "http" not in h
    paths = distill_figure(r, tmp_path / "distill_linreg")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and paths[0].stat().st_size > 1000


def test_distill_reuses_the_benchmark_runs():
    """Given the benchmark's test runs, distill reads the learned optimizer and the tuned baselines from them
    instead of running them again, and reports what running them gives."""
    from lorex.benchmark import run_benchmark

    family = tasks.make("linreg", steps=20)
    params, cfg = _tiny_optimizer()
    bench, runs = run_benchmark(family, tuning_seeds=4, test_seeds=8, optimizers=("momentum", "adam"),
                                learned={"learned": lopt.learned_optimizer(params, cfg)}, progress=False,
                                return_runs=True)
    assert set(runs) == {"momentum", "adam", "learned"} and runs["adam"].losses.shape == (8, 21)
    kw = dict(benchmark=bench, progress=False, analysis_runs=2, n_boot=200, references=False)
    reused = distill((params, cfg), family, benchmark_runs=runs, **kw)
    ran = distill((params, cfg), family, **kw)
    best = reused["performance"]["best_baseline"]
    for name in ("learned", "surrogate", best):
        a, b = (r["performance"]["rows"][name] for r in (reused, ran))
        assert a["mean_log_loss"] == pytest.approx(b["mean_log_loss"], rel=1e-5)
        assert a["se"] == pytest.approx(b["se"], rel=1e-4)
    for name in ("learned", best):
        assert reused["performance"]["rows"][name]["mean_log_loss"] == pytest.approx(
            bench["optimizers"][name]["mean_log_loss"]["mean"], rel=1e-12)
    for a, b in zip(reused["ablations"], ran["ablations"], strict=True):
        assert a["name"] == b["name"] and a["mean_log_loss"] == pytest.approx(b["mean_log_loss"], rel=1e-5)


@pytest.mark.parametrize("argv,field", [
    (["distill", "--optimizer", "no_such_optimizer"], "optimizer"),
    (["distill", "--optimizer", "linreg", "--task", "nope"], "task"),
])
def test_distill_cli_bad_input_exits_2_with_one_line(argv, field, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lorex: error:") and field in err


def test_distill_cli_needs_a_task_when_the_optimizer_names_none(tmp_path, capsys):
    params, cfg = _tiny_optimizer()
    lopt.save_optimizer(tmp_path / "opt", params, cfg)
    assert main(["distill", "--optimizer", str(tmp_path / "opt")]) == 2
    assert "--task" in capsys.readouterr().err
