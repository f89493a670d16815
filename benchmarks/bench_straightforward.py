"""Before/after: lorex's meta-step against a straightforward JAX implementation of the same optimizer.

Run by hand:  python benchmarks/bench_straightforward.py [--task two_moons] [--hidden 256] [--batch 32] [--repeat 2]

"Straightforward" is how the design reads on paper: the GRU applied leaf by leaf of the parameter pytree
(``tree_map``), three separate gate matmuls on the concatenation [x, h] (textbook GRU), full backpropagation through
the unroll with every step stored (no ``jax.checkpoint``), no buffer donation. lorex ravels every leaf into one
(N, H) state, computes the gates in one matmul for x and one for h, recomputes the scan body in the backward pass,
and donates the parameter and optimizer-state buffers. Both are timed in the same process, on the same problems,
with the same objective; the printed ratio is the speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from lorex import meta
from lorex.evaluate import problem_and_params


def naive_params(key, H, D=1):
    ks = jax.random.split(key, 3)
    return {g: {"w": jax.random.normal(k, (D + H, H)) / jnp.sqrt(D + H), "b": jnp.zeros(H)}
            for g, k in zip("zrn", ks)} | {"ro": jnp.zeros(H), "ro_b": jnp.zeros(()), "h0": jnp.zeros(H)}


def naive_cell(p, h, x):
    xh = jnp.concatenate([x, h], -1)
    z = jax.nn.sigmoid(xh @ p["z"]["w"] + p["z"]["b"])
    r = jax.nn.sigmoid(xh @ p["r"]["w"] + p["r"]["b"])
    n = jnp.tanh(jnp.concatenate([x, r * h], -1) @ p["n"]["w"] + p["n"]["b"])
    return (1 - z) * n + z * h


def naive_objective(p, keys, family, T, out_scale=0.1):
    def one(key):
        problem, x = problem_and_params(family, key)
        hs = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(p["h0"], a.shape + p["h0"].shape), x)

        def body(carry, _):
            x, hs = carry
            loss, g = jax.value_and_grad(family.loss)(x, problem)
            hs = jax.tree_util.tree_map(lambda h, gi: naive_cell(p, h, gi[..., None]), hs, g)
            x = jax.tree_util.tree_map(lambda xi, h: xi + out_scale * (h @ p["ro"] + p["ro_b"]), x, hs)
            return (x, hs), loss

        (x, _), losses = jax.lax.scan(body, (x, hs), None, length=T)
        return jnp.mean(jnp.log(jnp.maximum(losses[1:] / losses[0], 1e-12)))

    return jnp.mean(jax.vmap(one)(keys))


def timeit(f, repeat):
    ts = []
    for i in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(f(i))
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="two_moons")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    cfg = meta.default_config(args.task, hidden=args.hidden, batch=args.batch, first_order=False, truncation=None)
    family, T = cfg.family(), cfg.horizon()

    opt = optax.adam(1e-3)
    p = naive_params(jax.random.PRNGKey(0), args.hidden)
    s = opt.init(p)

    @jax.jit
    def naive_step(p, s, keys):
        loss, g = jax.value_and_grad(naive_objective)(p, keys, family, T)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    state = {"p": p, "s": s}

    def run_naive(i):
        state["p"], state["s"], loss = naive_step(state["p"], state["s"], meta.step_keys(cfg, i))
        return loss

    st = meta.init_state(cfg)
    step = meta.make_meta_step(cfg, family)
    lst = {"p": st.params, "s": st.opt_state}

    def run_lorex(i):
        lst["p"], lst["s"], loss = step(lst["p"], lst["s"], meta.step_keys(cfg, i))
        return loss

    t0 = time.perf_counter()
    run_naive(0)
    c_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_lorex(0)
    c_lorex = time.perf_counter() - t0
    t_naive = timeit(run_naive, args.repeat)
    t_lorex = timeit(run_lorex, args.repeat)
    print(f"{args.task} GRU-{args.hidden} batch {args.batch} T {T}, backend {jax.default_backend()}, "
          f"jax {jax.__version__}")
    print(f"| implementation | s/meta-step | first call (compile+run) s |\n|---|---|---|\n"
          f"| straightforward | {t_naive:.2f} | {c_naive:.1f} |\n| lorex | {t_lorex:.2f} | {c_lorex:.1f} |")
    print(f"speed-up: {t_naive / t_lorex:.2f}x")


if __name__ == "__main__":
    main()
