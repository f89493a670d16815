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
