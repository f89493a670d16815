"""The task-family protocol and the registry of named families.

A task family samples problem instances from a PRNG key. Any object with these members is a family::

    problem = family.sample(key)            # pytree of arrays: one problem instance
    params0 = family.init(key, problem)     # initial parameters (pytree)
    loss    = family.loss(params, problem)  # scalar, differentiable in params
    family.steps                            # default horizon

All three functions are pure and vmappable over keys. Families are frozen dataclasses, so they are hashable and
can be static arguments of ``jax.jit``. Optional members:

    family.name                             # the registered name (set by :func:`register`)
    family.metrics(params, problem)         # {name: scalar} of final parameters, e.g. held-out accuracy
    family.policy                           # a TaskPolicy: how lorex tunes and meta-trains on this task

``policy`` (a class attribute, not a config field) declares the task's tuning ranges and meta-training defaults;
every part of lorex reads them through :func:`policy_of` (a family without one gets :data:`DEFAULT_POLICY`), so a
user's ``module:attribute`` task is treated exactly like a built-in one.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import types
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import jax

from lorex.errors import LorexError


@runtime_checkable
class TaskFamily(Protocol):
    steps: int

    def sample(self, key: jax.Array) -> Any: ...

    def init(self, key: jax.Array, problem: Any) -> Any: ...

    def loss(self, params: Any, problem: Any) -> jax.Array: ...


_SCALARS = {"float": "a finite number", "int": "an integer", "bool": "true or false (True/False)",
            "str": "a string"}


def _scalar_ok(kind: str, v) -> bool:
    if kind == "bool":
        return isinstance(v, bool)
    if isinstance(v, bool):
        return False
    if kind == "int":
        return isinstance(v, int)
    if kind == "float":
        return isinstance(v, (int, float)) and math.isfinite(v)
    return isinstance(v, str)


def _frozen(v):
    """Lists (JSON-style) become tuples, so a policy's values are immutable and hashable."""
    return tuple(_frozen(x) for x in v) if isinstance(v, (list, tuple)) else v


def _defaults(field: str, value) -> types.MappingProxyType:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise LorexError(f"policy.{field}", f"got {value!r}", "a mapping {config field name: value}")
    return types.MappingProxyType({k: _frozen(v) for k, v in value.items()})


@dataclasses.dataclass(frozen=True)
class TaskPolicy:
    """How lorex tunes baselines and meta-trains on a task family (declared by the family as ``policy``).

    ``lr_range``: (lo, hi), the baselines' learning-rate grid 10^lo..10^hi in decades (4 points per decade by
    default); wide enough that the best value lies inside. ``tuning_seeds``: problems the baselines are tuned on.
    ``second_grids``: {optimizer: grid of its second hyperparameter} replacing the optimizer's default grid
    (:data:`lorex.baselines.OPTIMIZERS`). ``meta_defaults``: {:class:`lorex.meta.MetaConfig` field: value}, the
    task's meta-training defaults (``lorex train``). ``family_defaults``: {``lorex.distill.bound.FamilyConfig``
    field: value}, how the mechanism family is meta-trained for the bound (``lorex distill --bound``).

    The field names inside the three mappings are checked where they are used (an unknown one is a
    :class:`LorexError` listing the allowed names); the values are then checked by that config.
    """

    lr_range: tuple[float, float] = (-5.0, 1.0)
    tuning_seeds: int = 32
    second_grids: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    meta_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    family_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        lr = self.lr_range
        if not (isinstance(lr, (tuple, list)) and len(lr) == 2 and all(_scalar_ok("float", v) for v in lr)
                and lr[0] < lr[1]):
            raise LorexError("policy.lr_range", f"got {lr!r}",
                             "(lo, hi): two finite numbers with lo < hi, in decades, e.g. (-4.0, 0.0)")
        object.__setattr__(self, "lr_range", (float(lr[0]), float(lr[1])))
        n = self.tuning_seeds
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise LorexError("policy.tuning_seeds", f"got {n!r}", "a positive integer")
        grids = self.second_grids
        if not isinstance(grids, Mapping) or not all(isinstance(k, str) for k in grids):
            raise LorexError("policy.second_grids", f"got {grids!r}", "a mapping {optimizer name: grid}")
        for k, g in grids.items():
            if not (isinstance(g, (tuple, list)) and len(g) >= 1 and all(_scalar_ok("float", v) for v in g)):
                raise LorexError(f"policy.second_grids.{k}", f"got {g!r}", "a non-empty list of finite numbers")
        object.__setattr__(self, "second_grids",
                           types.MappingProxyType({k: tuple(float(v) for v in g) for k, g in grids.items()}))
        for f in ("meta_defaults", "family_defaults"):
            object.__setattr__(self, f, _defaults(f, getattr(self, f)))

    def __hash__(self):
        return hash((self.lr_range, self.tuning_seeds,
                     *(tuple(sorted(getattr(self, f).items())) for f in ("second_grids", "meta_defaults",
                                                                          "family_defaults"))))


DEFAULT_POLICY = TaskPolicy()
"""The generic policy: a family that declares none is tuned over 10^-5..10^1 on 32 seeds, with lorex's defaults."""


def task_name(family) -> str:
    """The family's registered name, or its type's name for a family that has none (a user's object)."""
    return getattr(family, "name", type(family).__name__)


