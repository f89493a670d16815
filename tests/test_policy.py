"""A task declares its own policy (tuning ranges, tuning seeds, meta-training defaults): built-in and user tasks
alike."""

import dataclasses

import numpy as np
import pytest

from lorex import baselines, meta, tasks
from lorex.benchmark import run_benchmark
from lorex.distill.bound import FamilyConfig, default_family_config
from lorex.errors import LorexError
from lorex.tasks import DEFAULT_POLICY, TaskPolicy, policy_of

USER_MODULE = '''
import dataclasses

import jax
import jax.numpy as jnp

from lorex.tasks import TaskPolicy


@dataclasses.dataclass(frozen=True)
class Quad:
    steps: int = 8

    policy = TaskPolicy(lr_range=(-2.0, -1.0), tuning_seeds=3, second_grids={"adam": [0.5, 0.9]},
                        meta_defaults={"hidden": 4, "steps": 7, "input_scale": 2.0},
                        family_defaults={"steps": 5, "val_batch": 4})

    def sample(self, key):
        return jax.random.normal(key, (3,))

    def init(self, key, problem):
        return jnp.zeros(3)

    def loss(self, params, problem):
        return jnp.sum((params - problem) ** 2)


@dataclasses.dataclass(frozen=True)
class Plain(Quad):
    policy = None  # no policy: the generic defaults


@dataclasses.dataclass(frozen=True)
class BadMeta(Quad):
    policy = TaskPolicy(meta_defaults={"hiden": 4})


@dataclasses.dataclass(frozen=True)
class BadMetaValue(Quad):
    policy = TaskPolicy(meta_defaults={"hidden": -1})


@dataclasses.dataclass(frozen=True)
class BadFamily(Quad):
    policy = TaskPolicy(family_defaults={"modez": 2})


@dataclasses.dataclass(frozen=True)
class BadOptimizer(Quad):
    policy = TaskPolicy(second_grids={"lbfgs": [0.1]})


@dataclasses.dataclass(frozen=True)
class NotAPolicy(Quad):
    policy = {"lr_range": (-2.0, -1.0)}


quad, plain, bad_meta, bad_meta_value, bad_family, bad_optimizer, not_a_policy = (
    Quad(), Plain(), BadMeta(), BadMetaValue(), BadFamily(), BadOptimizer(), NotAPolicy())
'''


