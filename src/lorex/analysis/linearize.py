"""Linearization of a recurrent optimizer around a fixed point, read as a sum of heavy-ball momentum terms.

Around h* (input x* = 0):  δh_{k+1} = J δh_k + B g_k  with J = ∂F/∂h, B = ∂F/∂g, and the update is read from the NEW
state, u_k = wᵀ δh_{k+1} with w = ∇R(h*).  With J = Σ λ_i r_i l_iᵀ (l_iᵀ r_j = δ_ij), mode m_i = l_iᵀ δh obeys
m_{k+1} = λ_i m_k + (l_iᵀB) g_k and u_k = Σ (wᵀr_i) m_{i,k+1}.  Heavy ball is v_{k+1} = β v_k + g_k, u_k = −α v_{k+1},
so each mode is a momentum term with β_i = λ_i and α_i = −(wᵀr_i)(l_iᵀB)  (for the lorex readout w = s_out·w_ro).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lorex.analysis._common import input_of, map_jit, split_map


def eigenmodes(jac) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-decomposition of (..., H, H) matrices on the host, sorted by |λ| descending.

    Returns (λ (..., H), R (..., H, H), L (..., H, H)); column i of R is r_i (unit norm), column i of L is l_i with
    l_iᵀ r_j = δ_ij, so J = R diag(λ) Lᵀ.  Computed in float64/complex128.
    """
    jac = np.asarray(jac, np.float64)
    w, R = np.linalg.eig(jac)
    order = np.argsort(-np.abs(w), axis=-1, kind="stable")
    w = np.take_along_axis(w, order, axis=-1)
    R = np.take_along_axis(R, order[..., None, :], axis=-1)
    try:
        L = np.swapaxes(np.linalg.inv(R), -1, -2)
    except np.linalg.LinAlgError:  # defective matrix: best effort
        L = np.swapaxes(np.linalg.pinv(R), -1, -2)
    return w, R, L


def timescales(eigenvalues) -> np.ndarray:
    """τ = −1/ln|λ| (iterations for a mode to decay by e); inf at |λ| = 1, negative for growing modes, 0 at λ = 0."""
    a = np.abs(np.asarray(eigenvalues))
    with np.errstate(divide="ignore"):
        return np.where(a == 0, 0.0, -1.0 / np.log(np.where(a == 0, 0.5, a)))


class MomentumModes(NamedTuple):
    """Momentum terms of the linearized optimizer, slowest mode first (leading batch axes if h* was batched)."""

    betas: np.ndarray  # (H,) β_i = λ_i (complex for oscillating pairs)
    alphas: np.ndarray  # (H,) α_i = −(wᵀr_i)(l_iᵀB)
    timescales: np.ndarray  # (H,) −1/ln|λ_i|
    right_eigenvectors: np.ndarray  # (H, H) column i = r_i
    left_eigenvectors: np.ndarray  # (H, H) column i = l_i
    jac_state: np.ndarray  # (H, H) J = ∂F/∂h
    jac_input: np.ndarray  # (H,) B = ∂F/∂g
    readout_grad: np.ndarray  # (H,) w = ∇R at the new state F(h*, x*)
    alpha_eff: np.ndarray  # () Σ α_i = −wᵀB = −dU/dg at g = 0


def momentum_modes(rmap, h_star, readout=None, *, x_star=None, input_dim: int = 1,
                   input_index: int = 0) -> MomentumModes:
    """Eigenmodes of the linearization at ``h_star`` (H,) or (k, H) as momentum terms (β_i, α_i, τ_i).

    ``rmap``: a RecurrentMap, a (step, readout) pair, or a step function with ``readout=``.  ``x_star``: the input
    around which to linearize (default zeros (input_dim,)); the gradient enters in slot ``input_index``.
    """
    step, ro = split_map(rmap, readout)
    h_star = jnp.asarray(h_star)
    batch = h_star.shape[:-1]
    hs = h_star.reshape((-1, h_star.shape[-1]))
    x = input_of(jnp.zeros((), hs.dtype), input_dim, input_index) if x_star is None else jnp.asarray(x_star, hs.dtype)

    def lin(pair, hs, x):
        step, ro = pair

        def one(h):
            J, Bx = jax.jacfwd(step, argnums=(0, 1))(h, x)
            w = jax.grad(ro)(step(h, x))
            return J, Bx[:, input_index], w

        return jax.vmap(one)(hs)

    J, B, w = map_jit(lin, (step, ro))(hs, x)
    J, B, w = (np.asarray(a, np.float64) for a in (J, B, w))
    lam, R, L = eigenmodes(J)
    wr = np.einsum("nh,nhi->ni", w, R)
    lb = np.einsum("nhi,nh->ni", L, B)
    alphas = -wr * lb
    H = hs.shape[-1]

    def shape(a, tail):
        return a.reshape(batch + tail)

    return MomentumModes(shape(lam, (H,)), shape(alphas, (H,)), shape(timescales(lam), (H,)), shape(R, (H, H)),
                         shape(L, (H, H)), shape(J, (H, H)), shape(B, (H,)), shape(w, (H,)),
                         shape(-np.einsum("nh,nh->n", w, B), ()))


def polyak_optimum(lambda_min: float, lambda_max: float) -> tuple[float, float]:
    """Optimal heavy ball for Hessian eigenvalues in [λmin, λmax]: α* = 4/(√λmin+√λmax)², β* = ((√κ−1)/(√κ+1))²."""
    a, b = float(lambda_min) ** 0.5, float(lambda_max) ** 0.5
    return 4.0 / (a + b) ** 2, ((b - a) / (b + a)) ** 2
