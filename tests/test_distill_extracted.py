"""The extracted surrogate, done soundly: fit-quality gates reject bad fits (and keep good ones), the surrogate as a
member of the mechanism family, and the round trip (family member → lorex.mechanisms → extraction → family)."""

import numpy as np
import pytest

from lorex import mechanisms as M
from lorex.analysis import reference
from lorex.distill import surrogate as S
from lorex.distill.lens import build_surrogate, lens_from_analysis


def _gradients(S_=4, T=30, N=16, lo=1e-2, hi=10.0, decay=0.8):
    rng = np.random.default_rng(0)
    c = np.exp(rng.uniform(np.log(lo), np.log(hi), (S_, 1, N)))
    return (c * np.sign(rng.normal(size=(S_, T, N))) * decay ** np.arange(T)[None, :, None]).astype(np.float32)


@pytest.fixture(scope="module")
def heavy_ball_lens():
    hb = reference.heavy_ball(0.3, 0.8)
    an = M.analyze(hb, M.replay(hb, _gradients()), fp_seeds=16, scurve_points=7, relax_steps=100)
    return lens_from_analysis(hb, an)


def test_good_fits_pass_every_gate(heavy_ball_lens):
    sur, parts = build_surrogate(heavy_ball_lens, 30)
    assert parts["applicable"] and parts["rejected"] == []
    assert all(g["passed"] and g["reason"] is None for g in parts["gates"].values())
    assert np.allclose(sur.betas, [0.8]) and np.allclose(sur.weights, [0.3])


def test_a_degenerate_schedule_normalisation_is_rejected(heavy_ball_lens):
    auto = np.asarray(heavy_ball_lens.auto_alpha, np.float64).copy()
    auto[:5] *= 4508.0  # σ(0) ≈ 4508, as the Rosenbrock surrogate had
    sur, parts = build_surrogate(heavy_ball_lens._replace(auto_alpha=auto), 30)
    g = parts["gates"]["schedule"]
    assert not g["passed"] and "degenerate" in g["reason"] and g["value"] == pytest.approx(4508.0, rel=1e-3)
    assert "schedule" in parts["rejected"] and np.allclose(sur.schedule, 1.0)  # dropped to σ ≡ 1
    assert "rejected" in parts["schedule"]


def test_a_floored_adaptation_is_rejected(heavy_ball_lens):
    lens = heavy_ball_lens
    a = np.asarray(lens.sc_alpha, np.float64).copy()
    g = np.abs(np.asarray(lens.sc_grads, np.float64))
    low = g <= np.quantile(np.unique(g), 0.6)
    a[low] = -abs(a[low])  # α_eff(h*(g*)) < 0 at 60 % of the S-curve magnitudes (both arms)
    sur, parts = build_surrogate(lens._replace(sc_alpha=a), 30)
    g = parts["gates"]["adaptation"]
    assert not g["passed"] and "floored" in g["reason"] and g["value"] > 0.5
    assert np.allclose(sur.adapt_ratio, 1.0)  # a ≡ 1


def test_gate_functions_on_planted_numbers():
    bad = S.gate_adaptation({"derived": True, "n_floored": 0, "n_points": 35, "rate": {"rms_log_error": 174.0}})
    assert not bad["passed"] and "174" in bad["reason"]
    assert S.gate_adaptation({"derived": True, "n_floored": 21, "n_points": 35, "rate": {}})["passed"] is False
    assert S.gate_adaptation({"derived": True, "n_floored": 1, "n_points": 35, "rate": {"rms_log_error": 0.1}})[
        "passed"]
    assert not S.gate_clipping({"chosen": "tanh", "error": 0.9})["passed"]
    assert S.gate_clipping({"chosen": "tanh", "error": 0.05})["passed"]
    assert not S.gate_schedule(np.array([1.0, -0.5, 1.0]), True)["passed"]
    assert S.gate_schedule(np.linspace(3.0, 1.0, 10), True)["passed"]
    assert not S.gate_momentum({"alpha_eff": -0.1})["passed"]


def test_a_noisy_update_function_fails_the_clipping_gate(heavy_ball_lens):
    rng = np.random.default_rng(1)
    lens = heavy_ball_lens
    noisy = rng.normal(size=np.shape(lens.clip_updates)) * np.max(np.abs(lens.clip_updates))
    sur, parts = build_surrogate(lens._replace(clip_updates=noisy), 30)
    assert not parts["gates"]["clipping"]["passed"] and sur.clip_kind == "none"


# ------------------------------------------------------------------------------ the surrogate as a family member


