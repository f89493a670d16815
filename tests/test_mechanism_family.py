"""The mechanism family (lorex.distill.family): known optimizers are members; meta-training it (lorex.distill.bound)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lorex.distill import family as F


def _run_updates(tx, grads_seq):
    """Updates of ``tx`` for a fixed sequence of gradient pytrees (params unused)."""
    state = tx.init(grads_seq[0])
    out = []
    for g in grads_seq:
        u, state = tx.update(g, state, g)
        out.append(u)
    return out


def _grads(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return [{"w": jnp.asarray(rng.normal(size=(3, 2)) * 10 ** rng.uniform(-2, 1), jnp.float32),
             "b": jnp.asarray(rng.normal(size=(4,)), jnp.float32)} for _ in range(n)]


def _close(a_seq, b_seq, rtol=2e-5, atol=1e-7):
    for a, b in zip(a_seq, b_seq):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


OFF = dict(clipping=0.0, schedule=0.0, adaptation=0.0)


@pytest.mark.parametrize("lr,beta", [(0.1, 0.9), (0.03, 0.5)])
def test_heavy_ball(lr, beta):
    p = F.init_params(lr=lr, betas=[beta], c=[1 / (1 - beta)], modes=1)
    tx = F.mechanism_family(p, 20, mask=F.full_mask(**OFF))
    g = _grads()
    _close(_run_updates(tx, g), _run_updates(optax.sgd(lr, momentum=beta), g))


def test_heavy_ball_with_spare_modes_and_schedule_at_zero():
    # extra modes with c = 0 and a schedule of zeros change nothing
    p = F.init_params(lr=0.1, betas=[0.9], c=[10.0], modes=3)
    tx = F.mechanism_family(p, 20, mask=F.full_mask(clipping=0.0, adaptation=0.0))
    g = _grads()
    _close(_run_updates(tx, g), _run_updates(optax.sgd(0.1, momentum=0.9), g))


@pytest.mark.parametrize("decay", [0.9, 0.99])
def test_rmsprop(decay):
    p = F.init_params(lr=0.01, rho=decay, p=0.5, modes=1)
    tx = F.mechanism_family(p, 20, mask=F.full_mask(momentum=0.0, clipping=0.0, schedule=0.0), eps_in=1e-8,
                            eps_out=0.0)
    g = _grads()
    _close(_run_updates(tx, g), _run_updates(optax.rmsprop(0.01, decay=decay, eps=1e-8), g))


@pytest.mark.parametrize("b1,b2", [(0.9, 0.999), (0.5, 0.99)])
def test_adam(b1, b2):
    p = F.init_params(lr=0.003, betas=[b1], c=[1.0], rho=b2, p=0.5, modes=1)
    tx = F.mechanism_family(p, 20, mask=F.full_mask(clipping=0.0, schedule=0.0), bias_correction=True,
                            eps_in=0.0, eps_out=1e-8)
    g = _grads()
    _close(_run_updates(tx, g), _run_updates(optax.adam(0.003, b1=b1, b2=b2, eps=1e-8), g))


def test_adam_without_bias_correction():
    p = F.init_params(lr=0.003, betas=[0.9], c=[1.0], rho=0.999, p=0.5, modes=1)
    tx = F.mechanism_family(p, 20, mask=F.full_mask(clipping=0.0, schedule=0.0), eps_in=0.0, eps_out=1e-8)
    ref = optax.chain(optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8), optax.scale(-0.003))
    g = _grads()
    expected = []
    # scale_by_adam bias-corrects; undo it by hand: u = -lr m/(sqrt(v) + eps)
    m = jax.tree_util.tree_map(jnp.zeros_like, g[0])
    v = jax.tree_util.tree_map(jnp.zeros_like, g[0])
    for gi in g:
        m = jax.tree_util.tree_map(lambda a, b: 0.9 * a + 0.1 * b, m, gi)
        v = jax.tree_util.tree_map(lambda a, b: 0.999 * a + 0.001 * b * b, v, gi)
        expected.append(jax.tree_util.tree_map(lambda a, b: -0.003 * a / (jnp.sqrt(b) + 1e-8), m, v))
    del ref
    _close(_run_updates(tx, g), expected)


def test_clipping_and_schedule():
    p = F.init_params(lr=1.0, betas=[0.0001], c=[1.0], modes=1, tau=0.5, schedule=[0.0, np.log(2.0)], knots=2)
    tx = F.mechanism_family(p, 11, mask=F.full_mask(adaptation=0.0))
    g = [{"x": jnp.asarray([3.0, -0.01])} for _ in range(11)]
    us = _run_updates(tx, g)
    # step 0: η = 1, step 10 (= T − 1): η = 2; φ(s) = 0.5 tanh(s/0.5)
    m0 = (1 - 0.0001) * np.array([3.0, -0.01])
    np.testing.assert_allclose(np.asarray(us[0]["x"]), -0.5 * np.tanh(m0 / 0.5), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(us[10]["x"]), -2 * 0.5 * np.tanh(np.array([3.0, -0.01]) / 0.5),
                               rtol=1e-3)
    np.testing.assert_allclose(float(F.learning_rate(p, 5, 11)), np.sqrt(2.0) ** 1, rtol=1e-5)


def test_differentiable_and_jittable():
    from lorex import tasks
    from lorex.evaluate import mean_log_loss, run

    fam = tasks.make("linreg", steps=10)
    key = jax.random.PRNGKey(0)

    def f(p):
        return mean_log_loss(run(F.mechanism_family(p, 10), fam, key, 10))

    p = F.init_params(lr=0.1, rho=0.9, p=0.25, tau=3.0)
    v, g = jax.jit(jax.value_and_grad(f))(p)
    assert np.isfinite(float(v))
    for k, x in g.items():
        assert np.all(np.isfinite(np.asarray(x))), k
    assert abs(float(g["log_lr"])) > 0 and abs(float(g["p"])) > 0


# ------------------------------------------------------------------------------------------ meta-training the family

TINY = dict(n=5, m=10, steps=40)


def _tiny():
    from lorex import meta, tasks

    fam = tasks.make("linreg", **TINY)
    cfg = meta.make_config("linreg", task_overrides=TINY, batch=8)
    return fam, cfg


def test_meta_training_from_a_poor_start_recovers_tuned_momentum():
    from lorex import seeds
    from lorex.baselines import tune
    from lorex.distill import bound as B
    from lorex.evaluate import evaluate

    fam, cfg = _tiny()
    T = fam.steps
    poor = F.init_params(lr=1e-3, betas=[1e-4], rho=0.9, p=0.0, tau=1e3)  # plain SGD at a tiny rate
    fc = B.FamilyConfig(steps=60, meta_lr=0.1, meta_lr_final=0.01, val_every=10, val_batch=16, seeds=(0,))
    tr = B.train_members(fam, cfg, [poor], [F.full_mask()], [0], fc)
    assert tr["validation"][0] < tr["start_validation"][0]
    momentum = tune("momentum", fam, seeds.keys(0, "tuning", 16), T)
    keys = seeds.keys(0, "test", 32)
    u = B.per_seed_mll(B.evaluate_members(tr["params"], [F.full_mask()], fam, keys, T)[0]).mean()
    m = B.per_seed_mll(evaluate(momentum.transformation(), fam, keys, T)).mean()
    p0 = B.per_seed_mll(B.evaluate_members([poor], [F.full_mask()], fam, keys, T)[0]).mean()
    assert u <= m, (u, m, p0)


def test_ladder_keys_intervals_and_leave_one_out(tmp_path):
    import json

    from lorex.errors import LorexError
    from lorex import lopt
    from lorex.benchmark import run_benchmark
    from lorex.distill import bound as B
    from lorex.distill import distill, format_table

    fam, cfg = _tiny()
    bench = run_benchmark(fam, tuning_seeds=8, test_seeds=16, optimizers=("momentum", "adam"), progress=False)
    lcfg = lopt.LOptConfig(hidden=4)
    learned = (lopt.init_params(jax.random.PRNGKey(0), lcfg), lcfg)
    fc = B.FamilyConfig(steps=4, val_every=2, val_batch=8, seeds=(0, 1, 2), batch=8)
    res = distill(learned, fam, benchmark=bench, bound=True, surrogate=False, family_config=fc, n_boot=200,
                  progress=False)
    for k in ("learned", "mechanism_bound", "best_baseline"):
        r = res[k]
        assert r["mean"] is not None and r["ci95"][0] <= r["mean"] <= r["ci95"][1], k
    assert res["best_baseline"]["name"] in ("momentum", "adam")
    assert set(res["gap_closed"]) >= {"value", "ci95", "reported", "baseline_minus_learned"}
    assert [r["removed"] for r in res["leave_one_out"]] == list(F.MECHANISMS)
    for r in res["leave_one_out"]:
        assert r["delta_vs_bound"] is not None and len(r["delta_ci95"]) == 2
    members = res["mechanism_family"]["members"]
    assert len(members) == 5 * 3 and {m["start"] for m in members} == {"momentum", "adam"}
    # the start is a member and best-by-validation includes it: no member validates worse than its start
    for m in members:
        assert m["validation"] <= m["start_validation"] + 1e-6
    json.dumps(res, allow_nan=False)
    text = format_table(res)
    assert "mechanism bound U" in text and "without clipping" in text
    # the stored parameters rebuild the members: saved, loaded and evaluated again, the same numbers
    path = tmp_path / "mechanism_family.json"
    B.save_family(path, res)
    again = B.mechanism_bound(fam, bench, lopt.learned_optimizer(*learned), trained=B.load_family(path), n_boot=200)
    assert again["mechanism_bound"]["mean"] == pytest.approx(res["mechanism_bound"]["mean"], abs=1e-6)
    assert [r["mean"] for r in again["leave_one_out"]] == pytest.approx([r["mean"] for r in res["leave_one_out"]])
    assert again["family_config"]["steps"] == 4 and "evaluated" in again["source"]
    path.write_text('{"format_version": 1, "variants": {"bound": {"parameters": {"x": 1}}}}')
    with pytest.raises(LorexError, match="parameters"):
        B.load_family(path)


def test_gap_closed_only_reported_when_the_gap_is_clearly_positive():
    from lorex.distill import bound as B

    rng = np.random.default_rng(0)
    n = 64
    idx = rng.integers(0, n, size=(500, n))
    b = rng.normal(size=n)
    lrn = b - 1.0 + 0.1 * rng.normal(size=n)
    u = b - 0.5 + 0.1 * rng.normal(size=n)
    g = B.gap_closed(b, u, lrn, idx)
    assert g["reported"] and 0.4 < g["value"] < 0.6 and g["ci95"][0] < g["value"] < g["ci95"][1]
    g = B.gap_closed(b, u, b + 0.01 * rng.normal(size=n), idx)
    assert not g["reported"] and g["value"] is None


def test_cli_distill_flags_reach_the_api(monkeypatch, capsys):
    import lorex.distill
    from lorex import api
    from lorex.cli import main

    calls = []
    monkeypatch.setattr(api, "distill_optimizer", lambda *a, **k: calls.append((a, k)) or {"wall_seconds":
                                                                                        {"total": 1.0}})
    monkeypatch.setattr(lorex.distill, "format_table", lambda r: "TABLE")
    assert main(["distill", "--optimizer", "linreg", "--bound-only", "--family-steps", "7"]) == 0
    (_, k), = calls
    assert k["bound"] is True and k["surrogate"] is False and k["family_steps"] == 7 and k["round_trip"] == 0
    calls.clear()
    assert main(["distill", "--optimizer", "linreg", "--round-trip", "2"]) == 0
    assert calls[0][1]["round_trip"] == 2
    with pytest.raises(SystemExit) as e:
        main(["distill", "--optimizer", "linreg", "--round-trip", "-1"])
    assert e.value.code == 2 and "round-trip" in capsys.readouterr().err
    calls.clear()
    assert main(["distill", "--optimizer", "linreg", "--no-bound"]) == 0
    assert calls[0][1]["bound"] is False and calls[0][1]["surrogate"] is True
    assert main(["distill", "--optimizer", "linreg", "--no-bound", "--bound-only"]) == 2
    assert "--bound-only" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["linreg", "rosenbrock", "two_moons", "digits"])
def test_shipped_families_load_and_their_bound_runs(task):
    from lorex import seeds, tasks
    from lorex.distill import bound as B

    rec = B.shipped_family(task)
    if rec is None:
        pytest.skip(f"no mechanism family shipped for {task}")
    assert rec["task"] == task and set(rec["variants"]) == {"bound", *F.MECHANISMS}
    # trained with the configuration `lorex distill` uses today (the task policy's defaults)
    default = dataclasses.asdict(B.default_family_config(tasks.make(task)))
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in rec["family_config"].items()} == default
    if task != "linreg":
        return  # evaluating two moons takes long; linreg stands for the evaluation path
    fam = tasks.make(task)
    v = rec["variants"]["bound"]
    curves = B.evaluate_members([F.params_from_json(v["parameters"])], [B._record_mask(v, "bound")], fam,
                                seeds.keys(0, "test", 4), rec["steps"])
    assert np.isfinite(B.per_seed_mll(curves[0])).all()


def test_leave_one_out_delta_warns_when_the_variant_never_trained():
    from lorex.distill.present import loo_delta

    row = {"removed": "clipping", "delta_vs_bound": 0.34, "delta_ci95": [0.31, 0.37], "best_meta_step": 12}
    assert loo_delta(row) == "+0.340 [+0.310, +0.370]"
    assert loo_delta({**row, "best_meta_step": 0}).startswith("+0.340 [+0.310, +0.370] (its member never improved")
    assert loo_delta({**row, "delta_vs_bound": None}) == "n/a"
