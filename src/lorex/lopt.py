"""The learned optimizer: a coordinatewise GRU with shared weights, exposed as an optax transformation.

One source of truth. Meta-training, the optax transformation and every analysis call these three pure functions:

* :func:`input_features`  x = φ(g): ``raw`` → [g·s_in];  ``log_sign`` → [log1p(|g|·s_in), sign g]
* :func:`gru_cell`        h' = (1 − z) ⊙ n + z ⊙ h, with z = σ(W_z x + U_z h + b_z), r = σ(W_r x + U_r h + b_r),
                          n = tanh(W_n x + b_n + r ⊙ (U_n h + c_n))  (gates fused in one matmul each for x and h)
* :func:`readout`         u = s_out · (wᵀh' + b)

Per coordinate i of the optimizee: h_i ← GRU(h_i, φ(g_i)); x_i ← x_i + u(h_i). The readout starts at zero, so an
untrained optimizer does nothing; the initial state h₀ is learned.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.ad_checkpoint import checkpoint_name

from lorex.errors import LorexError, check_choice, check_positive_int

FEATURES = ("raw", "log_sign")
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


@dataclasses.dataclass(frozen=True)
class LOptConfig:
    """Architecture of the learned optimizer (not its weights)."""

    hidden: int = 32
    features: str = "raw"
    input_scale: float = 1.0
    output_scale: float = 0.1

    def __post_init__(self):
        check_positive_int("hidden", self.hidden)
        check_choice("features", self.features, FEATURES)
        for name in ("input_scale", "output_scale"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
                raise LorexError(name, f"got {v!r}", "a finite positive number")

    @property
    def input_dim(self) -> int:
        return 1 if self.features == "raw" else 2


Params = dict[str, Any]


def init_params(key: jax.Array, config: LOptConfig) -> Params:
    """Random GRU weights (scaled normal), zero readout, zero initial state."""
    H, D = config.hidden, config.input_dim
    kx, kh = jax.random.split(key)
    return {
        "cell": {
            "w_x": jax.random.normal(kx, (D, 3 * H), jnp.float32) / jnp.sqrt(D),
            "w_h": jax.random.normal(kh, (H, 3 * H), jnp.float32) / jnp.sqrt(H),
            "b_x": jnp.zeros((3 * H,), jnp.float32),
            "b_h": jnp.zeros((3 * H,), jnp.float32),
        },
        "readout": {"w": jnp.zeros((H,), jnp.float32), "b": jnp.zeros((), jnp.float32)},
        "h0": jnp.zeros((H,), jnp.float32),
    }


def input_features(g: jax.Array, config: LOptConfig) -> jax.Array:
    """φ(g) for gradients of any shape; returns shape ``g.shape + (input_dim,)``."""
    g = g * config.input_scale
    if config.features == "raw":
        return g[..., None]
    return jnp.stack([jnp.log1p(jnp.abs(g)), jnp.sign(g)], axis=-1)


def _gates(cell: Params, h: jax.Array, x: jax.Array):
    """The GRU's gates (z, r, n) and the recurrent candidate term U_n h + c_n, for h (..., H), x (..., D)."""
    H = h.shape[-1]
    gx = x @ cell["w_x"] + cell["b_x"]
    gh = h @ cell["w_h"] + cell["b_h"]
    z = jax.nn.sigmoid(gx[..., :H] + gh[..., :H])
    r = jax.nn.sigmoid(gx[..., H : 2 * H] + gh[..., H : 2 * H])
    hn = gh[..., 2 * H :]
    n = jnp.tanh(gx[..., 2 * H :] + r * hn)
    return z, r, n, hn


def gru_cell(cell: Params, h: jax.Array, x: jax.Array) -> jax.Array:
    """One GRU step for a batch of coordinates: h (..., H), x (..., D) → h' (..., H)."""
    z, _, n, _ = _gates(cell, h, x)
    return (1.0 - z) * n + z * h


@jax.custom_vjp
def gru_cell_fast_vjp(cell: Params, h: jax.Array, x: jax.Array) -> jax.Array:
    """:func:`gru_cell` (the same forward) with a hand-written backward pass, for meta-training.

    h (..., H) and x (..., D) must share their leading shape. With a = W x + b + (U h + c) split into gates and
    h' = (1 − z) n + z h:  ∂a_z = ḣ'(h − n) z(1 − z),  ∂a_n = ḣ'(1 − z)(1 − n²),  ∂a_r = ∂a_n (U_n h + c_n) r(1 − r),
    ∂h = ḣ' z + [∂a_z, ∂a_r, r ∂a_n] Uᵀ,  ∂x = [∂a_z, ∂a_r, ∂a_n] Wᵀ; weight cotangents are the matching outer
    products summed over coordinates. Reverse mode only (no forward-mode derivative; differentiable again in
    reverse mode); tests check it against autodiff of :func:`gru_cell`.
    """
    return gru_cell(cell, h, x)