def _updates(tx, grads):
    import jax.numpy as jnp

    p = {"w": jnp.zeros(grads.shape[1], jnp.float32)}
    s = tx.init(p)
    out = []
    for g in grads:
        u, s = tx.update({"w": jnp.asarray(g, jnp.float32)}, s, p)
        out.append(np.asarray(u["w"], np.float64))
    return np.array(out)


def test_heavy_ball_surrogate_maps_to_the_same_family_member():
    import optax

    from lorex.distill import family as F
    from lorex.distill.extracted import to_family

    sur = S.Surrogate(np.array([0.8 + 0j]), np.array([0.3 + 0j]), "none", float("inf"), np.ones(21), np.ones(1),
                      np.ones(1), 0.9)
    params, rec = to_family(sur, 20)
    assert rec["approximations"] == []
    g = np.random.default_rng(0).normal(size=(20, 5))
    np.testing.assert_allclose(_updates(F.mechanism_family(params, 20), g), _updates(optax.sgd(0.3, momentum=0.8), g),
                               rtol=1e-4, atol=1e-7)


def test_power_law_adaptation_and_log_linear_schedule_map_exactly():
    """Adaptation a(r) = 0.5/r (p = ½), σ(t) = exp(−0.02 t) (log-linear: 5 knots hold it), two real modes: the family
    member's updates are the surrogate's."""
    from lorex.distill import family as F
    from lorex.distill.extracted import to_family

    T = 21
    grid = np.geomspace(1e-4, 1e3, 15)
    sur = S.Surrogate(np.array([0.9 + 0j, 0.5 + 0j]), np.array([0.02 + 0j, 0.01 + 0j]), "none", float("inf"),
                      np.exp(-0.02 * np.arange(T + 1)), grid, 0.5 / grid, 0.95)
    params, rec = to_family(sur, T)
    assert rec["adaptation"]["p"] == pytest.approx(0.5, abs=1e-6)
    assert rec["adaptation"]["rms_log_error"] < 1e-6 and rec["schedule"]["rms_log_error"] < 1e-6
    g = np.random.default_rng(1).normal(size=(T, 6)) * 10 ** np.random.default_rng(2).uniform(-2, 1, (1, 6))
    np.testing.assert_allclose(_updates(F.mechanism_family(params, T), g), _updates(S.surrogate_optimizer(sur), g),
                               rtol=1e-3, atol=1e-8)


def test_unmappable_parts_are_named():
    from lorex.distill.extracted import to_family

    sur = S.Surrogate(np.array([0.9 + 0.2j, -0.3 + 0j, 0.5, 0.2, 0.0]), np.array([0.05, 0.01, 0.02, 0.01, 0.01]),
                      "hard", 0.5, np.ones(11), np.ones(1), np.ones(1), 0.9, adapt_bias_correction=True)
    _, rec = to_family(sur, 10)
    text = " | ".join(rec["approximations"])
    for word in ("complex", "negative", "merged", "clipping", "hard clip", "bias correction"):
        assert word in text, word
    assert any("bias correction" in a for a in rec["not_mapped"])


def test_extracted_rung_and_training_from_it_tiny():
    import json

    from lorex import seeds, tasks
    from lorex.distill import bound as B
    from lorex.distill import family as F
    from lorex.distill.extracted import extracted_rung

    fam = tasks.make("linreg", steps=20)
    bench = {"steps": 20, "test_seeds": 16, "seed": 0}  # what extracted_rung reads of a benchmark
    hp = {"learning_rate": 0.1, "momentum": 0.9}
    b = hp["momentum"]
    sur = S.Surrogate(np.array([b + 0j]), np.array([0.5 * hp["learning_rate"] + 0j]), "tanh", 10.0,
                      np.exp(-0.01 * np.arange(21)), np.ones(1), np.ones(1), 0.9)  # Momentum at half its rate
    u = F.init_params(lr=hp["learning_rate"] / (1 - b), betas=[b])  # U: the Momentum itself
    ladder = {"mechanism_bound": {"parameters": F.params_to_json(u), "mask": {k: 1.0 for k in F.MECHANISMS}}}
    parts = {"applicable": True, "rejected": [], "gates": {}}
    fc = B.FamilyConfig(steps=6, val_every=3, val_batch=8, seeds=(0,), batch=8)
    from lorex.evaluate import evaluate

    own = evaluate(S.surrogate_optimizer(sur), fam, seeds.keys(0, "test", 16), 20)
    ext, vs = extracted_rung(fam, bench, sur, parts, ladder, config=fc, n_boot=200, surrogate_losses=own)
    # the surrogate (clipping the raw gradient at 10, far above linreg's) and its family member nearly agree
    assert abs(ext["mapping_cost"]["mean"]) < 0.05, ext["mapping_cost"]
    assert ext["ci95"][0] <= ext["mean"] <= ext["ci95"][1]
    assert ext["natural"]["betas"][0] == pytest.approx(b, abs=1e-5)
    lr_c = ext["natural"]["learning_rate"] * ext["natural"]["c"][0]  # η c EMA = heavy ball's rate × trace
    assert lr_c == pytest.approx(0.5 * hp["learning_rate"] / (1 - b), rel=1e-4)
    lo, hi = ext["minus_bound"]["ci95"]
    assert lo <= ext["minus_bound"]["mean"] <= hi
    assert vs["meta_steps"] == 6 and vs["validation"] <= vs["start_validation"] + 1e-6
    names = {r["parameter"] for r in vs["per_parameter"]}
    assert {"learning_rate", "betas[0]", "c[0]", "tau", "rho", "p", "schedule_multipliers[4]"} <= names
    for r in vs["per_parameter"]:
        assert r["change"] == pytest.approx(r["trained"] - r["extracted"])
    json.dumps([ext, vs], allow_nan=False)


