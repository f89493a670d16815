"""Files a user may load from elsewhere: arrays in ``.npz``, metadata in JSON, never pickle.

Every write is atomic (temporary file in the same folder, fsync, ``os.replace``), so a crash leaves either
the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import tempfile
import zipfile
from pathlib import Path

import jax
import numpy as np

from lorex.errors import LorexError

FORMAT_VERSION = 1


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Open a temporary file beside ``path``; on success fsync it and rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def leaf_names(tree) -> list[str]:
    """The key path of every leaf (e.g. ``['cell']['w_x']``): the array names in our ``.npz`` files."""
    paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(p) or "root" for p, _ in paths]


def save_tree(path: str | os.PathLike, tree) -> None:
    """Save the leaves of a pytree to ``.npz``, each under its key path (e.g. ``['cell']['w_x']``)."""
    names = leaf_names(tree)
    leaves = jax.tree_util.tree_leaves(tree)
    with atomic_write(path) as f:
        np.savez(f, **{n: np.asarray(x) for n, x in zip(names, leaves)})


def load_tree(path: str | os.PathLike, template):
    """Load a pytree saved by :func:`save_tree` into the structure of ``template``.

    Raises LorexError when the file is missing, corrupt or holds a different structure, shapes or dtypes.
    """
    path = Path(path)
    if not path.exists():
        raise LorexError(str(path), "file not found")
    names = leaf_names(template)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise LorexError(str(path), f"corrupt or unreadable array file ({type(e).__name__})") from None
    if set(stored) != set(names):
        raise LorexError(str(path), "holds a different set of arrays than this config expects "
                         f"({len(stored)} stored vs {len(names)} expected); it belongs to another config")
    out = []
    for n, ref in zip(names, leaves):
        a = stored[n]
        ref = np.asarray(ref)
        if a.shape != ref.shape or a.dtype != ref.dtype:
            raise LorexError(str(path), f"array {n} has shape {a.shape} {a.dtype}, expected {ref.shape} "
                             f"{ref.dtype}; it belongs to another config")
        out.append(a)
    return jax.tree_util.tree_unflatten(treedef, out)


def save_json(path: str | os.PathLike, obj) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def load_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise LorexError(str(path), "file not found")
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LorexError(str(path), f"corrupt JSON ({e.__class__.__name__})") from None


def _json_default(x):
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def versions() -> dict:
    """Versions of what produced a file: recorded in every run's metadata."""
    import optax

    import lorex

    return {
        "lorex": lorex.__version__,
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "format_version": FORMAT_VERSION,
    }


def _jaxlib_version():
    try:
        import jaxlib

        return jaxlib.__version__
    except Exception:  # pragma: no cover
        return None


def json_safe(x):
    """Recursively: numpy → Python, non-finite floats → None (strict JSON), tuples → lists."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x
