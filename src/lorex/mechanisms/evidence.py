"""What an optimizer met on a task, and the operating points every probe must respect.

:class:`Evidence` holds recorded runs of a recurrent map (states, gradients, losses over several analysis problems).
From it come the validity gates shared by the four mechanisms:

* the range of gradients met (percentiles of |g|): probes and fits stay inside it;
* whether a zero gradient is "met": the map's response to the smallest gradients met must be close to its response
  to g = 0, ‖F(h, ±g_p1) − F(h, 0)‖ <= 5 % of ‖F(h, ±g_median) − F(h, 0)‖ at states visited late in the runs (the
  median, not the largest gradient: a jump at 0 that is small beside the response to the rare largest gradients is
  still large beside the typical one).  Raw gradient features pass when tiny gradients occur; log/sign features,
  whose sign input jumps at 0, do not;
* which runs converged (gradients shrank 100× from the first to the last tenth of the run): the convergence fixed
  point is sought among their final states;
* α_eff = −dU/dg by autodiff at g = 0 where a zero gradient is met, otherwise the central difference
  −(U(δ) − U(−δ))/(2δ) at δ = the median |g| met (an input the optimizer does receive).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lorex import analysis as A
from lorex.analysis._common import map_jit
from lorex.analysis.update_function import fd_argument

ZERO_MET_RATIO = 0.05
CONVERGED_SHRINK = 1e-2
ALPHA_CHUNK = 1 << 17


class Evidence(NamedTuple):
    """Recorded runs of one optimizer: S analysis problems, T steps, N coordinates, H state units."""

    states: np.ndarray  # (S, T, N, H) state after each step (the state the readout saw)
    grads: np.ndarray  # (S, T, N) gradient received at each step
    losses: np.ndarray  # (S, T + 1) loss before each step, then the final loss
    h0: np.ndarray  # (H,) initial state

    @property
    def n_runs(self) -> int:
        return int(self.states.shape[0])

    @property
    def steps(self) -> int:
        return int(self.states.shape[1])

    def states_before(self) -> np.ndarray:
        """(S, T, N, H): the state each gradient met (h₀ for the first step)."""
        S, _, N, H = self.states.shape
        first = np.broadcast_to(self.h0.astype(self.states.dtype), (S, 1, N, H))
        return np.concatenate([first, self.states[:, :-1]], axis=1)


def record(rmap, family, keys, steps: int | None = None) -> Evidence:
    """Run ``rmap`` (coordinatewise, as the optax transformation does) on the problems of ``keys`` (S, 2)."""
    def run(rmap, keys):
        return jax.vmap(lambda k: A.record_map_trajectory(rmap, family, k, steps))(keys)

    tr = map_jit(run, rmap)(jnp.asarray(keys))
    return Evidence(np.asarray(tr.states), np.asarray(tr.grads), np.asarray(tr.losses, np.float64),
                    np.asarray(rmap.h0))


def replay(rmap, grads, losses=None) -> Evidence:
    """Evidence from given gradient sequences ``grads`` (S, T, N): the map is driven by them (no task); for tests
    and for gradients recorded elsewhere.  ``losses`` default to the per-run RMS gradient (a stand-in)."""
    g = jnp.asarray(grads)
    h0 = jnp.asarray(rmap.h0)

    def run(rmap, g):
        cell = jax.vmap(lambda h, gi: rmap.step(h, gi[None].astype(h.dtype)))

        def one(gs):
            def body(h, gt):
                h = cell(h, gt)
                return h, h

            start = jnp.asarray(rmap.h0)
            _, hs = jax.lax.scan(body, jnp.broadcast_to(start, (gs.shape[1], start.shape[0])), gs)
            return hs

        return jax.vmap(one)(g)

    states = np.asarray(map_jit(run, rmap)(g))
    if losses is None:
        rms = np.sqrt(np.mean(np.asarray(grads, np.float64) ** 2, axis=2))
        losses = np.concatenate([rms, rms[:, -1:]], axis=1)
    return Evidence(states, np.asarray(grads), np.asarray(losses, np.float64), np.asarray(h0))


class GradientRange(NamedTuple):
    """Percentiles of the nonzero finite |g| met."""

    p1: float
    p10: float
    median: float
    p99: float
    max: float
    count: int
    share_zero: float


def gradient_range(ev: Evidence) -> GradientRange:
    g = np.abs(np.asarray(ev.grads, np.float64))
    g = g[np.isfinite(g)]
    nz = g[g > 0]
    if nz.size == 0:
        return GradientRange(*([float("nan")] * 5), int(g.size), 1.0)
    p = np.percentile(nz, [1, 10, 50, 99])
    return GradientRange(*(float(v) for v in p), float(nz.max()), int(g.size), float(1 - nz.size / max(1, g.size)))


def converged_runs(ev: Evidence) -> np.ndarray:
    """(S,) bool: finite runs whose RMS gradient over the last tenth is <= 1e-2 × that over the first tenth."""
    g = np.asarray(ev.grads, np.float64)
    k = max(1, ev.steps // 10)
    first = np.sqrt(np.mean(g[:, :k] ** 2, axis=(1, 2)))
    last = np.sqrt(np.mean(g[:, -k:] ** 2, axis=(1, 2)))
    fin = np.all(np.isfinite(g), axis=(1, 2)) & np.all(np.isfinite(ev.losses), axis=1)
    return fin & (last <= CONVERGED_SHRINK * first)


def late_states(ev: Evidence, n: int = 256) -> np.ndarray:
    """Up to ``n`` finite states from the last step of every run (evenly subsampled), (n, H)."""
    h = np.asarray(ev.states[:, -1], np.float64).reshape(-1, ev.states.shape[-1])
    h = h[np.all(np.isfinite(h), axis=1)]
    if h.shape[0] > n:
        h = h[np.linspace(0, h.shape[0] - 1, n).astype(int)]
    return h


class ZeroInput(NamedTuple):
    met: bool
    ratio: float  # max over signs of median ‖F(h, ±g_p1) − F(h, 0)‖ / ‖F(h, ±g_median) − F(h, 0)‖
    reason: str | None


def zero_input(rmap, ev: Evidence, grange: GradientRange | None = None) -> ZeroInput:
    """Is a zero gradient an input the optimizer effectively meets?  (See the module docstring.)"""
    gr = grange or gradient_range(ev)
    if not np.isfinite(gr.p1):
        return ZeroInput(False, float("nan"), "no nonzero gradient was met")
    h = jnp.asarray(late_states(ev, 128), ev.states.dtype)
    step = jax.vmap(rmap.step, in_axes=(0, None))  # eager, as before: its primitives take the weights as arguments

    def resp(g):
        return np.asarray(step(h, jnp.asarray([g], h.dtype)), np.float64)

    base = resp(0.0)
    ratios = []
    for s in (1.0, -1.0):
        lo = np.linalg.norm(resp(s * gr.p1) - base, axis=1)
        hi = np.linalg.norm(resp(s * gr.median) - base, axis=1)
        ratios.append(float(np.median(lo / np.maximum(hi, 1e-30))))
    r = max(ratios)
    if r <= ZERO_MET_RATIO:
        return ZeroInput(True, r, None)
    return ZeroInput(False, r, (f"a zero gradient is never met: the map's response to the smallest gradients met "
                                f"(|g| = {gr.p1:.3g}, 1st percentile) differs from its response to g = 0 by "
                                f"{r:.0%} of its response to the median |g| (over {ZERO_MET_RATIO:.0%}), as for "
                                "sign features, which jump at 0"))


class Operating(NamedTuple):
    """The operating range of one optimizer on its runs, shared by the mechanisms (computed once by ``analyze``)."""

    gradients: GradientRange
    zero: ZeroInput
    fd_step: float | None  # α_eff's finite-difference step; None = autodiff at g = 0


def operating(rmap, ev: Evidence) -> Operating:
    """Gradient range, whether a zero gradient is met, and the α_eff method that follows from it."""
    gr = gradient_range(ev)
    zero = zero_input(rmap, ev, gr)
    return Operating(gr, zero, alpha_eff_method(zero, gr))


def alpha_eff_method(zero: ZeroInput, grange: GradientRange) -> float | None:
    """The finite-difference step δ for α_eff (None = autodiff at g = 0; see the module docstring)."""
    return None if zero.met else float(grange.median)


def alpha_eff_method_text(fd_step: float | None) -> str:
    return ("autodiff at g = 0" if fd_step is None else
            f"central difference at δ = {fd_step:.4g} (median |g| met; a zero gradient is not met)")


def alpha_eff_at(rmap, states, fd_step: float | None) -> np.ndarray:
    """α_eff at states (..., H), in chunks (bounded memory for millions of visited states)."""
    states = np.asarray(states)
    flat = states.reshape(-1, states.shape[-1])
    autodiff = fd_step is None
    fn = map_jit(lambda rmap, hs, d: jax.vmap(A.alpha_eff_fn(rmap, fd_step=None if autodiff else d))(hs), rmap)
    d = fd_argument(fd_step, states.dtype)
    out = [np.asarray(fn(jnp.asarray(flat[i:i + ALPHA_CHUNK]), d)) for i in range(0, flat.shape[0], ALPHA_CHUNK)]
    res = np.concatenate(out) if out else np.zeros((0,))
    return res.reshape(states.shape[:-1]).astype(np.float64)
