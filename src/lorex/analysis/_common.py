"""Shared helpers: normalize "a recurrent map" arguments, build the input x for a scalar gradient g, and compile a
function of a map once for every map of the same structure (:func:`map_jit`)."""

from __future__ import annotations

import collections
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lorex.errors import LorexError
from lorex.evaluate import jit_once


def split_map(rmap, readout: Callable | None = None, *, need_readout: bool = True):
    """(step, readout) from a RecurrentMap-like object (``.step``/``.readout``), a (step, readout) pair, or a step.

    An explicit ``readout`` argument overrides the map's own.
    """
    if hasattr(rmap, "step") and callable(rmap.step):
        step, ro = rmap.step, getattr(rmap, "readout", None)
    elif isinstance(rmap, tuple) and len(rmap) == 2 and all(callable(f) for f in rmap):
        step, ro = rmap
    elif callable(rmap):
        step, ro = rmap, None
    else:
        raise LorexError("rmap", f"got {type(rmap).__name__}",
                         "a RecurrentMap, a (step, readout) pair or a step function")
    ro = readout if readout is not None else ro
    if need_readout and ro is None:
        raise LorexError("readout", "missing", "a function h -> scalar update (or a RecurrentMap carrying one)")
    return step, ro


def initial_state(rmap, h0):
    """``h0`` if given, else the map's own ``h0``."""
    if h0 is not None:
        return jnp.asarray(h0)
    if getattr(rmap, "h0", None) is None:
        raise LorexError("h0", "missing", "an initial state (H,) or a RecurrentMap carrying one")
    return jnp.asarray(rmap.h0)


def input_of(g, input_dim: int = 1, input_index: int = 0):
    """The input vector x (D,) that carries the scalar gradient ``g`` in slot ``input_index``, zeros elsewhere."""
    g = jnp.asarray(g)
    return jnp.zeros((input_dim,), g.dtype if jnp.issubdtype(g.dtype, jnp.floating) else jnp.float32
                     ).at[input_index].set(g)


MAP_JIT_CACHE_SIZE = 128
_compiled: collections.OrderedDict = collections.OrderedDict()


class _Identity:
    """An object keyed by identity (held here, so its id is not reused while the key lives)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Identity) and other.obj is self.obj


def _value_key(v):
    """A cache key equal for equal values of the same type; by identity for unhashable values (arrays, …)."""
    if isinstance(v, tuple):
        return type(v), tuple(_value_key(x) for x in v)
    try:
        hash(v)
    except TypeError:
        return _Identity(v)
    return type(v), v


def _closure_key(fn):
    """Everything ``fn`` (a Python function) depends on besides its arguments and its module: code, defaults and
    the value of every variable it closes over."""
    cells = tuple(_value_key(c.cell_contents) for c in fn.__closure__ or ())
    kwdefaults = tuple(sorted((fn.__kwdefaults__ or {}).items()))
    return fn.__code__, _value_key(fn.__defaults__), _value_key(kwdefaults), cells


def map_jit(fn: Callable, rmap) -> Callable:
    """``(*args) -> fn(rmap, *args)`` compiled (:func:`lorex.evaluate.jit_once`), shared by every map of the same
    structure.

    ``rmap``: any pytree of the map (a RecurrentMap, a (step, readout) pair, a step function).  When all its leaves
    are arrays (the learned optimizer's map: :func:`lorex.lopt.recurrent_map`), the map is passed as an argument of
    the compiled function, which is cached under the map's tree structure: every map of one architecture (every
    member of a population, trained with different seeds) runs the code compiled for the first, instead of
    compiling its own with its weights baked in as constants.  Other maps (closures) are closed over as constants,
    and their compiled code is reused only for the very same objects.

    The cache key also holds ``fn``'s code and the value of every variable ``fn`` closes over (equal values of
    the same type, or the same object when unhashable), so a cached program is only reused where ``fn`` would trace
    to the same program.  ``fn`` must take the map from its first argument, not from a closure: a function built
    from another map (a fresh object) would only miss the cache.
    """
    leaves, treedef = jax.tree_util.tree_flatten(rmap)
    as_argument = all(isinstance(x, (jax.Array, np.ndarray)) for x in leaves)
    key = (_closure_key(fn), treedef, None if as_argument else tuple(_Identity(x) for x in leaves))
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = jit_once(fn) if as_argument else jit_once(functools.partial(fn, rmap))
        _compiled[key] = compiled
        if len(_compiled) > MAP_JIT_CACHE_SIZE:
            _compiled.popitem(last=False)
    else:
        _compiled.move_to_end(key)
    return functools.partial(compiled, rmap) if as_argument else compiled