@pytest.fixture
def user_tasks(tmp_path, monkeypatch):
    (tmp_path / "policy_user_tasks.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "policy_user_tasks"


# The built-in tasks' effective policy as it was when it lived in name-keyed tables (baselines.LR_RANGES,
# TUNING_SEEDS, SECOND_GRIDS, meta.TASK_DEFAULTS, distill.bound.FAMILY_DEFAULTS): configuration, written out. Changed
# since: two moons' mechanism family trains 200 meta-steps (was 40: under-trained).
BUILTIN = {
    "linreg": dict(lr=(-3.0, 1.5, 19), tuning_seeds=32, second={},
                   meta={"steps": 15000}, family={"steps": 300, "val_batch": 128}),
    "rosenbrock": dict(lr=(-5.0, 0.5, 23), tuning_seeds=32, second={},
                       meta={"input_scale": 0.01, "truncation": 20, "first_order": True, "steps": 10000},
                       family={"steps": 300, "val_batch": 128}),
    "two_moons": dict(lr=(-3.0, 1.0, 17), tuning_seeds=16, second={},
                      meta={"hidden": 16, "batch": 8, "first_order": True, "input_scale": 100.0, "steps": 1000,
                            "val_every": 50, "val_batch": 16, "checkpoint_every": 50},
                      family={"steps": 200, "loo_seeds": (0,), "val_batch": 16}),
    "digits": dict(lr=(-3.0, 0.5, 15), tuning_seeds=8, second={"rmsprop": (0.0, 0.5, 0.9, 0.99, 0.999, 0.9999)},
                   meta={"hidden": 16, "batch": 8, "input_scale": 10.0, "meta_lr": 1e-3, "steps": 300,
                         "objective": "log_final", "val_every": 25, "val_batch": 16, "checkpoint_every": 25},
                   family={"loo_seeds": (0,), "val_batch": 16}),
}
DEFAULT_SECOND = {"sgd": (0.0,), "momentum": (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.995),
                  "rmsprop": (0.5, 0.9, 0.99, 0.999, 0.9999), "adam": (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)}


def check_grid(grid, lo, hi, n, second):
    lrs = np.asarray(grid.learning_rates)
    assert len(lrs) == n
    np.testing.assert_allclose(np.log10(lrs), np.linspace(lo, hi, n), atol=1e-12)
    assert tuple(grid.second) == tuple(second)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_tasks_keep_their_policy(name):
    family = tasks.make(name)
    want = BUILTIN[name]
    for opt in baselines.OPTIMIZERS:
        check_grid(baselines.default_grid(opt, family), *want["lr"], want["second"].get(opt, DEFAULT_SECOND[opt]))
        assert baselines.default_grid(opt, name) == baselines.default_grid(opt, family)  # a name is built
    assert baselines.default_tuning_seeds(family) == want["tuning_seeds"]
    assert meta.default_config(name) == meta.MetaConfig(task=name, **want["meta"])
    assert default_family_config(family) == FamilyConfig(**want["family"])


def test_no_name_keyed_policy_tables_remain():
    import lorex.distill.bound as bound

    for module, table in [(baselines, "LR_RANGES"), (baselines, "TUNING_SEEDS"), (baselines, "SECOND_GRIDS"),
                          (meta, "TASK_DEFAULTS"), (bound, "FAMILY_DEFAULTS")]:
        assert not hasattr(module, table), f"{module.__name__}.{table}"


@pytest.mark.filterwarnings("ignore:.*on the grid edge:UserWarning")
def test_user_task_policy_is_used(user_tasks):
    spec = f"{user_tasks}:quad"
    family = tasks.make(spec)
    assert policy_of(family) is type(family).policy
    check_grid(baselines.default_grid("adam", family), -2.0, -1.0, 5, (0.5, 0.9))
    check_grid(baselines.default_grid("sgd", spec), -2.0, -1.0, 5, (0.0,))
    cfg = meta.default_config(spec, batch=2)
    assert (cfg.hidden, cfg.steps, cfg.input_scale, cfg.batch) == (4, 7, 2.0, 2)
    assert cfg.meta_lr == meta.MetaConfig.meta_lr  # a field the policy leaves alone keeps the generic default
    assert meta.task_defaults(family) == {"hidden": 4, "steps": 7, "input_scale": 2.0}
    assert default_family_config(family, seeds=(3,)) == FamilyConfig(steps=5, val_batch=4, seeds=(3,))
    # the benchmark tunes on the policy's seeds over its grid
    res = run_benchmark(family, test_seeds=2, optimizers=("adam",), progress=False)
    assert res["tuning_seeds"] == 3
    row = res["optimizers"]["adam"]
    np.testing.assert_allclose(np.log10(row["grid"]["learning_rate"]), np.linspace(-2.0, -1.0, 5), atol=1e-12)
    assert row["grid"]["b1"] == [0.5, 0.9]


def test_user_task_without_policy_gets_the_generic_defaults(user_tasks):
    spec = f"{user_tasks}:plain"
    family = tasks.make(spec)
    assert policy_of(family) is DEFAULT_POLICY
    for opt in baselines.OPTIMIZERS:
        check_grid(baselines.default_grid(opt, family), -5.0, 1.0, 25, DEFAULT_SECOND[opt])
    assert baselines.default_tuning_seeds(family) == 32
    assert meta.default_config(spec) == meta.MetaConfig(task=spec)
    assert default_family_config(family) == FamilyConfig()
    assert baselines.default_grid("adam", None) == baselines.default_grid("adam", family)


@pytest.mark.parametrize("kwargs, field", [
    (dict(lr_range=(1.0, -1.0)), "policy.lr_range"),
    (dict(lr_range=(-1.0, float("nan"))), "policy.lr_range"),
    (dict(lr_range=(-1.0,)), "policy.lr_range"),
    (dict(tuning_seeds=0), "policy.tuning_seeds"),
    (dict(tuning_seeds=2.5), "policy.tuning_seeds"),
    (dict(tuning_seeds=True), "policy.tuning_seeds"),
    (dict(second_grids={"adam": []}), "policy.second_grids.adam"),
    (dict(second_grids={"adam": [0.9, "x"]}), "policy.second_grids.adam"),
    (dict(second_grids=[("adam", (0.9,))]), "policy.second_grids"),
    (dict(meta_defaults=[("hidden", 4)]), "policy.meta_defaults"),
    (dict(family_defaults={1: 2}), "policy.family_defaults"),
])
def test_bad_policy_values_are_refused(kwargs, field):
    with pytest.raises(LorexError, match="allowed") as e:
        TaskPolicy(**kwargs)
    assert e.value.field == field


def test_bad_user_policy_is_a_clear_error_where_it_is_used(user_tasks):
    with pytest.raises(LorexError, match="hiden.*allowed: .*hidden") as e:
        meta.default_config(f"{user_tasks}:bad_meta")
    assert e.value.field.endswith("policy.meta_defaults.hiden")
    with pytest.raises(LorexError, match="allowed: a positive integer") as e:
        meta.default_config(f"{user_tasks}:bad_meta_value")
    assert e.value.field == f"{user_tasks}:bad_meta_value.policy.meta_defaults.hidden"
    with pytest.raises(LorexError, match="modez.*allowed: modes") as e:
        default_family_config(tasks.make(f"{user_tasks}:bad_family"))
    assert e.value.field.endswith("policy.family_defaults.modez")
    with pytest.raises(LorexError, match="unknown optimizer.*allowed: sgd") as e:
        baselines.default_grid("adam", tasks.make(f"{user_tasks}:bad_optimizer"))
    assert e.value.field.endswith("policy.second_grids.lbfgs")
    with pytest.raises(LorexError, match="allowed: a lorex.tasks.TaskPolicy"):
        baselines.default_tuning_seeds(tasks.make(f"{user_tasks}:not_a_policy"))


def test_policy_is_frozen_and_hashable():
    p = TaskPolicy(second_grids={"adam": [0.5]}, meta_defaults={"hidden": 4}, family_defaults={"seeds": [0, 1]})
    assert p.second_grids["adam"] == (0.5,) and p.family_defaults["seeds"] == (0, 1)
    assert hash(p) == hash(TaskPolicy(second_grids={"adam": (0.5,)}, meta_defaults={"hidden": 4},
                                      family_defaults={"seeds": (0, 1)}))
    with pytest.raises(TypeError):
        p.meta_defaults["hidden"] = 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.tuning_seeds = 3
