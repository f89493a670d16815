"""PCA of visited states by SVD, for 2-D/3-D projections."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PCA(NamedTuple):
    """Principal axes of states; ``project(x)`` = (x − mean) @ componentsᵀ."""

    mean: np.ndarray  # (H,)
    components: np.ndarray  # (k, H) orthonormal rows, largest-|·| entry of each positive
    explained_variance: np.ndarray  # (k,)
    explained_variance_ratio: np.ndarray  # (k,) of the total variance

    def project(self, x) -> np.ndarray:
        """Coordinates (..., k) of states (..., H)."""
        return (np.asarray(x, np.float64) - self.mean) @ self.components.T

    def reconstruct(self, z) -> np.ndarray:
        """States (..., H) from coordinates (..., k)."""
        return np.asarray(z, np.float64) @ self.components + self.mean


def pca(states, k: int | None = None) -> PCA:
    """PCA of states (..., H) (all leading axes pooled), keeping ``k`` components (all when None)."""
    x = np.asarray(states, np.float64)
    x = x.reshape((-1, x.shape[-1]))
    x = x[np.all(np.isfinite(x), axis=1)]
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = s**2 / max(x.shape[0] - 1, 1)
    total = var.sum()
    k = vt.shape[0] if k is None else min(int(k), vt.shape[0])
    vt = vt[:k]
    sign = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    vt = vt * np.where(sign == 0, 1.0, sign)[:, None]
    ratio = var[:k] / total if total > 0 else np.zeros(k)
    return PCA(mean, vt, var[:k], ratio)


def project(p: PCA, x) -> np.ndarray:
    """Function form of :meth:`PCA.project`."""
    return p.project(x)