def policy_of(family) -> TaskPolicy:
    """The family's declared ``policy``, or :data:`DEFAULT_POLICY` when it has none."""
    policy = getattr(family, "policy", None)
    if policy is None:
        return DEFAULT_POLICY
    if not isinstance(policy, TaskPolicy):
        name = task_name(family)
        raise LorexError(f"{name}.policy", f"got {type(policy).__name__}",
                         "a lorex.tasks.TaskPolicy, or no policy attribute (the generic defaults)")
    return policy


_REGISTRY: dict[str, type] = {}


def register(name: str):
    """Class decorator: make a family available to :func:`make` and the CLI under ``name``."""

    def deco(cls):
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return deco


def names() -> list[str]:
    return sorted(_REGISTRY)


def make(name: str, **overrides) -> TaskFamily:
    """Build a registered family, overriding any of its config fields.

    ``name`` may also be ``"module:attribute"`` naming a user's family object (or a zero-argument factory): that
    imports the module and so runs its code; only pass such a name when it comes from the user, never from a file
    (see :func:`make_from_file`). Unknown names or fields, and values of the wrong type or not finite, raise
    :class:`LorexError` listing what is allowed.
    """
    if not isinstance(name, str):
        raise LorexError("task", f"expected a name, got {type(name).__name__}", names())
    if ":" in name:
        if overrides:
            raise LorexError("task", "overrides are only supported for the built-in families", names())
        return load_user_task(name)
    if name not in _REGISTRY:
        raise LorexError("task", f"unknown task {name!r}", names() + ["module:attribute"])
    cls = _REGISTRY[name]
    fields = [f.name for f in dataclasses.fields(cls)]
    bad = [k for k in overrides if k not in fields]
    if bad:
        raise LorexError(f"{name}.{bad[0]}", "unknown config field", fields)
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    for k, v in overrides.items():
        check_value(f"{name}.{k}", types[k], v)
    try:
        return cls(**overrides)
    except LorexError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise LorexError(name, f"invalid config ({type(e).__name__}: {e})", fields) from None


def make_from_file(name, source: str, **overrides) -> TaskFamily:
    """:func:`make` for a task name read from a file (``source``): registered names only, never an import.

    A file received from someone else must not run code, so a ``module:attribute`` task in it is refused; the user
    can pass it on the command line instead.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        hint = " (a module:attribute task runs code: pass it with --task on the command line)" \
            if isinstance(name, str) and ":" in name else ""
        raise LorexError(f"{source}: task", f"{name!r} is not a registered task{hint}", names())
    return make(name, **overrides)


def check_value(field: str, annotation, value) -> None:
    """Check ``value`` against a config field's annotation (``float``, ``int``, ``bool``, ``str``,
    ``tuple[float, float]``, ``tuple[int, ...]``); other annotations are left to the family's own checks."""
    ann = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    ann = ann.replace(" ", "")
    if ann in _SCALARS:
        if not _scalar_ok(ann, value):
            raise LorexError(field, f"got {value!r}", _SCALARS[ann])
    elif ann.startswith("tuple[") and ann.endswith("]"):
        parts = ann[6:-1].split(",")
        if parts[-1] == "..." and len(parts) == 2 and parts[0] in _SCALARS:
            ok = isinstance(value, (tuple, list)) and len(value) >= 1 and all(_scalar_ok(parts[0], v) for v in value)
            allowed = f"a non-empty list of values, each {_SCALARS[parts[0]]}, e.g. [32, 32]"
        elif all(p in _SCALARS for p in parts):
            ok = isinstance(value, (tuple, list)) and len(value) == len(parts) and all(
                _scalar_ok(p, v) for p, v in zip(parts, value))
            allowed = f"a list of {len(parts)} values ({', '.join(_SCALARS[p] for p in parts)}), e.g. [-1.0, 1.0]"
        else:
            return
        if not ok:
            raise LorexError(field, f"got {value!r}", allowed)


def load_user_task(spec: str) -> TaskFamily:
    """Import ``module:attribute``; the attribute is a family or a callable returning one."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or ":" in attr:
        raise LorexError("task", f"malformed {spec!r}", "module:attribute, e.g. mypkg.tasks:quadratic")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise LorexError("task", f"cannot import module {module_name!r} ({e})", "an importable module") from None
    except Exception as e:  # the user's module itself failed: a syntax error, an exception at import
        raise LorexError("task", f"importing module {module_name!r} failed ({type(e).__name__}: {e})",
                         "a module that imports cleanly") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LorexError("task", f"module {module_name!r} has no attribute {attr!r}", "an existing attribute")
        obj = getattr(obj, part)
    if not isinstance(obj, TaskFamily) and callable(obj):
        try:
            obj = obj()
        except Exception as e:
            raise LorexError("task", f"calling {spec!r} failed ({type(e).__name__}: {e})",
                             "a family object or a zero-argument factory that returns one") from None
    missing = [m for m in ("sample", "init", "loss", "steps") if not hasattr(obj, m)]
    if missing:
        raise LorexError("task", f"{spec!r} lacks {', '.join(missing)}", "an object with sample, init, loss, steps")
    return obj


def check_field(cls_name: str, field: str, ok: bool, allowed: str, value) -> None:
    if not ok:
        raise LorexError(f"{cls_name}.{field}", f"got {value!r}", allowed)
