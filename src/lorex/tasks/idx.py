"""A small reader for the IDX files MNIST ships in (gzipped or not), and the loader of an MNIST folder.

IDX layout: two zero bytes, a dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64), the number of dimensions d, then d big-endian uint32 sizes, then the data, big-endian, row-major.
Every problem with a file (missing, wrong magic, unknown dtype, truncated, extra bytes, wrong shape) is one
:class:`~lorex.errors.LorexError` naming the file and what was expected.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from lorex.errors import LorexError

IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
# The four files of the standard MNIST distribution; each may also be present as NAME.gz.
MNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip detected from its first two bytes), in native byte order."""
    path = Path(path)
    expected = "an IDX file (2 zero bytes, dtype code, rank, big-endian sizes, data), optionally gzipped"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LorexError(str(path), "file not found", expected) from None
    except OSError as e:
        raise LorexError(str(path), f"cannot read ({type(e).__name__})", expected) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise LorexError(str(path), f"corrupt gzip data ({type(e).__name__})", expected) from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise LorexError(str(path), f"bad magic number {raw[:4].hex() or '(empty file)'}", expected)
    code, rank = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise LorexError(str(path), f"unknown IDX dtype code 0x{code:02x}",
                         ", ".join(f"0x{c:02x}" for c in IDX_DTYPES))
    header = 4 + 4 * rank
    if rank == 0 or len(raw) < header:
        raise LorexError(str(path), f"truncated header (rank {rank}, {len(raw)} bytes)", expected)
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=rank, offset=4))
    dtype = IDX_DTYPES[code]
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(raw) - header
    if have != need:
        what = "truncated" if have < need else "has trailing bytes"
        raise LorexError(str(path), f"{what}: {have} data bytes for shape {shape} of {dtype.name}, "
                         f"expected {need}", expected)
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_file(directory: Path, stem: str) -> Path:
    """``directory/stem`` or ``directory/stem.gz``, whichever exists; else a LorexError naming both."""
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise LorexError(str(directory / stem), "file not found (nor with .gz)",
                     "the four MNIST IDX files " + ", ".join(MNIST_FILES.values()) + " (each optionally .gz)")


def load_mnist(directory: str | Path) -> dict[str, np.ndarray]:
    """``{train_images (N, 28, 28) uint8, train_labels (N,) uint8, test_images, test_labels}`` of a folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LorexError(str(directory), "not a folder", "a folder holding the four MNIST IDX files")
    out = {}
    for key, stem in MNIST_FILES.items():
        path = find_file(directory, stem)
        a = read_idx(path)
        if key.endswith("images"):
            if a.ndim != 3 or a.dtype != np.uint8:
                raise LorexError(str(path), f"holds {a.dtype.name} of shape {a.shape}", "uint8 images (N, rows, cols)")
        else:
            if a.ndim != 1 or a.dtype != np.uint8 or (a.size and a.max() > 9):
                raise LorexError(str(path), f"holds {a.dtype.name} of shape {a.shape}", "uint8 labels 0..9 (N,)")
        out[key] = a
    for part in ("train", "test"):
        n_img, n_lab = len(out[f"{part}_images"]), len(out[f"{part}_labels"])
        if n_img != n_lab or n_img == 0:
            raise LorexError(str(find_file(directory, MNIST_FILES[f"{part}_labels"])),
                             f"{n_lab} labels for {n_img} images", "one label per image, at least one image")
    if out["train_images"].shape[1:] != out["test_images"].shape[1:]:
        raise LorexError(str(find_file(directory, MNIST_FILES["test_images"])),
                         f"images of size {out['test_images'].shape[1:]}",
                         f"the training images' size {out['train_images'].shape[1:]}")
    return out
