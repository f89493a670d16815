"""The fixed-point finder on an RNN that is not an optimizer: a 16-unit Hopfield-style tanh RNN.

    /work/venv/bin/python benchmarks/example_rnn_fixed_points.py

h' = tanh(W h) with W = (g/H) Σ_μ p_μ p_μᵀ for two orthogonal ±1 patterns p_μ and gain g = 2: the stored patterns
(and their negatives) are stable attractors, the origin is an unstable fixed point, and mixtures give saddles.
"""

import jax
import jax.numpy as jnp
import numpy as np

import lorex.analysis as la

H, GAIN = 16, 2.0
P = np.stack([np.ones(H), np.tile([1.0, -1.0], H // 2)])  # two orthogonal patterns
W = jnp.asarray(GAIN / H * P.T @ P, jnp.float32)


def step(h, x):
    return jnp.tanh(W @ h + x[0])


seeds = jax.random.normal(jax.random.PRNGKey(0), (256, H))
fps = la.find_fixed_points(step, seeds)
print(f"{fps.n_converged}/{fps.n_seeds} seeds converged to {len(fps.points)} distinct fixed points "
      f"(max q {fps.q.max():.1e})")
print("overlap with p1, p2 | stable | |λ|max | unstable modes")
order = np.lexsort((-np.abs(fps.points @ P[0]), fps.stable))
for i in order:
    m = fps.points[i] @ P.T / H
    lam = np.abs(fps.eigenvalues[i])
    print(f"  {m[0]:+.3f} {m[1]:+.3f}      | {bool(fps.stable[i])!s:5} | {lam[0]:.3f}  | {int((lam > 1).sum())}")
