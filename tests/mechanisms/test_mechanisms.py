"""Known answers for every mechanism on maps that are not the GRU, driven by synthetic gradient sequences."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from lorex import mechanisms as M
from lorex.analysis import reference as R
from lorex.lopt import RecurrentMap

S, T, N = 6, 60, 24


def gradients(seed=0, decay=0.9, sign_flip=True, runs=S):
    """(runs, T, N): coordinate scales spanning 1.7 decades, random signs, shrinking geometrically (runs converge)."""
    rng = np.random.default_rng(seed)
    c = np.exp(rng.uniform(-3.0, 1.0, (runs, 1, N)))
    s = np.sign(rng.normal(size=(runs, T, N))) if sign_flip else 1.0
    return (c * s * decay ** np.arange(T)[None, :, None]).astype(np.float32)


def analyze(rmap, grads=None, **kw):
    ev = M.replay(rmap, gradients() if grads is None else grads)
    return M.analyze(rmap, ev, task="synthetic", scurve_points=11, relax_steps=300, fp_seeds=32, **kw)


def planted_schedule(alpha_of_k):
    """h = (k, g_last): a step counter and the last gradient; u = −a(k)·g_last.  Autonomously α_eff(h_t) = a(t+1)."""

    def step(h, x):
        return jnp.stack([h[0] + 1.0, x[0]])

    def readout(h):
        return -alpha_of_k(h[0]) * h[1]

    return RecurrentMap(step, readout, jnp.zeros((2,), jnp.float32))


def tanh_clip(alpha, c):
    """h = (g_last,), u = −α c tanh(g/c): linear below c, saturating at α c."""
    return RecurrentMap(lambda h, x: x[:1], lambda h: -alpha * c * jnp.tanh(h[0] / c), jnp.zeros((1,), jnp.float32))


def test_heavy_ball_is_momentum_only():
    a = analyze(R.heavy_ball(0.1, 0.9), polyak=(0.1, 0.9))
    assert a.momentum.polyak["distance"] == pytest.approx(0.0, abs=1e-4)
    mo = a.momentum
    assert mo.finding.verdict == M.PRESENT
    assert mo.heavy_ball["alpha"] == pytest.approx(0.1, rel=1e-5)
    assert mo.heavy_ball["beta"] == pytest.approx(0.9, abs=1e-5)
    assert mo.finding.interval_95[0] <= 0.9 + 1e-5 and mo.finding.interval_95[1] >= 0.9 - 1e-5
    assert np.allclose(mo.heavy_ball["impulse_decay_steps_1_10"], 0.9, atol=1e-4)
    assert mo.finding.margin == pytest.approx(0.4, abs=1e-4)
    for f in (a.clipping.finding, a.schedule.finding, a.adaptation.finding):
        assert f.verdict == M.ABSENT, f.statement
    assert abs(a.clipping.finding.value) < 1e-4  # 1 − κ = 0: linear
    assert abs(a.schedule.finding.value) < 1e-5
    assert abs(a.adaptation.finding.value) < 1e-4


@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_rmsprop_adapts_with_slope_minus_one_on_both_measures(eps_in_sqrt):
    a = analyze(R.rmsprop(0.01, 0.9, 1e-12, eps_in_sqrt=eps_in_sqrt))
    ad = a.adaptation
    assert ad.finding.verdict == M.PRESENT
    assert ad.finding.value == pytest.approx(-1.0, abs=0.01)
    assert ad.scurve_numbers["slope_mean"] == pytest.approx(-1.0, abs=0.02)
    assert a.momentum.finding.verdict != M.PRESENT  # the update is g/√s: no memory of past gradients in u


def test_rmsprop_with_epsilon_inside_the_gradients_met_still_adapts():
    """α_eff = α/(√v + ε) with ε in the middle of the gradient scales: flat below ε, slope −1 above; the fit over the
    top decade of recent gradient scales sees the adaptation (a fit over every coordinate would not)."""
    a = analyze(R.rmsprop(0.01, 0.9, 0.05))  # coordinate scales span e^-3 (0.05) to e^1
    assert a.adaptation.finding.verdict == M.PRESENT
    assert a.adaptation.finding.value < -0.5


def test_adam_adapts_and_its_step_counter_has_no_fixed_point():
    a = analyze(R.adam(0.01, 0.9, 0.999, 1e-12))
    assert a.adaptation.finding.verdict == M.PRESENT
    assert a.adaptation.finding.value == pytest.approx(-1.0, abs=0.05)
    assert a.momentum.finding.verdict == M.NOT_APPLICABLE
    assert "fixed point" in a.momentum.finding.reason


def test_planted_warmup_then_decay_schedule():
    def alpha(k):  # linear warm-up to 0.1 over 20 steps, then exponential decay with time constant 100
        return 0.1 * jnp.minimum(k / 20.0, 1.0) * jnp.exp(-jnp.maximum(k - 20.0, 0.0) / 100.0)

    a = analyze(planted_schedule(alpha))
    sc = a.schedule
    k = np.arange(1, T + 2, dtype=np.float64)  # α_eff(h_t) = a(t + 1), t = 0..T
    truth = 0.1 * np.minimum(k / 20, 1) * np.exp(-np.maximum(k - 20, 0) / 100)
    assert np.allclose(sc.autonomous_alpha, truth, rtol=1e-5)
    expected = math.log(truth.max() / truth.min())
    assert sc.finding.verdict == M.PRESENT
    assert sc.finding.value == pytest.approx(expected, rel=1e-5)
    assert sc.numbers["autonomous"]["warmup_length"] == 19
    assert a.momentum.finding.verdict == M.NOT_APPLICABLE  # a step counter has no fixed point


def test_planted_dip_then_rise_is_a_schedule():
    """α_eff dips by 30 % around step 10 and comes back: a warm-up from the trough (max/min = 1/0.7)."""
    a = analyze(planted_schedule(lambda k: 0.1 * (1.0 - 0.3 * jnp.exp(-(((k - 10.0) / 4.0) ** 2)))))
    sc = a.schedule
    assert sc.finding.verdict == M.PRESENT
    assert sc.finding.value == pytest.approx(math.log(1 / 0.7), rel=1e-3)
    assert sc.numbers["autonomous"]["trough_step"] == 9 and sc.numbers["autonomous"]["peak_over_initial"] < 1.01


def test_planted_tanh_clipping():
    alpha, c = 0.5, 0.05
    grads = gradients()
    a = analyze(tanh_clip(alpha, c), grads)
    cl = a.clipping
    g = np.abs(grads[:, 0].astype(np.float64))  # first-step gradients, met at h0
    g_ref = np.percentile(g[g > 0], 10)
    g_hi = g.max(axis=1)
    kappa = c * (np.tanh(g_hi / c) - np.tanh(g_ref / c)) / ((1 / np.cosh(g_ref / c) ** 2) * (g_hi - g_ref))
    assert cl.finding.verdict == M.PRESENT
    assert cl.finding.value == pytest.approx(1 - kappa.mean(), rel=1e-4)
    assert cl.numbers["g90_pos"] == pytest.approx(c * math.atanh(0.9), rel=0.05)  # 90 % of the saturation α c


def test_a_map_whose_only_fixed_point_is_unstable_is_not_applicable():
    unstable = RecurrentMap(lambda h, x: 1.02 * h + x[:1], lambda h: -0.01 * h[0], jnp.zeros((1,), jnp.float32))
    a = analyze(unstable)
    assert a.momentum.finding.verdict == M.NOT_APPLICABLE
    assert "unstable" in a.momentum.finding.reason
    assert a.momentum.finding.margin is None


def test_sign_features_never_meet_a_zero_gradient():
    """A sign input jumps at g = 0: the zero-gradient fixed point and the autonomous system are not operating points."""
    sign_momentum = RecurrentMap(lambda h, x: 0.9 * h + jnp.sign(x[:1]), lambda h: -0.01 * h[0],
                                 jnp.zeros((1,), jnp.float32))
    a = analyze(sign_momentum)
    assert not a.zero_input.met
    assert a.momentum.finding.verdict == M.NOT_APPLICABLE
    assert a.schedule.finding.verdict == M.NOT_APPLICABLE
    assert "zero gradient is never met" in a.momentum.finding.reason
    assert a.fd_step == pytest.approx(a.gradients.median)


def test_interval_covers_the_true_slope_on_a_noisy_planted_map():
    """α_eff = α·RMS^(−p)·(1 + noise): the noise comes from each coordinate's own first gradient, so the estimate
    varies from run to run; the bootstrap interval over 16 runs (as the report records) must cover p and have a
    positive width."""
    p = 0.5

    def step(h, x):  # h = (Σg², count, first g, g_last)
        g = x[0]
        first = jnp.where(h[1] == 0, g, h[2])
        return jnp.stack([h[0] + g * g, h[1] + 1.0, first, g])

    def readout(h):
        rms = jnp.sqrt(h[0] / jnp.maximum(h[1], 1.0)) + 1e-12
        noise = 1.0 + 0.3 * jnp.sin(1e4 * h[2])
        return -0.01 * noise * rms ** (-p) * h[3]

    rmap = RecurrentMap(step, readout, jnp.zeros((4,), jnp.float32))
    a = analyze(rmap, gradients(decay=1.0, runs=16))
    lo, hi = a.adaptation.finding.interval_95
    assert lo < -p < hi
    assert hi - lo > 1e-3


def test_finding_sensitivity_and_json():
    f = M.finding.finding("schedule", 0.25, (0.2, 0.3), math.log(1.25), "above", measure="m", interval_kind="k",
                          text="t")
    assert f.verdict == M.PRESENT and f.decisive is False
    assert f.verdict_at(1.5) == M.ABSENT and f.verdict_at(0.5) == M.PRESENT
    j = f.to_json()
    for key in ("task", "mechanism", "verdict", "value", "interval_95", "threshold", "margin", "reason"):
        assert key in j
    assert j["margin"] == pytest.approx(0.25 - math.log(1.25))
    na = M.finding.finding("momentum", None, None, 0.5, "above", measure="m", interval_kind="k", text="",
                           reason="because")
    assert na.verdict == M.NOT_APPLICABLE and na.to_json()["margin"] is None