GATES_NAME = "lorex_gru_gates"  # the cell's gates in its residuals, for a rematerialization policy to keep


def _gru_fwd(cell, h, x):
    z, r, n, hn = (checkpoint_name(a, GATES_NAME) for a in _gates(cell, h, x))
    return (1.0 - z) * n + z * h, (cell, h, x, z, r, n, hn)


def _gru_bwd(res, dh1):
    cell, h, x, z, r, n, hn = res
    shape, D = h.shape, x.shape[-1]
    # all coordinates as rows of 2-D arrays (reshaping a concatenation instead makes XLA build it twice)
    h, x, z, r, n, hn, dh1 = (a.reshape(-1, a.shape[-1]) for a in (h, x, z, r, n, hn, dh1))
    da_n = dh1 * (1.0 - z) * (1.0 - n * n)
    da_z = dh1 * (h - n) * z * (1.0 - z)
    da_r = da_n * hn * r * (1.0 - r)
    # ∂a_h = [∂a_z, ∂a_r, r ∂a_n]; ∂a_x = ∂a_h + [0, 0, e] with e = (1 − r) ∂a_n (∂a_x is never built)
    dgh = jnp.concatenate([da_z, da_r, da_n * r], axis=-1)
    e = da_n - da_n * r
    n_ = slice(2 * e.shape[-1], None)  # the candidate gate's block
    b_h = jnp.sum(dgh, axis=0)
    dcell = {"w_x": (x.T @ dgh).at[:, n_].add(x.T @ e), "w_h": h.T @ dgh,
             "b_x": b_h.at[n_].add(jnp.sum(e, axis=0)), "b_h": b_h}
    dh = dh1 * z + dgh @ cell["w_h"].T
    dx = dgh @ cell["w_x"].T + e @ cell["w_x"][:, n_].T
    return dcell, dh.reshape(shape), dx.reshape(*shape[:-1], D)


gru_cell_fast_vjp.defvjp(_gru_fwd, _gru_bwd)


def readout(ro: Params, h: jax.Array, config: LOptConfig) -> jax.Array:
    """u = s_out · (wᵀh + b) for states h (..., H) → (...)."""
    return config.output_scale * (h @ ro["w"] + ro["b"])


def step(params: Params, config: LOptConfig, h: jax.Array, g: jax.Array, *,
         fast_vjp: bool = False) -> tuple[jax.Array, jax.Array]:
    """One optimizer step for coordinates with states h (..., H) and gradients g (...): (h', update).

    ``fast_vjp``: the cell's hand-written backward (:func:`gru_cell_fast_vjp`; same values, reverse mode only;
    h and g must share their leading shape), used by meta-training.
    """
    cell_fn = gru_cell_fast_vjp if fast_vjp else gru_cell
    h = cell_fn(params["cell"], h, input_features(g, config))
    return h, readout(params["readout"], h, config)


class LOptState(NamedTuple):
    """Hidden state of every coordinate: a pytree like the parameters, each leaf of shape (*leaf.shape, H)."""

    hidden: Any


def learned_optimizer(params: Params, config: LOptConfig) -> optax.GradientTransformationExtraArgs:
    """The learned optimizer as an optax transformation; works on any parameter pytree and in ``optax.chain``.

    Per leaf g of shape S with state h (*S, H): (h', u) = :func:`step` (h, g), computed in the state's dtype
    (float32) and u returned in g's dtype. Each leaf keeps its own shape, so parameters sharded per leaf keep their
    sharding and no leaf is concatenated with another.
    """
    h0 = jnp.asarray(params["h0"])

    def init_fn(p):
        return LOptState(jax.tree_util.tree_map(lambda x: jnp.broadcast_to(h0, (*jnp.shape(x), h0.shape[-1])), p))

    def leaf_step(h, g):
        h, u = step(params, config, h, g.astype(h.dtype))
        return h, u.astype(g.dtype)

    def update_fn(updates, state, params=None, **extra_args):  # leaf_step closes over the optimizer's weights
        del params, extra_args
        treedef = jax.tree_util.tree_structure(updates)
        out = [leaf_step(h, g) for h, g in zip(treedef.flatten_up_to(state.hidden), treedef.flatten_up_to(updates))]
        return treedef.unflatten([u for _, u in out]), LOptState(treedef.unflatten([h for h, _ in out]))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class RecurrentMap(NamedTuple):
    """An optimizer seen as a recurrent map, for the analysis tools.

    ``step(h, x) -> h'`` for one state h (H,) and input x (D_in,) (for an optimizer, x = [g]);
    ``readout(h) -> u`` the scalar parameter update written from the new state; ``h0`` the initial state.
    """

    step: Callable[[jax.Array, jax.Array], jax.Array]
    readout: Callable[[jax.Array], jax.Array]
    h0: jax.Array


