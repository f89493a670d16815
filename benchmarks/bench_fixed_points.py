"""Fixed-point finder (Adam phase + batched Newton polish) vs plain Adam on q, on the same seeds of a 256-unit GRU.

    /work/venv/bin/python benchmarks/bench_fixed_points.py [--hidden 256] [--seeds 1024] [--adam-iters 4000]

The system is a lorex GRU cell with lorex.lopt.init_params weights, recurrent weights scaled ×2 and random recurrent
biases (σ = 0.2), at constant input x* = 0.  Seeds: states of a 64-step input-driven run (16 runs, N(0,1) inputs),
drawn with replacement, plus N(0, 0.1²) noise.  Baseline: optax.adam on q = ½‖F(h) − h‖², vmapped over the seeds,
for a fixed number of iterations, no Newton (the approach of earlier fixed-point tools); its q is read at checkpoints.
Reported: the fraction of seeds with q <= 1e-10 and the wall time (compile included and excluded) of each.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lorex.analysis as la
from lorex import lopt


def build(hidden: int, n_seeds: int, scale: float = 2.0):
    config = lopt.LOptConfig(hidden=hidden)
    cell = dict(lopt.init_params(jax.random.PRNGKey(0), config)["cell"])
    cell["w_h"] = scale * cell["w_h"]
    cell["b_h"] = 0.2 * jax.random.normal(jax.random.PRNGKey(4), (3 * hidden,))

    def step(h, x):
        return lopt.gru_cell(cell, h, x)

    xs = jax.random.normal(jax.random.PRNGKey(5), (64, 16, 1))

    def body(h, x):
        h = jax.vmap(step)(h, x)
        return h, h

    _, hs = jax.lax.scan(body, jnp.zeros((16, hidden)), xs)
    seeds = la.sample_seeds(hs[8:], n_seeds, 0.1, jax.random.PRNGKey(6))
    return step, jax.block_until_ready(seeds)


def plain_adam(step, seeds, iters: int, chunk: int, lr: float, decay: bool):
    """Adam on q from every seed; returns [(iterations, seconds so far, q per seed)] at each checkpoint.

    With ``decay`` the learning rate decays exponentially from lr to lr/1000 over the iterations.
    """
    opt = optax.adam(optax.exponential_decay(lr, iters, 1e-3) if decay else lr)
    x = jnp.zeros((seeds.shape[0], 1), seeds.dtype)
    grad_q = jax.vmap(jax.grad(lambda h, x: 0.5 * jnp.sum((step(h, x) - h) ** 2)))

    @jax.jit
    def run_chunk(h, s):
        def body(carry, _):
            h, s = carry
            u, s = opt.update(grad_q(h, x), s, h)
            return (optax.apply_updates(h, u), s), None

        (h, s), _ = jax.lax.scan(body, (h, s), None, length=chunk)
        return h, s, la.q_value(step, h)

    h, s = seeds, opt.init(seeds)
    out, t0 = [], time.perf_counter()
    for i in range(iters // chunk):
        h, s, q = jax.block_until_ready(run_chunk(h, s))
        out.append(((i + 1) * chunk, time.perf_counter() - t0, np.asarray(q)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--seeds", type=int, default=1024)
    ap.add_argument("--adam-iters", type=int, default=4000)
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--tol", type=float, default=1e-10)
    a = ap.parse_args()

    step, seeds = build(a.hidden, a.seeds)
    print(f"# jax {jax.__version__}, {platform.processor() or platform.machine()}, "
          f"{jax.device_count()} {jax.devices()[0].platform} device(s); H={a.hidden}, {a.seeds} seeds")

    t0 = time.perf_counter()
    fps = la.find_fixed_points(step, seeds, tol=a.tol)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fps = la.find_fixed_points(step, seeds, tol=a.tol)
    t_warm = time.perf_counter() - t0
    q_f = fps.seed_q
    frac_f = float(np.mean(q_f <= a.tol))
    max_q = fps.q.max() if len(fps.q) else np.nan
    print(f"finder: {len(fps.points)} distinct points ({int(fps.stable.sum())} stable), "
          f"{fps.n_converged}/{fps.n_seeds} seeds converged, max q of points {max_q:.2e}")

    rows = [("finder (500 Adam + <=20 Newton)", frac_f, float(np.mean(q_f <= 1e-6)), np.median(q_f), t_first, t_warm)]
    for decay in (False, True):
        ckpts = plain_adam(step, seeds, a.adam_iters, a.chunk, a.lr, decay)
        per_chunk = ckpts[-1][1] - ckpts[-2][1] if len(ckpts) > 1 else ckpts[0][1]  # a chunk without compile
        label = f"lr {a.lr:g} → {a.lr * 1e-3:g} (exp. decay)" if decay else f"lr {a.lr:g}"
        for it, t, q in ckpts:
            c = it // a.chunk
            if it != a.adam_iters and (decay or c & (c - 1)):
                continue  # constant lr: checkpoints 1, 2, 4, … chunks; decayed lr: only its end means something
            rows.append((f"plain Adam, {label}, {it} iters", float(np.mean(q <= a.tol)), float(np.mean(q <= 1e-6)),
                         float(np.median(q)), t,
                         per_chunk * it / a.chunk))

    print()
    print("| method | share q <= %.0e | share q <= 1e-6 | median q | wall s (with compile) | wall s (warm) "
          "| warm time / finder's |" % a.tol)
    print("|---|---|---|---|---|---|---|")
    for name, frac, frac6, med, tf, tw in rows:
        print(f"| {name} | {frac:.3f} | {frac6:.3f} | {med:.1e} | {tf:.1f} | {tw:.1f} | {tw / t_warm:.2f} |")


if __name__ == "__main__":
    main()
