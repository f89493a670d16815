"""Populations: one optimizer per meta-training seed (`lorex train --seeds`), loading a member by seed, and the
population path of `lorex reproduce` (every member benchmarked and analysed, findings as k of n)."""

import json

import jax
import numpy as np
import pytest

from lorex import lopt, meta, seeds, tasks
from lorex import mechanisms as M
from lorex.cli import main
from lorex.errors import LorexError
from lorex.evaluate import evaluate, summarize
from lorex.mechanisms.finding import finding
from lorex.report.reproduce import reproduce

TINY_TRAIN = ["--task", "linreg", "--set", "m=3", "--set", "n=3", "--hidden", "4", "--batch", "2", "--unroll", "6",
              "--steps", "6", "--val-every", "2", "--val-batch", "4", "--checkpoint-every", "2",
              "--output-scale", "0.3", "--meta-lr", "0.02"]
TINY_ANALYSIS = dict(trajectories=2, fp_seeds=16, clip_points=21, scurve_points=5, update_offsets=3, update_curves=3,
                     relax_steps=50)


def leaves(params):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]


@pytest.fixture(scope="module")
def population_dir(tmp_path_factory):
    """Two members (seeds 0 and 3), the second interrupted after 3 meta-steps and then resumed."""
    out = tmp_path_factory.mktemp("pop") / "pop"
    assert main(["train", *TINY_TRAIN, "--seeds", "0", "3", "--out", str(out)]) == 0
    return out


def test_seeds_make_distinct_runs_whose_seeds_match_their_folders(population_dir, tmp_path):
    members = lopt.member_dirs(population_dir)
    assert list(members) == [0, 3]
    params = {}
    for s, d in members.items():
        assert d == population_dir / f"seed-{s}"
        p, _, md = lopt.load_params(population_dir, seed=s)
        assert md["seed"] == s and md["config"]["seed"] == s
        assert json.loads((d / meta.RUN_FILE).read_text())["config"]["seed"] == s
        params[s] = p
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(params[0]), leaves(params[3])))
    # a member is the very run `lorex train --seed 3` makes on its own
    assert main(["train", *TINY_TRAIN, "--seed", "3", "--out", str(tmp_path / "single")]) == 0
    single, _, _ = lopt.load_params(tmp_path / "single")
    for a, b in zip(leaves(single), leaves(params[3])):
        np.testing.assert_array_equal(a, b)


def test_members_resume_individually_and_finished_ones_are_kept(population_dir, tmp_path):
    out = tmp_path / "pop"
    cfg = meta.config_from_args(meta_args(), {"m": 3, "n": 3})
    meta.train_population(cfg, [0, 3], out, progress=False, stop_after=3)
    assert not (out / "seed-0" / lopt.META_FILE).exists()  # both interrupted
    assert main(["train", "--resume", str(out / "seed-0")]) == 0  # one member on its own
    stamp = (out / "seed-0" / lopt.PARAMS_FILE).stat().st_mtime_ns
    assert main(["train", "--resume", str(out)]) == 0  # the rest of the population
    assert (out / "seed-0" / lopt.PARAMS_FILE).stat().st_mtime_ns == stamp
    for s in (0, 3):  # resumed equals uninterrupted
        for a, b in zip(leaves(lopt.load_params(out, seed=s)[0]), leaves(lopt.load_params(population_dir, seed=s)[0])):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(LorexError, match="another configuration"):
        meta.train_population(meta.MetaConfig(**{**cfg.to_json(), "task_overrides": (("m", 3), ("n", 3)),
                                                 "hidden": 5}), [0], out, progress=False)


def meta_args():
    import argparse

    from lorex.cli import build_parser

    args = build_parser().parse_args(["train", *TINY_TRAIN])
    assert isinstance(args, argparse.Namespace)
    return args


def test_member_errors(population_dir):
    with pytest.raises(LorexError, match="seed"):
        lopt.load_params(population_dir)  # a population: which member?
    with pytest.raises(LorexError, match="no member 7"):
        lopt.load_params(population_dir, seed=7)
    with pytest.raises(LorexError, match="preset"):
        lopt.load_params("linreg", preset="huge")
    with pytest.raises(LorexError, match="repeated"):
        meta.train_population(meta.MetaConfig(), [1, 1], population_dir / "x")
    assert main(["train", *TINY_TRAIN, "--seed", "2", "--seeds", "0", "1", "--out", "/tmp/never"]) == 2


@pytest.mark.parametrize("task", ["linreg", "rosenbrock", "two_moons", "digits"])
def test_shipped_populations_have_five_members_of_one_configuration(task):
    members = lopt.member_dirs(task)
    assert list(members) == [0, 1, 2, 3, 4] and members[0] == lopt.resolve_optimizer_dir(task)
    digests = set()
    for s in members:
        _, _, md = lopt.load_params(task, seed=s)
        assert md["seed"] == s and md["task"] == task
        digests.add(meta.MetaConfig.from_json({**md["config"], "seed": 0}).digest())
    assert len(digests) == 1  # the same configuration, only the seed differs
    weights, _, _ = lopt.load_members(members)
    assert not np.array_equal(leaves(weights[0])[0], leaves(weights[1])[0])