@functools.lru_cache(maxsize=None)
def _map_functions(config: LOptConfig) -> tuple[Callable, Callable]:
    """(step(cell, h, x), readout(ro, h)) of one architecture: the same two function objects for equal configs."""

    def step_fn(cell, h, x):
        return gru_cell(cell, h, input_features(x[..., 0], config))

    def readout_fn(ro, h):
        return readout(ro, h, config)

    return step_fn, readout_fn


def recurrent_map(params: Params, config: LOptConfig) -> RecurrentMap:
    """The learned optimizer's own cell, features and readout as a :class:`RecurrentMap` (input x = [g]).

    ``step`` and ``readout`` are :class:`jax.tree_util.Partial` objects binding the weights (array leaves) to
    functions shared by every optimizer of the same config, so the map is a pytree whose leaves are all arrays and
    whose structure depends on the config only: the analyses pass it to their compiled functions as an argument and
    compile once for every optimizer of that architecture (see :func:`lorex.analysis._common.map_jit`).
    """
    step_fn, readout_fn = _map_functions(config)
    return RecurrentMap(jax.tree_util.Partial(step_fn, params["cell"]),
                        jax.tree_util.Partial(readout_fn, params["readout"]), jnp.asarray(params["h0"]))


# ----------------------------------------------------------------------------------------------- saving/loading

PARAMS_FILE = "params.npz"
META_FILE = "optimizer.json"


def save_optimizer(directory: str | Path, params: Params, config: LOptConfig, metadata: dict | None = None) -> None:
    """Write ``params.npz`` and ``optimizer.json`` (config, format version, versions, any extra metadata)."""
    from lorex import io

    directory = Path(directory)
    io.save_tree(directory / PARAMS_FILE, params)
    meta = {"format_version": io.FORMAT_VERSION, "lopt_config": dataclasses.asdict(config),
            "versions": io.versions(), **(metadata or {})}
    io.save_json(directory / META_FILE, meta)


def pretrained_names() -> list[str]:
    if not PRETRAINED_DIR.exists():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / META_FILE).exists())


MEMBER_PREFIX = "seed-"  # population members live in <folder>/seed-<k> (meta-training root seed k)
PRESET_NAMES = ("paper",)  # shipped variants of a task's optimizer trained with a preset, in <folder>/<preset>


def _base_dir(name_or_dir: str | Path) -> Path | None:
    p = Path(name_or_dir)
    if (p / META_FILE).exists() or seed_folders(p):
        return p
    if str(name_or_dir) in pretrained_names():
        return PRETRAINED_DIR / str(name_or_dir)
    return None


def seed_folders(p: str | Path, marker: str = META_FILE) -> dict[int, Path]:
    """The member folders ``p/seed-<k>`` that hold ``marker`` (a trained optimizer by default), by seed k."""
    p, out = Path(p), {}
    if p.is_dir():
        for d in p.glob(f"{MEMBER_PREFIX}*"):
            tail = d.name[len(MEMBER_PREFIX):]
            if tail.isdigit() and (d / marker).exists():
                out[int(tail)] = d
    return dict(sorted(out.items()))


def member_dirs(name_or_dir: str | Path) -> dict[int, Path]:
    """The trained optimizers of a population, by meta-training root seed (sorted).

    A shipped name: its reference optimizer (under its own seed, 0) and the members shipped beside it; a folder
    written by ``lorex train --seeds``: its ``seed-<k>`` members; a single run folder: itself.
    """
    from lorex import io

    base = _base_dir(name_or_dir)
    if base is None:
        resolve_optimizer_dir(name_or_dir)  # raises the error that names what is allowed
    found = seed_folders(base)
    if (base / META_FILE).exists():
        own = io.load_json(base / META_FILE)
        seed = own.get("seed", 0) if isinstance(own, dict) else 0
        found.setdefault(int(seed) if isinstance(seed, int) else 0, base)
    return dict(sorted(found.items()))


