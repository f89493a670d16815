"""Write src/lorex/tasks/data/digits8x8.npz: scikit-learn's 8×8 handwritten digits as plain arrays (no pickle).

Run once, with scikit-learn installed (it is not a dependency of lorex):

    python scripts/extract_digits.py

The file holds ``images`` (1797, 8, 8) uint8 with values 0..16 and ``labels`` (1797,) uint8 in 0..9, in
scikit-learn's order. The data are the test part of the UCI "Optical Recognition of Handwritten Digits" set
(Alpaydin & Kaynak, 1998), as shipped by scikit-learn under its BSD-3-Clause licence; see
src/lorex/tasks/data/LICENSE-digits.txt.
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parents[1] / "src" / "lorex" / "tasks" / "data" / "digits8x8.npz"


def main() -> None:
    d = load_digits()
    images = np.asarray(d.images)
    assert images.shape == (1797, 8, 8) and images.min() >= 0 and images.max() <= 16
    assert np.array_equal(images, np.round(images))
    labels = np.asarray(d.target)
    assert labels.shape == (1797,) and set(labels.tolist()) == set(range(10))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, images=images.astype(np.uint8), labels=labels.astype(np.uint8))
    print(f"wrote {OUT.relative_to(OUT.parents[3])} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
