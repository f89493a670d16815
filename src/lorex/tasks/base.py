"""The task-family protocol and the registry of named families.

A task family samples problem instances from a PRNG key. Any object with these members is a family::

    problem = family.sample(key)            # pytree of arrays: one problem instance
    params0 = family.init(key, problem)     # initial parameters (pytree)
    loss    = family.loss(params, problem)  # scalar, differentiable in params
    family.steps                            # default horizon

All three functions are pure and vmappable over keys. Families are frozen dataclasses, so they are hashable and
can be static arguments of ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Protocol, runtime_checkable

import jax

from lorex.errors import LorexError


@runtime_checkable
class TaskFamily(Protocol):
    steps: int

    def sample(self, key: jax.Array) -> Any: ...

    def init(self, key: jax.Array, problem: Any) -> Any: ...

    def loss(self, params: Any, problem: Any) -> jax.Array: ...


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

    ``name`` may also be ``"module:attribute"`` naming a user's family object (or a zero-argument factory).
    Unknown names or fields raise :class:`LorexError` listing the valid ones.
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
    try:
        return cls(**overrides)
    except TypeError as e:
        raise LorexError(name, str(e), fields) from None


def load_user_task(spec: str) -> TaskFamily:
    """Import ``module:attribute``; the attribute is a family or a callable returning one."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or ":" in attr:
        raise LorexError("task", f"malformed {spec!r}", "module:attribute, e.g. mypkg.tasks:quadratic")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise LorexError("task", f"cannot import module {module_name!r} ({e})", "an importable module") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LorexError("task", f"module {module_name!r} has no attribute {attr!r}", "an existing attribute")
        obj = getattr(obj, part)
    if not isinstance(obj, TaskFamily) and callable(obj):
        obj = obj()
    missing = [m for m in ("sample", "init", "loss", "steps") if not hasattr(obj, m)]
    if missing:
        raise LorexError("task", f"{spec!r} lacks {', '.join(missing)}", "an object with sample, init, loss, steps")
    return obj


def check_field(cls_name: str, field: str, ok: bool, allowed: str, value) -> None:
    if not ok:
        raise LorexError(f"{cls_name}.{field}", f"got {value!r}", allowed)
