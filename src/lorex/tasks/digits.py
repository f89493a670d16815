"""Handwritten digits: a small convolutional network trained with softmax cross-entropy on per-step minibatches.

The fourth task of the paper (there a CNN on MNIST). The network, for ``channels=(8, 8)`` on 8×8 images::

    image (8, 8, 1) → conv 3×3, 8 channels, ReLU → max-pool 2×2 → (4, 4, 8)
                    → conv 3×3, 8 channels, ReLU → max-pool 2×2 → (2, 2, 8) → linear 32 → 10 logits

which has 80 + 584 + 330 = 994 parameters (``Digits().n_params()``). Convolutions are 'same'-padded; each is
followed by a 2×2 max-pool (floor), so the linear layer takes whatever spatial size is left. Initialization:
He-normal convolutions, LeCun-normal linear layer, zero biases.

Data. By default the 8×8 digits that scikit-learn ships (1797 images, pixel values 0..16), stored in this package as
``data/digits8x8.npz`` (extracted by ``scripts/extract_digits.py``; licence in ``data/LICENSE-digits.txt``). They
are shipped as a 45 kB array file rather than read from scikit-learn at run time so that lorex keeps its few
dependencies (scikit-learn would add scipy, joblib and threadpoolctl for one 115 kB array). A fixed permutation
(``split_seed``) holds out ``heldout`` images (default 297, leaving 1500 for training). With ``data=DIR`` the four
standard MNIST IDX files in ``DIR`` are read instead (:mod:`lorex.tasks.idx`, gzipped or not): the images are
downsampled 28×28 → 14×14 by 2×2 averaging (the same network then ends in a 3×3×8 map, 1394 parameters), the 60000
training images are the training part and the held-out part is the first ``heldout`` t10k images (default: all).
Pixels are standardized by the training part's mean and standard deviation.

Stochasticity. A problem is one PRNG key, its minibatch order; the initialization comes from the separate init key
(:func:`lorex.evaluate.problem_and_params`), so each problem draws both its own. ``minibatch(problem, t)`` draws the
``batch`` training images of step t (uniformly, with replacement, from ``fold_in(key, t)``): a pure function of the
problem and the step, so runs are reproducible, vmappable and identical under rematerialization.
``loss(params, problem)`` is the mean cross-entropy over whatever images the problem holds: a minibatch from
``minibatch``, or the whole training part for the bare problem (deterministic: the final loss of a run, as
:func:`lorex.evaluate.run` reports it, and analysis).
``metrics(params, problem)`` is the held-out accuracy (and held-out loss) of final parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lorex.errors import LorexError
from lorex.tasks.base import TaskPolicy, check_field, register

SHIPPED = Path(__file__).parent / "data" / "digits8x8.npz"
DEFAULT_HELDOUT = 297  # of the 1797 shipped digits (leaves 1500 for training)
N_CLASSES = 10


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def downsample2(images: np.ndarray) -> np.ndarray:
    """(N, H, W) → (N, H//2, W//2) by 2×2 averaging, rounded back to uint8."""
    n, h, w = images.shape
    x = images[:, : h // 2 * 2, : w // 2 * 2].astype(np.float32).reshape(n, h // 2, 2, w // 2, 2)
    return np.round(x.mean(axis=(2, 4))).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def load_data(data: str, heldout: int | None, split_seed: int) -> dict[str, np.ndarray]:
    """Training and held-out arrays: images uint8 (N, H, W), labels int32, and the standardization (mean, std)."""
    if data:
        from lorex.tasks.idx import load_mnist

        m = load_mnist(data)
        x_tr, y_tr = downsample2(m["train_images"]), m["train_labels"]
        x_te, y_te = downsample2(m["test_images"]), m["test_labels"]
        n_held = len(x_te) if heldout is None else heldout
        if n_held > len(x_te):
            raise LorexError("digits.heldout", f"got {heldout} but {data} holds {len(x_te)} test images",
                             f"an integer in 1..{len(x_te)}")
        x_te, y_te = x_te[:n_held], y_te[:n_held]
    else:
        with np.load(SHIPPED, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
        n_held = DEFAULT_HELDOUT if heldout is None else heldout
        if n_held >= len(images):
            raise LorexError("digits.heldout", f"got {heldout}", f"an integer in 1..{len(images) - 1}")
        perm = np.random.default_rng(split_seed).permutation(len(images))
        x_te, y_te = images[perm[:n_held]], labels[perm[:n_held]]
        x_tr, y_tr = images[perm[n_held:]], labels[perm[n_held:]]
    mean = float(x_tr.mean())
    std = float(x_tr.std()) or 1.0
    return {"x_train": x_tr, "y_train": y_tr.astype(np.int32), "x_heldout": x_te, "y_heldout": y_te.astype(np.int32),
            "mean": mean, "std": std}


def conv3x3(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """'Same' 3×3 convolution as one matmul over stacked shifted copies: x (N, H, W, C), w (3, 3, C, O)."""
    _, h, wd, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([xp[:, i : i + h, j : j + wd, :] for i in range(3) for j in range(3)], axis=-1)
    return patches @ w.reshape(9 * c, -1) + b


def maxpool2(x: jax.Array) -> jax.Array:
    """2×2 max-pool (floor): (N, H, W, C) → (N, H//2, W//2, C)."""
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2, :].reshape(n, h // 2, 2, w // 2, 2, c)
    return x.max(axis=(2, 4))


POLICY = TaskPolicy(
    lr_range=(-3.0, 0.5),
    # digits costs ~3x more per run than two moons (a CNN on a minibatch each step), so 8 tuning seeds keep
    # `lorex benchmark --task digits` near 3 min
    tuning_seeds=8,
    # RMSProp's best decay was the lowest default (0.5), so its grid extends down to 0 (no averaging: the update is
    # lr·g/|g|, signSGD), a natural limit.
    second_grids={"rmsprop": (0.0, 0.5, 0.9, 0.99, 0.999, 0.9999)},
    # Minibatch gradients ~0.1 at the start and ~0.03 late (median |g|), so ×10 before the GRU; GRU-16 and 8 problems
    # per step as on two moons, full second-order meta-gradients, and the objective log_final: mean log loss plus
    # the log of the final loss on the whole training part. With mean log loss alone (150 meta-steps) the optimizer
    # led Adam until step ~130 of 200 and then stalled (final training loss 0.199 against Adam's 0.166); the final
    # term, measured on the whole training part rather than one noisy minibatch, fixes the end of the run. 300
    # meta-steps: the validation objective still improved at 150 (-6.34) and at 300 (-6.48).
    meta_defaults={"hidden": 16, "batch": 8, "input_scale": 10.0, "meta_lr": 1e-3, "steps": 300,
                   "objective": "log_final",
                   "val_every": 25, "val_batch": 16, "checkpoint_every": 25},
    # the mechanism family: one meta-training seed per leave-one-out variant, as on two moons (each costs as much
    # as the task's CNN, which dominates a meta-step)
    family_defaults={"loo_seeds": (0,), "val_batch": 16},
)


SPLIT_CHUNK = 250  # images per chunk when a loss runs over a whole split (Digits._split_xent)


@register("digits")
@dataclasses.dataclass(frozen=True)
class Digits:
    channels: tuple[int, ...] = (8, 8)
    batch: int = 16
    heldout: int | None = None  # None: 297 of the shipped digits, all t10k images of MNIST
    split_seed: int = 0
    data: str = ""  # "": the shipped 8×8 digits; a folder: the four MNIST IDX files in it
    steps: int = 200

    policy = POLICY  # how lorex tunes and meta-trains on this task (see POLICY)

    def __post_init__(self):
        ch = self.channels
        check_field("digits", "channels", isinstance(ch, (tuple, list)) and len(ch) >= 1
                    and all(_is_int(c) and c > 0 for c in ch), "one or more positive integers, e.g. (8, 8)", ch)
        object.__setattr__(self, "channels", tuple(int(c) for c in ch))
        check_field("digits", "batch", _is_int(self.batch) and self.batch > 0, "a positive integer", self.batch)
        check_field("digits", "heldout", self.heldout is None or (_is_int(self.heldout) and self.heldout > 0),
                    "a positive integer or None", self.heldout)
        check_field("digits", "split_seed", _is_int(self.split_seed), "an integer", self.split_seed)
        check_field("digits", "data", isinstance(self.data, (str, Path)), "'' (shipped digits) or a folder",
                    self.data)
        object.__setattr__(self, "data", str(self.data))
        check_field("digits", "steps", _is_int(self.steps) and self.steps > 0, "a positive integer", self.steps)
        side = min(self._arrays()["x_train"].shape[1:])  # loads (and checks) the data now
        check_field("digits", "channels", side >> len(self.channels) >= 1,
                    f"at most {int(math.log2(side))} layers for {side}×{side} images (each halves the size)", ch)

    # ----------------------------------------------------------------------------------------------- data

    def _arrays(self) -> dict:
        return load_data(self.data, self.heldout, self.split_seed)

    def _images(self, raw) -> jax.Array:
        d = self._arrays()
        return ((jnp.asarray(raw, jnp.float32) - d["mean"]) / d["std"])[..., None]

    # ----------------------------------------------------------------------------------------------- protocol

    def sample(self, key: jax.Array) -> dict:
        """A problem: the key of its minibatch order."""
        return {"order": key}

    def minibatch(self, problem: dict, step) -> dict:
        """The problem as the loss sees it at optimization step ``step``: its ``batch`` images and labels."""
        d = self._arrays()
        idx = jax.random.randint(jax.random.fold_in(problem["order"], step), (self.batch,), 0, len(d["y_train"]))
        return {"order": problem["order"], "x": jnp.asarray(d["x_train"])[idx], "y": jnp.asarray(d["y_train"])[idx]}

    def init(self, key: jax.Array, problem: dict) -> dict:
        del problem
        d = self._arrays()
        h, w = d["x_train"].shape[1:]
        keys = jax.random.split(key, len(self.channels) + 1)
        params, c_in = {}, 1
        for i, (k, c_out) in enumerate(zip(keys, self.channels)):
            params[f"conv{i}"] = {"w": jax.random.normal(k, (3, 3, c_in, c_out)) * jnp.sqrt(2.0 / (9 * c_in)),
                                  "b": jnp.zeros((c_out,))}
            c_in, h, w = c_out, h // 2, w // 2
        n_in = h * w * c_in
        params["linear"] = {"w": jax.random.normal(keys[-1], (n_in, N_CLASSES)) / jnp.sqrt(n_in),
                            "b": jnp.zeros((N_CLASSES,))}
        return params

    def logits(self, params: dict, images: jax.Array) -> jax.Array:
        """Logits (N, 10) of standardized images (N, H, W, 1)."""
        x = images
        for i in range(len(self.channels)):
            x = maxpool2(jax.nn.relu(conv3x3(x, params[f"conv{i}"]["w"], params[f"conv{i}"]["b"])))
        return x.reshape(x.shape[0], -1) @ params["linear"]["w"] + params["linear"]["b"]

    def _sums(self, params: dict, raw_images, labels, weights) -> tuple[jax.Array, jax.Array]:
        """Σ w·cross-entropy and Σ w·[argmax = label] over the images (weights 0 mark padding)."""
        z = self.logits(params, self._images(raw_images))
        nll = jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, labels[:, None], axis=-1)[:, 0]
        return jnp.sum(weights * nll), jnp.sum(weights * (jnp.argmax(z, axis=-1) == labels))

    def _split_xent(self, params: dict, split: str) -> tuple[jax.Array, jax.Array]:
        """Mean cross-entropy and accuracy over a whole split ("train" or "heldout"), SPLIT_CHUNK images at a time.

        One pass over all images at once holds every image's convolution patches; vmapped over 128 runs and five
        optimizers that was ~10 GB for the 1500 shipped training digits (and would be far more for MNIST's 60 000),
        so the split is padded to whole chunks and summed chunk by chunk (``lax.map``): the same arithmetic, the
        memory of one chunk.
        """
        d = self._arrays()
        x, y = d[f"x_{split}"], d[f"y_{split}"]
        n = len(y)
        k = -(-n // SPLIT_CHUNK)
        pad = k * SPLIT_CHUNK - n
        xs = np.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(k, SPLIT_CHUNK, *x.shape[1:])
        ys = np.pad(y, (0, pad)).reshape(k, SPLIT_CHUNK)
        ws = (np.arange(k * SPLIT_CHUNK) < n).astype(np.float32).reshape(k, SPLIT_CHUNK)
        nll, correct = jax.lax.map(lambda c: self._sums(params, *c), (xs, ys, ws))
        return jnp.sum(nll) / n, jnp.sum(correct) / n

    def loss(self, params: dict, problem: dict) -> jax.Array:
        """Mean cross-entropy on the problem's images: a step's minibatch, or the whole training part."""
        if "x" in problem:
            y = problem["y"]
            return self._sums(params, problem["x"], y, jnp.ones(y.shape))[0] / y.shape[0]
        return self._split_xent(params, "train")[0]

    def metrics(self, params: dict, problem: dict) -> dict:
        """Held-out accuracy and held-out cross-entropy of ``params``."""
        del problem
        loss, acc = self._split_xent(params, "heldout")
        return {"accuracy": acc, "heldout_loss": loss}

    def n_params(self) -> int:
        p = self.init(jax.random.PRNGKey(0), None)
        return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(p)))