def resolve_optimizer_dir(name_or_dir: str | Path, *, seed: int | None = None, preset: str | None = None) -> Path:
    """A shipped optimizer's name (``"linreg"``…) or a run folder → the folder that holds it.

    ``seed=k``: member k of the population (:func:`member_dirs`); ``preset="paper"``: the optimizer trained with
    that preset (shipped beside the task's reference, in ``<name>/paper``).
    """
    base = _base_dir(name_or_dir)
    if base is None:
        raise LorexError("optimizer", f"{str(name_or_dir)!r} is neither a shipped optimizer nor a folder holding "
                         f"{META_FILE}", pretrained_names() + ["a run folder written by `lorex train`"])
    if preset is not None:
        if preset not in PRESET_NAMES:
            raise LorexError("preset", f"got {preset!r}", list(PRESET_NAMES))
        if seed is not None:
            raise LorexError("seed", "given with preset", "one of seed= (a population member) or preset=")
        if not (base / preset / META_FILE).exists():
            have = [n for n in PRESET_NAMES if (base / n / META_FILE).exists()]
            raise LorexError("preset", f"{str(name_or_dir)!r} has no {preset!r} optimizer",
                             have or ["none shipped for this optimizer"])
        return base / preset
    if seed is None:
        if (base / META_FILE).exists():
            return base
        raise LorexError("seed", f"{base} is a population; say which member", [str(k) for k in member_dirs(base)])
    members = member_dirs(base)
    if seed not in members:
        raise LorexError("seed", f"{str(name_or_dir)!r} has no member {seed!r}", [str(k) for k in members])
    return members[seed]


def portable_name(directory: str | Path) -> str:
    """How reports name an optimizer's folder: a shipped one by its place in the package ("shipped optimizer
    linreg/seed-3"), never by where this machine installed it; any other by the path the user gave."""
    d = Path(directory)
    try:
        return f"shipped optimizer {d.resolve().relative_to(PRETRAINED_DIR.resolve())}"
    except ValueError:
        return str(directory)


def load_params(name_or_dir: str | Path, *, seed: int | None = None,
                preset: str | None = None) -> tuple[Params, LOptConfig, dict]:
    """(params, config, metadata) of a shipped optimizer or of a run folder (``seed``/``preset``: see
    :func:`resolve_optimizer_dir`)."""
    from lorex import io

    d = resolve_optimizer_dir(name_or_dir, seed=seed, preset=preset)
    meta = io.load_json(d / META_FILE)
    if not isinstance(meta, dict):
        raise LorexError(str(d / META_FILE), f"expected an object, got {type(meta).__name__}",
                         "an optimizer.json written by lorex")
    if meta.get("format_version") != io.FORMAT_VERSION:
        raise LorexError(str(d / META_FILE), f"format_version {meta.get('format_version')!r}",
                         [str(io.FORMAT_VERSION)])
    if not isinstance(meta.get("lopt_config"), dict):
        raise LorexError(str(d / META_FILE), f"lopt_config is {meta.get('lopt_config')!r}",
                         "an object with hidden, features, input_scale, output_scale")
    try:
        config = LOptConfig(**meta["lopt_config"])
    except LorexError as e:
        raise LorexError(f"{d / META_FILE}: lopt_config.{e.field}", str(e).split(": ", 1)[1]) from None
    except TypeError as e:
        raise LorexError(str(d / META_FILE), f"bad lopt_config ({e})") from None
    template = init_params(jax.random.PRNGKey(0), config)
    params = jax.tree_util.tree_map(jnp.asarray, io.load_tree(d / PARAMS_FILE, template))
    return params, config, meta


def load_members(dirs: dict[int, Path]) -> tuple[dict, LOptConfig, dict]:
    """({seed: weights}, the shared architecture, {seed: metadata}); members of different architectures are an
    error (a population is one configuration trained from several seeds)."""
    params, metas, config = {}, {}, None
    for s, d in dirs.items():
        p, c, md = load_params(d)
        if config is not None and c != config:
            raise LorexError(f"population member seed {s}", f"architecture {dataclasses.asdict(c)} differs from "
                             f"the first member's {dataclasses.asdict(config)}", "members of one configuration")
        params[s], metas[s], config = p, md, c
    return params, config, metas


def load_optimizer(name_or_dir: str | Path, *, seed: int | None = None,
                   preset: str | None = None) -> optax.GradientTransformationExtraArgs:
    """A trained learned optimizer as an optax transformation, from a shipped name or a run folder.

    ``load_optimizer("linreg")`` is the task's reference optimizer; ``seed=k`` member k of its population
    (k = 0…4 shipped; 0 is the reference); ``preset="paper"`` the GRU-256 one where shipped.
    """
    params, config, _ = load_params(name_or_dir, seed=seed, preset=preset)
    return learned_optimizer(params, config)
