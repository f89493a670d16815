"""One root seed, split into named, disjoint streams of PRNG keys.

``stream(seed, name)`` = fold_in(PRNGKey(seed), id(name)): meta-training, validation, tuning and test problems come
from different streams, so no test problem is ever seen by tuning or meta-training.
"""

from __future__ import annotations

import jax

from lorex.errors import LorexError

STREAMS = {"meta_train": 1, "validation": 2, "tuning": 3, "test": 4, "analysis": 5, "init": 6}


def stream(seed: int, name: str) -> jax.Array:
    if name not in STREAMS:
        raise LorexError("stream", f"unknown stream {name!r}", STREAMS)
    return jax.random.fold_in(jax.random.PRNGKey(seed), STREAMS[name])


def keys(seed: int, name: str, n: int) -> jax.Array:
    """``n`` keys (shape (n, 2)) from the named stream of the root ``seed``."""
    return jax.random.split(stream(seed, name), n)
