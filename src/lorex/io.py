"""Files a user may load from elsewhere: arrays in ``.npz``, metadata in JSON, never pickle.

Every write is atomic (temporary file in the same folder, fsync, ``os.replace``, fsync of the folder), so a crash
leaves either the old file or the new one, never half of one; a failed write (disk full, permissions) raises
:class:`~lorex.errors.RunError` naming the path and leaves the old file in place. JSON is strict: a non-finite
number is written as the string ``"inf"``, ``"-inf"`` or ``"nan"``, never as a bare ``Infinity``/``NaN``.
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

from lorex.errors import LorexError, RunError

FORMAT_VERSION = 1


TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, make_parents: bool = True):
    """Open a temporary file beside ``path``; on success fsync it, rename it onto ``path`` and fsync the folder.

    ``make_parents=False``: the folder must exist (a run folder deleted mid-run is not silently recreated).
    An OSError (disk full, permission, missing folder) becomes a one-line :class:`RunError` naming ``path``;
    the temporary file is removed and a previous ``path`` is left as it was.
    """
    path = Path(path)
    tmp = None
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except OSError as e:
        raise RunError(str(path), f"write failed ({e.strerror or type(e).__name__}); "
                       "any previous version of the file is kept") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename in ``directory`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_orphaned_tmp(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.NAME.XXXX.tmp``) that writes interrupted by a crash left in ``directory``."""
    removed = []
    for p in Path(directory).glob(f".*{TMP_SUFFIX}"):
        if p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def check_out_dir(path: str | os.PathLike, field: str = "--out") -> Path:
    """Check that ``path`` is or can become a writable folder; leaves nothing behind (a probe folder is made in
    the nearest existing ancestor and removed at once)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LorexError(field, f"{path} is an existing file", "a folder (existing or new)")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe != path and not probe.is_dir():
        raise LorexError(field, f"{path} lies under {probe}, which is a file", "a folder (existing or new)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise LorexError(field, f"{probe} is not writable", "a folder you may write to")
    try:  # access() trusts permissions only; a read-only or special file system shows when we try (and undo)
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".lorex-write-check-"))
    except OSError as e:
        raise LorexError(field, f"cannot create files in {probe} ({e.strerror or type(e).__name__})",
                         "a folder you may write to") from None
    return path


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
    text = json.dumps(strict_json(obj), indent=2, sort_keys=False, allow_nan=False)
    with atomic_write(path, "w") as f:
        f.write(text + "\n")


def _plain(x, nonfinite):
    """``x`` as plain JSON values: arrays as lists, paths as strings, non-finite floats through ``nonfinite``."""
    if isinstance(x, dict):
        return {str(k): _plain(v, nonfinite) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v, nonfinite) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return _plain(np.asarray(x).tolist(), nonfinite)
    if isinstance(x, np.generic):
        return _plain(x.item(), nonfinite)
    if isinstance(x, float) and not math.isfinite(x):
        return nonfinite(x)
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def strict_json(x):
    """``x`` with arrays as lists and non-finite floats as the strings "inf", "-inf", "nan" (valid JSON)."""
    return _plain(x, lambda v: "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))


def json_safe(x):
    """``x`` with arrays as lists and non-finite floats as None (results.json: null marks a missing number)."""
    return _plain(x, lambda v: None)


def load_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise LorexError(str(path), "file not found")
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LorexError(str(path), f"corrupt JSON ({e.__class__.__name__})") from None


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


CACHE_ENV = "LOREX_COMPILATION_CACHE"


def compilation_cache_dir() -> Path | None:
    """Where the ``lorex`` command keeps JAX's persistent compilation cache: ``$LOREX_COMPILATION_CACHE`` if it names a
    folder, none if it is ``off`` (or 0, no, false), else ``$XDG_CACHE_HOME/lorex/jax`` (default ``~/.cache``)."""
    setting = os.environ.get(CACHE_ENV, "").strip()
    if setting.lower() in ("off", "0", "no", "false"):
        return None
    if setting:
        return Path(setting).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lorex" / "jax"


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache in :func:`compilation_cache_dir` (programs that took over 0.5 s to
    compile), so a second run of the same command skips compiling them; returns the folder, or None when off or when
    the folder cannot be made (the run then simply compiles)."""
    path = compilation_cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path
