"""Shared helpers: normalize "a recurrent map" arguments, build the input x for a scalar gradient g."""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from lorex.errors import LorexError


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
