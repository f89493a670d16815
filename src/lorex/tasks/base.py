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
import math
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