# ------------------------------------------------------------------------------ the round trip


@pytest.fixture(scope="module")
def linreg30():
    from lorex import tasks

    return tasks.make("linreg", steps=30)


def test_round_trip_momentum_and_schedule_come_back(linreg30):
    """Random members with momentum (2 modes) and a schedule (clipping inactive, no adaptation): the slowest β, the
    modes' shares, the schedule, no clipping, no adaptation and the score come back within the stated tolerances."""
    from lorex.distill.present import format_round_trip, round_trip_html
    from lorex.distill.roundtrip import TOLERANCES, round_trip

    rt = round_trip(linreg30, n_members=2, kinds=("momentum+schedule",), analysis_runs=2, test_runs=8)
    assert rt["tolerances"] == TOLERANCES and len(rt["members"]) == 2
    for r in rt["members"]:
        assert "error" not in r, r.get("error")
        c = r["comparison"]
        assert c["momentum"]["slowest_beta"] and c["momentum"]["shares"], c["momentum"]
        assert c["schedule"]["passed"], c["schedule"]
        assert c["clipping"]["passed"] and c["adaptation"]["passed"], (c["clipping"], c["adaptation"])
        assert r["score"]["passed"], r["score"]
    assert rt["summary"]["momentum+schedule"]["score"] == {"passed": 2, "of": 2}
    assert "round trip" in format_round_trip({"round_trip": rt})[0] and "<table>" in round_trip_html({"round_trip": rt})


@pytest.mark.xfail(strict=True, reason=(
    "known, open (a finding of the round trip): the family clips the accumulated, adapted momentum signal, which the "
    "update function at h0 (a first step from zero state) does not see saturate; the saturation shows instead on the "
    "S-curve, where the extraction reads it as adaptation (p ≈ 1.8 for a member without adaptation)"))
def test_round_trip_recovers_clipping_of_the_momentum_signal(linreg30):
    from lorex.distill.roundtrip import round_trip

    rt = round_trip(linreg30, n_members=1, kinds=("momentum+schedule+clipping",), analysis_runs=2, test_runs=8)
    c = rt["members"][0]["comparison"]
    assert c["clipping"]["passed"] and c["adaptation"]["passed"]


def test_ladder_figure_draws_every_rung(tmp_path):
    from lorex.distill import ladder_figure

    def rung(m, **kw):
        return {"mean": m, "ci95": [m - 0.2, m + 0.3], **kw}

    r = {"task": "linreg", "test_seeds": 16, "learned": rung(-19.3),
         "extracted": rung(-12.0, surrogate_itself=rung(-13.9)),
         "extracted_vs_trained": rung(-18.0), "mechanism_bound": rung(-20.5),
         "best_baseline": rung(-16.9, name="adam"), "gap_closed": {"reported": True, "value": 1.53}}
    r2 = {**r, "task": "rosenbrock", "extracted": {"mean": None, "ci95": None, "diverged": 3},
          "gap_closed": {"reported": False}}
    paths = ladder_figure([r, r2], tmp_path / "ladder")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and paths[0].stat().st_size > 5000
    with pytest.raises(ValueError):
        ladder_figure({"task": "x"}, tmp_path / "none")