def test_shipped_paper_preset_optimizer():
    params, cfg, md = lopt.load_params("linreg", preset="paper")
    assert cfg.hidden == 256 and md["config"]["batch"] == 32
    assert meta.MetaConfig.from_json(md["config"]).digest() == meta.default_config(
        "linreg", preset="paper", steps=md["config"]["steps"]).digest()
    with pytest.raises(LorexError, match="paper"):
        lopt.load_params("rosenbrock", preset="paper")


def test_agreement_counts_verdicts_and_spread():
    def f(v):
        return finding("clipping", v, (v - 0.1, v + 0.1), 0.5, "above", measure="1 - kappa", interval_kind="runs",
                       text="")

    (a,) = M.agreement({0: [f(0.8)], 1: [f(0.3)], 2: [f(float("nan"))], 3: [f(0.9)]})
    assert (a.count("present"), a.count("absent"), a.count("not applicable")) == (2, 1, 1)
    assert a.summary == "2 of 4 present (1 absent, 1 not applicable)"
    assert a.spread == pytest.approx((0.8, 0.3, 0.9))
    j = a.to_json()
    assert [m["seed"] for m in j["members"]] == [0, 1, 2, 3] and j["members"][2]["value"] is None


def test_reproduce_population_path(population_dir, tmp_path):
    out = reproduce(tmp_path / "run", tasks=["linreg"], test_seeds=8, tuning_seeds=4, steps=20, progress=False,
                    optimizers={"linreg": population_dir}, analysis_options=TINY_ANALYSIS,
                    baselines=("momentum", "adam"))
    res = json.loads((out / "results.json").read_text())
    pop = res["tasks"]["linreg"]["population"]
    assert pop["n"] == 2 and pop["reference_seed"] == 0
    assert [m["seed"] for m in pop["members"]] == [0, 3] and pop["members"][0]["reference"]
    for m in pop["members"]:
        assert set(m["benchmark"]["comparison"]) == {"mean_log_loss", "final_loss"}
        assert [f["mechanism"] for f in m["findings"]] == list(M.MECHANISMS)
    # the reference member's findings are the task's findings
    assert [f["verdict"] for f in pop["members"][0]["findings"]] == [f["verdict"] for f in res["findings"]]
    assert set(pop["wins"]) == {"mean_log_loss", "final_loss"} and all(0 <= w <= 2 for w in pop["wins"].values())
    assert [a["mechanism"] for a in res["agreement"]] == list(M.MECHANISMS)
    for a in res["agreement"]:
        assert a["n"] == 2 and a["present"] + a["absent"] + a["not_applicable"] == 2
        assert a["summary"].startswith(f"{a['present']} of 2 present")
    for ext in ("png", "pdf"):
        assert (out / "figures" / f"linreg_7_population.{ext}").stat().st_size > 1000
    page = (out / "report.html").read_text()
    assert "Across meta-training seeds" in page and "Population — linreg" in page
    # the reference member's runs are the benchmark's (not run again)
    assert pop["members"][0]["benchmark"]["mean_log_loss"] == res["tasks"]["linreg"]["benchmark"]["optimizers"][
        "learned"]["mean_log_loss"]
    # the population's vmapped evaluation gives what evaluating a member alone gives
    family = tasks.make("linreg")
    keys = seeds.keys(0, "test", 8)
    alone = summarize(evaluate(lopt.load_optimizer(population_dir, seed=3), family, keys, 20))
    assert pop["members"][1]["benchmark"]["mean_log_loss"]["mean"] == pytest.approx(
        alone["mean_log_loss"]["mean"], rel=1e-5)


def test_benchmark_reports_every_member(population_dir, tmp_path, capsys):
    assert main(["benchmark", "--task", "linreg", "--steps", "20", "--tuning-seeds", "4", "--test-seeds", "8",
                 "--optimizers", "momentum", "--optimizer", str(population_dir), "--out", str(tmp_path)]) == 0
    assert "population: 2 members" in capsys.readouterr().out
    res = json.loads((tmp_path / "results.json").read_text())["benchmark"]
    pop = res["population"]
    assert pop["n"] == 2 and set(pop["members"]) == {"0", "3"}
    for m in pop["members"].values():
        c = m["comparison"]["mean_log_loss"]
        assert c["best_baseline"] == "momentum" and c["margin_in_se"] is not None
    assert pop["wins"]["mean_log_loss"] == sum(m["comparison"]["mean_log_loss"]["beats_by_2se"]
                                               for m in pop["members"].values())
    # the reference (first member) evaluated alone and inside the population agree
    assert pop["members"]["0"]["mean_log_loss"]["mean"] == pytest.approx(
        res["optimizers"]["learned"]["mean_log_loss"]["mean"], rel=1e-5)
