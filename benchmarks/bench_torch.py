"""lorex's meta-step against the same meta-step written in PyTorch (eager and ``torch.compile``), on CPU.

Run by hand (not in CI; PyTorch is no dependency of lorex), from a separate virtual environment that has both::

    python3 -m venv .venv-torch
    .venv-torch/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    .venv-torch/bin/pip install -e .
    .venv-torch/bin/python benchmarks/bench_torch.py --configs default paper32 linreg32 linreg256 --repeat 10 --md FILE

``--check-only`` runs the correctness check and no timing. ``--isolate ROUNDS`` times lorex and torch.compile each
in processes of their own, in turn (see ``isolated``), instead of the three sides in one process::

    .venv-torch/bin/python benchmarks/bench_torch.py --configs paper32 linreg256 default --isolate 3 --repeat 4 --md FILE

What is compared, per config of ``bench_meta_step.COMPARE_CONFIGS`` (``lorex.meta.default_config(task, **fields)``):

* lorex: ``lorex.meta.make_meta_step(cfg, family)`` as ``bench_meta_step.py`` times it (jitted; the first call,
  which compiles, is excluded; ``block_until_ready`` on the new parameters and the loss).
* torch eager: the same meta-step as a PyTorch user writes it. The learned optimizer is an ``nn.Module``
  (features → ``nn.GRUCell``, whose gate equations are lorex's, → ``nn.Linear`` readout, learned initial state),
  applied to all (problems × parameters) coordinates as one batch of rows; the problems of the batch are one
  batched torch computation (``torch.baddbmm`` MLPs for two moons, ``einsum`` for linreg). A Python loop over the
  T steps takes the task loss and its gradient with ``torch.autograd.grad`` (``create_graph=True`` for second
  order; for first order the gradient comes back detached and the loss keeps its graph, which is lorex's
  first-order rule d f = ⟨∇f, dx⟩, d(∇f) = 0), steps the GRU and updates the parameters; then the meta-objective
  (``cfg.objective``, with lorex's cap and floor), ``.backward()``, ``clip_grad_norm_(cfg.clip)``, and
  ``torch.optim.Adam`` with lorex's cosine-decaying meta learning rate (``CosineAnnealingLR``), skipping a step
  whose loss or gradient is not finite (lorex's ``apply_if_finite``). With ``cfg.remat`` (every config here) the
  optimizer's step is wrapped in ``torch.utils.checkpoint`` — the analogue of lorex's rematerialization, which
  stores each step's task loss and gradient and recomputes the optimizer's step in the backward pass.
* torch.compile: the same, with the per-time-step function (task value and gradient, GRU step, update) passed
  through ``torch.compile``. Dynamo breaks the graph at ``torch.autograd.grad`` (by default:
  ``torch._dynamo.config.trace_autograd_ops`` is off in torch 2.13), so this side takes the task's gradient with
  ``torch.func.grad_and_value`` (same maths), which Dynamo traces: one graph per time step, no graph break (two
  graphs per config: the first step, whose state is the broadcast initial one, and the others). Its first call
  (compilation) is reported separately; Inductor caches compiled code on disk (``/tmp/torchinductor_$USER``), so
  a second run compiles in seconds where the first took about half a minute per config.

The problems of each meta-step are lorex's: the family samples them for ``lorex.meta.step_keys(cfg, i)`` (in JAX,
outside the torch timings; inside lorex's step, where it is a negligible part) and they are handed to torch as
arrays; the torch meta-parameters start as copies of lorex's initial ones.

Correctness (printed and in the markdown): the meta-loss and meta-gradient of each torch side against lorex's
(``jax.value_and_grad(lorex.meta.batch_objective)``, the function lorex's meta-step differentiates; its loss is
also checked against the one the meta-step returns) at two points: the initial parameters with the keys of
meta-step 0 — where the meta-loss is 0 up to rounding (the final loss is computed apart from the unroll's),
since the readout starts at zero and an untrained optimizer does nothing (so only the readout's gradient is
non-zero) — and lorex's parameters after its first meta-step with the keys of meta-step 1, where every weight has
a gradient. "meta-loss rel. diff" is |Δ|/|lorex| at the second point;
"meta-grad max rel. diff" is, over both points and every weight array, the largest |Δ| divided by the largest |g|
of that array in lorex's gradient. The parameters after the first Adam step are compared as well (clip, Adam, rate).

Timing: in one process the three sides take meta-steps in turn (lorex, eager, compiled, lorex, …) on the same
keys, ``--repeat`` each; the medians are reported. Threads are left at their defaults (``torch.get_num_threads()``,
XLA's pool). Peak RSS: after the timed steps each side takes one more, untimed meta-step, with the process's VmHWM
reset (``/proc/self/clear_refs``) before it and read after it: the peak resident memory of the whole process during
that step (the other sides' and the libraries' resident memory included), and its rise above the resident memory at
the step's start, free heap memory first handed back to the system (``malloc_trim``; that slows the next step, hence
untimed): the rise is the closer measure of what a side's step needs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import torch
import torch.nn.functional as F
from jax.flatten_util import ravel_pytree
from torch import nn
from torch.utils.checkpoint import checkpoint

from lorex import meta
from lorex.evaluate import LOG_FLOOR, problem_and_params
from lorex.tasks.linreg import Linreg
from lorex.tasks.two_moons import TwoMoons

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_meta_step import COMPARE_CONFIGS, append_md, proc_status_kib  # noqa: E402

# ------------------------------------------------------------------------------------------------ the optimizer


class LearnedOptimizer(nn.Module):
    """lorex's coordinatewise GRU optimizer (:mod:`lorex.lopt`): φ(g) → GRU → u = s_out·(wᵀh + b).

    ``nn.GRUCell`` computes lorex's cell exactly (r, z from W x + b + U h + c; n = tanh(W_n x + b_n + r ⊙
    (U_n h + c_n)); h' = (1 − z) n + z h); only the order of its gate blocks differs (r, z, n against z, r, n).
    """

    def __init__(self, hidden: int, features: str, input_scale: float, output_scale: float):
        super().__init__()
        self.features, self.input_scale, self.output_scale = features, input_scale, output_scale
        self.cell = nn.GRUCell(1 if features == "raw" else 2, hidden)
        self.readout = nn.Linear(hidden, 1)
        self.h0 = nn.Parameter(torch.zeros(hidden))

    def forward(self, h: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """States h (C, H) and gradients g (C,) of C coordinates → (h', update u (C,))."""
        g = g * self.input_scale
        x = g[:, None] if self.features == "raw" else torch.stack([torch.log1p(g.abs()), torch.sign(g)], dim=-1)
        h = self.cell(x, h)
        return h, self.output_scale * self.readout(h)[:, 0]


def _swap_zr(a: np.ndarray) -> np.ndarray:
    """Swap the first two gate blocks of the last axis (lorex z, r, n ↔ torch r, z, n); its own inverse."""
    H = a.shape[-1] // 3
    return np.concatenate([a[..., H:2 * H], a[..., :H], a[..., 2 * H:]], axis=-1)


def torch_state(params) -> dict[str, torch.Tensor]:
    """lorex's optimizer weights (a pytree of arrays) → the module's state dict."""
    c = {k: np.asarray(v, np.float32) for k, v in params["cell"].items()}
    arrays = {"cell.weight_ih": _swap_zr(c["w_x"]).T, "cell.weight_hh": _swap_zr(c["w_h"]).T,
              "cell.bias_ih": _swap_zr(c["b_x"]), "cell.bias_hh": _swap_zr(c["b_h"]),
              "readout.weight": np.asarray(params["readout"]["w"])[None],
              "readout.bias": np.asarray(params["readout"]["b"]).reshape(1), "h0": np.asarray(params["h0"])}
    return {k: torch.tensor(np.ascontiguousarray(v, np.float32)) for k, v in arrays.items()}


def lorex_layout(named: dict[str, torch.Tensor]) -> dict:
    """The module's tensors (weights or their gradients, by parameter name) in lorex's layout, as numpy."""
    a = {k: v.detach().numpy() for k, v in named.items()}
    return {"cell": {"w_x": _swap_zr(a["cell.weight_ih"].T), "w_h": _swap_zr(a["cell.weight_hh"].T),
                     "b_x": _swap_zr(a["cell.bias_ih"]), "b_h": _swap_zr(a["cell.bias_hh"])},
            "readout": {"w": a["readout.weight"][0], "b": a["readout.bias"][0]}, "h0": a["h0"]}


# ------------------------------------------------------------------------------------------------ the tasks


class TwoMoonsTorch:
    """:class:`lorex.tasks.two_moons.TwoMoons`'s loss for a batch of problems whose MLP parameters are rows of x
    (B, N), laid out as ``jax.flatten_util.ravel_pytree`` ravels them (layer by layer, ``b`` before ``w``)."""

    def __init__(self, family: TwoMoons, params_single):
        offset, layers = 0, {}
        for path, leaf in jax.tree_util.tree_flatten_with_path(params_single)[0]:
            layers.setdefault(path[0].idx, {})[path[1].key] = (offset, tuple(leaf.shape))
            offset += leaf.size
        self.layers = [layers[i] for i in sorted(layers)]
        self.l2 = family.l2

    @staticmethod
    def data(problems) -> dict[str, torch.Tensor]:
        return {"x": _tensor(problems["x"]), "y": _tensor(problems["y"])}

    def loss(self, x: torch.Tensor, data: dict) -> torch.Tensor:
        """Per-problem losses (B,): logistic loss of the tanh MLP plus ½·l2·Σ‖W‖²."""
        B, a, l2 = x.shape[0], data["x"], 0.0
        for k, layer in enumerate(self.layers):
            (ow, (fan_in, fan_out)), (ob, _) = layer["w"], layer["b"]
            W = x[:, ow:ow + fan_in * fan_out].view(B, fan_in, fan_out)
            a = torch.baddbmm(x[:, ob:ob + fan_out].unsqueeze(1), a, W)
            if k < len(self.layers) - 1:
                a = torch.tanh(a)
            l2 = l2 + W.square().sum(dim=(1, 2))
        z = a[..., 0]
        return (F.softplus(z) - data["y"] * z).mean(dim=-1) + 0.5 * self.l2 * l2


class LinregTorch:
    """:class:`lorex.tasks.linreg.Linreg`'s loss ½ Σᵢ λᵢ ((Qᵀ(x − x*))ᵢ)² for a batch of problems, x (B, n)."""

    def __init__(self, family: Linreg, params_single):
        del family, params_single

    @staticmethod
    def data(problems) -> dict[str, torch.Tensor]:
        return {"eigvals": _tensor(problems.eigvals), "eigvecs": _tensor(problems.eigvecs),
                "x_star": _tensor(problems.x_star)}

    def loss(self, x: torch.Tensor, data: dict) -> torch.Tensor:
        r = torch.einsum("bij,bi->bj", data["eigvecs"], x - data["x_star"])
        return 0.5 * (data["eigvals"] * r * r).sum(dim=-1)


TORCH_TASKS = {TwoMoons: TwoMoonsTorch, Linreg: LinregTorch}


def _tensor(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))  # a writable copy


class ProblemSampler:
    """The problems lorex's meta-step sees for a batch of keys (the family's own sampler, in JAX), as torch data."""

    def __init__(self, cfg, family):
        if getattr(family, "minibatch", None) is not None:
            raise SystemExit(f"{cfg.task}: stochastic (minibatch) families are not reproduced here")
        _, params_single = problem_and_params(family, jax.random.PRNGKey(0))
        self.task = TORCH_TASKS[type(family)](family, params_single)

        def sample(keys):
            problems, x0 = jax.vmap(lambda k: problem_and_params(family, k))(keys)
            return problems, jax.vmap(lambda p: ravel_pytree(p)[0])(x0)

        self._sample = jax.jit(sample)

    def __call__(self, keys) -> tuple[torch.Tensor, dict]:
        problems, x0 = self._sample(keys)
        return _tensor(x0), self.task.data(problems)


# ------------------------------------------------------------------------------------------------ the meta-step

LOSS_CAP = meta.LOSS_CAP


def objective_from_losses(losses: torch.Tensor, objective: str) -> torch.Tensor:
    """lorex's meta-objective per problem from the losses (B, T + 1): f_t/f_0 capped at LOSS_CAP, log floored."""
    ratio = torch.clamp(losses / losses[:, :1], max=LOSS_CAP)
    log_ratio = torch.log(torch.clamp(ratio, min=LOG_FLOOR))
    if objective == "log":
        return log_ratio[:, 1:].mean(dim=1)
    if objective == "ratio":
        return ratio[:, 1:].mean(dim=1)
    if objective == "log_final":
        return log_ratio[:, 1:].mean(dim=1) + log_ratio[:, -1]
    return log_ratio[:, -1]


def unroll_step(lopt, task, x, h, data, second_order: bool, remat: bool):
    """One optimization step of every problem: (x', h', losses f_t (B,)); gradient by ``torch.autograd.grad``."""
    loss = task.loss(x, data)
    # second order: the gradient keeps its graph; first order: it comes back detached while the loss keeps its
    # graph (retain_graph), so the meta-gradient sees d f = <g, dx> and d g = 0, as lorex's first-order mode
    (g,) = torch.autograd.grad(loss.sum(), x, create_graph=second_order, retain_graph=True)
    h, u = checkpoint(lopt, h, g.reshape(-1), use_reentrant=False) if remat else lopt(h, g.reshape(-1))
    return x + u.view_as(x), h, loss


def unroll_step_functional(lopt, task, x, h, data, second_order: bool, remat: bool):
    """:func:`unroll_step` with the task's gradient from ``torch.func.grad_and_value`` (traceable by Dynamo)."""

    def total(x):
        losses = task.loss(x, data)
        return losses.sum(), losses

    g, (_, loss) = torch.func.grad_and_value(total, has_aux=True)(x)
    if not second_order:
        g = g.detach()
    h, u = checkpoint(lopt, h, g.reshape(-1), use_reentrant=False) if remat else lopt(h, g.reshape(-1))
    return x + u.view_as(x), h, loss


class TorchMetaTrainer:
    """The PyTorch meta-training step for one lorex config; ``compiled`` puts the per-step function through
    ``torch.compile``."""

    def __init__(self, cfg, params, task, compiled: bool):
        lc = cfg.lopt_config()
        self.cfg, self.task, self.horizon = cfg, task, cfg.horizon()
        self.lopt = LearnedOptimizer(lc.hidden, lc.features, lc.input_scale, lc.output_scale)
        self.load(params)
        self.opt = torch.optim.Adam(self.lopt.parameters(), lr=cfg.meta_lr)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=cfg.steps, eta_min=cfg.meta_lr_final)
        if compiled:
            torch._dynamo.reset()  # a fresh cache per config: no config's guards count against another's recompiles
        self.step_fn = torch.compile(unroll_step_functional) if compiled else unroll_step

    def load(self, params) -> None:
        """Set the meta-parameters to lorex's ``params`` (the Adam state is kept)."""
        with torch.no_grad():
            for name, value in torch_state(params).items():
                self.lopt.get_parameter(name).copy_(value)

    def meta_loss(self, x0: torch.Tensor, data: dict) -> torch.Tensor:
        B, N = x0.shape
        x = x0.clone().requires_grad_(True)
        h = self.lopt.h0.expand(B * N, -1)
        second_order, remat = not self.cfg.first_order, self.cfg.remat
        losses = []
        for _ in range(self.horizon):
            x, h, loss = self.step_fn(self.lopt, self.task, x, h, data, second_order, remat)
            losses.append(loss)
        losses.append(self.task.loss(x, data))  # the final parameters' loss
        return objective_from_losses(torch.stack(losses, dim=1), self.cfg.objective).mean()

    def value_and_grad(self, x0, data) -> tuple[float, dict]:
        """Meta-loss and meta-gradient (lorex layout), no update."""
        loss = self.meta_loss(x0, data)
        names, ps = zip(*self.lopt.named_parameters())
        grads = torch.autograd.grad(loss, ps)
        return loss.item(), lorex_layout(dict(zip(names, grads)))

    def step(self, x0, data) -> float:
        """One meta-step: loss, backward, clip, Adam (skipped when the loss or gradient is not finite)."""
        self.opt.zero_grad(set_to_none=True)
        loss = self.meta_loss(x0, data)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.lopt.parameters(), self.cfg.clip)
        if torch.isfinite(loss) and torch.isfinite(norm):
            self.opt.step()
            self.sched.step()
        return loss.item()

    def params(self) -> dict:
        return lorex_layout(dict(self.lopt.named_parameters()))


# ------------------------------------------------------------------------------------------------ measurement


class PeakRSS:
    """Peak resident memory of the process during a block (VmHWM reset before it), and its rise over the start.

    Free heap memory is handed back to the system first (glibc ``malloc_trim``), so memory an earlier step freed but
    malloc kept does not hide this step's need from the rise.
    """

    def __init__(self):
        self.peak = self.rise = float("nan")

    def __enter__(self):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
            self._ok = True
        except OSError:
            self._ok = False
        self._start = proc_status_kib("VmRSS")
        return self

    def __exit__(self, *exc):
        peak = proc_status_kib("VmHWM")
        if self._ok and peak > 0:
            self.peak, self.rise = peak / 1024, (peak - self._start) / 1024


def dynamo_counts() -> tuple[int, int]:
    """(graphs compiled, graph breaks) so far in this process, from Dynamo's counters."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def max_rel_diff(ref, other) -> float:
    """Over the arrays of two pytrees: the largest max|Δ| / max|ref| (0 where both are exactly equal)."""
    worst = 0.0
    for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(other)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        d, scale = np.max(np.abs(a - b)), np.max(np.abs(a))
        worst = max(worst, 0.0 if d == 0 else (d / scale if scale > 0 else math.inf))
    return worst


def rel_diff(ref: float, other: float) -> float:
    return 0.0 if ref == other else abs(other - ref) / abs(ref) if ref != 0 else math.inf


def fmt_err(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".replace("|", "/").replace("\n", " ")
    return text if len(text) < 160 else text[:157] + "..."


def run_config(name: str, repeat: int, check_only: bool, torch_sides=("eager", "compiled"),
               time_lorex: bool = True) -> dict:
    task, fields = COMPARE_CONFIGS[name]
    cfg = meta.default_config(task, **fields)
    family = cfg.family()
    sampler = ProblemSampler(cfg, family)
    horizon = cfg.horizon()
    print(f"\n== {name}: {task} {fields or 'defaults'}: H={cfg.hidden}, batch {cfg.batch}, T={horizon}, "
          f"{'first' if cfg.first_order else 'second'} order, remat {cfg.remat}, objective {cfg.objective}",
          flush=True)
    out = {"name": name, "cfg": cfg}

    # ---- lorex: reference values at θ0 (keys 0) and θ1 (lorex's parameters after meta-step 0, keys 1)
    st = meta.init_state(cfg)
    theta0 = jax.tree_util.tree_map(np.array, st.params)
    grad_fn = jax.jit(jax.value_and_grad(lambda p, k: meta.batch_objective(p, k, cfg, family, horizon)))
    keys0, keys1 = meta.step_keys(cfg, 0), meta.step_keys(cfg, 1)
    ref = {0: grad_fn(st.params, keys0)}
    step = meta.make_meta_step(cfg, family)
    t0 = time.perf_counter()
    params, opt_state, step_loss = step(st.params, st.opt_state, keys0)
    jax.block_until_ready((params, step_loss))
    out["lorex_first"] = time.perf_counter() - t0
    theta1 = jax.tree_util.tree_map(np.array, params)
    ref[1] = grad_fn(params, keys1)
    ref = {k: (float(v[0]), jax.tree_util.tree_map(np.asarray, v[1])) for k, v in ref.items()}
    out["lorex_step_vs_grad_fn"] = rel_diff(ref[0][0], float(step_loss))
    print(f"lorex: meta-loss {ref[0][0]:.6g} at θ0 (meta-step returned {float(step_loss):.6g}), "
          f"{ref[1][0]:.6g} at θ1; compile + first meta-step {out['lorex_first']:.1f} s", flush=True)

    # ---- torch sides: first meta-step from θ0 (compared with lorex's), checks at θ0 and θ1
    batches = {0: sampler(keys0), 1: sampler(keys1)}
    sides = {}
    for side, compiled in (("eager", False), ("compiled", True)):
        if side not in torch_sides:
            continue
        res = {}
        try:
            trainer = TorchMetaTrainer(cfg, theta0, sampler.task, compiled)
            graphs, breaks = dynamo_counts()
            t0 = time.perf_counter()
            loss0, grads0 = trainer.value_and_grad(*batches[0])  # compiled: includes compilation
            res["first"] = time.perf_counter() - t0
            res["graphs"], res["breaks"] = (a - b for a, b in zip(dynamo_counts(), (graphs, breaks)))
            trainer.step(*batches[0])
            res["params_after_first_step"] = max_rel_diff(theta1, trainer.params())
            trainer.load(theta1)
            loss1, grads1 = trainer.value_and_grad(*batches[1])
            res["loss0_abs"] = abs(loss0 - ref[0][0])
            res["loss_rel"] = rel_diff(ref[1][0], loss1)
            res["grad0"], res["grad1"] = max_rel_diff(ref[0][1], grads0), max_rel_diff(ref[1][1], grads1)
            res["grad"] = max(res["grad0"], res["grad1"])
            res["trainer"] = trainer
            print(f"torch {side}: meta-loss {loss0:.6g} at θ0 (|Δ| {res['loss0_abs']:.1e}), {loss1:.6g} at θ1 "
                  f"(rel. diff {res['loss_rel']:.1e}); meta-grad max rel. diff {res['grad0']:.1e} at θ0, "
                  f"{res['grad1']:.1e} at θ1; parameters after the first Adam step: max rel. diff "
                  f"{res['params_after_first_step']:.1e}; first value-and-grad {res['first']:.1f} s"
                  + (f" ({res['graphs']} graphs compiled, {res['breaks']} graph breaks)" if compiled else ""),
                  flush=True)
        except Exception as e:  # torch.compile may fail on a CPU toolchain: report, do not crash
            res["error"] = fmt_err(e)
            print(f"torch {side}: FAILED: {res['error']}", flush=True)
        sides[side] = res
    out["sides"] = sides
    if check_only:
        return out

    # ---- timing: lorex, eager, compiled in turn on the same keys
    def lorex_step(i, batch):  # samples its problems itself, from the keys, inside the jitted step
        nonlocal params, opt_state
        params, opt_state, loss = step(params, opt_state, meta.step_keys(cfg, i))
        jax.block_until_ready((params, loss))

    steppers = {"lorex": lorex_step} if time_lorex else {}
    for side in torch_sides:
        if "error" not in sides[side]:
            steppers[side] = lambda i, b, t=sides[side]["trainer"]: t.step(*b)
    times = {s: [] for s in steppers}
    for i in range(1, repeat + 1):
        batch = batches[1] if i == 1 else sampler(meta.step_keys(cfg, i))
        for side, fn in list(steppers.items()):
            try:
                t0 = time.perf_counter()
                fn(i, batch)
                times[side].append(time.perf_counter() - t0)
            except Exception as e:
                sides.setdefault(side, {})["error"] = fmt_err(e)
                print(f"torch {side}: FAILED during timing: {sides[side]['error']}", flush=True)
                del steppers[side]
        print(f"meta-step {i}: " + ", ".join(f"{s} {t[-1]:.3f} s" for s, t in times.items() if len(t) == i),
              flush=True)
    out["times"] = times
    out["median"] = {s: statistics.median(times[s]) if s in steppers else None for s in ("lorex", "eager", "compiled")}
    # memory: one more meta-step each, untimed (handing free memory back to the system slows the next step)
    out["peak"] = {}
    batch = sampler(meta.step_keys(cfg, repeat + 1))
    for side, fn in steppers.items():
        with PeakRSS() as m:
            fn(repeat + 1, batch)
        out["peak"][side] = (m.peak, m.rise)
    return out


# ------------------------------------------------------------------------------------------------ report


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPU(s) ({cpu}); torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"jax {jax.__version__} (backend {jax.default_backend()}), python {platform.python_version()}; load "
            f"average at the start {os.getloadavg()[0]:.2f}")


def describe(cfg) -> str:
    return (f"{cfg.task} GRU-{cfg.hidden} batch {cfg.batch} T={cfg.horizon()} "
            f"{'1st' if cfg.first_order else '2nd'} order")


def table(results: list[dict], repeat: int, check_only: bool) -> list[str]:
    def both(r, key, f="{:.1e}"):
        return " / ".join(r["sides"][s]["error"] if "error" in r["sides"][s] and key not in r["sides"][s]
                          else f.format(r["sides"][s][key]) for s in ("eager", "compiled"))

    rows = []
    if not check_only:
        rows += [f"Median of {repeat} meta-steps each, taken in turn (lorex, eager, compiled); peak RSS: the "
                 "process's during one more, untimed meta-step of that side (rise above the step's starting RSS). "
                 "Diffs: torch eager / compiled against lorex.", "",
                 "| config | lorex s/step | torch eager s/step | torch.compile s/step | lorex speed-up vs compiled | "
                 "lorex speed-up vs eager | meta-loss rel. diff | meta-grad max rel. diff | torch.compile first call s "
                 "(compilation + one meta-gradient) | peak RSS MiB lorex / eager / compiled |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for r in results:
            med, sides = r["median"], r["sides"]

            def cell(s):
                if med.get(s) is not None:
                    return f"{med[s]:.3f}"
                return f"failed: {sides[s].get('error', '?')}"

            def speedup(s):
                return f"{med[s] / med['lorex']:.2f}×" if med.get(s) is not None else "–"

            mem = " / ".join(f"{p[0]:.0f} (+{p[1]:.0f})" if p else "–" for p in
                             (r["peak"].get(s) for s in ("lorex", "eager", "compiled")))
            comp = sides["compiled"]
            first = (f"{comp['first']:.1f} ({comp['graphs']} graphs, {comp['breaks']} breaks)" if "first" in comp
                     else "–")
            rows.append(f"| {r['name']} ({describe(r['cfg'])}) | {cell('lorex')} | {cell('eager')} | "
                        f"{cell('compiled')} | {speedup('compiled')} | {speedup('eager')} | {both(r, 'loss_rel')} | "
                        f"{both(r, 'grad')} | {first} | {mem} |")
        rows.append("")
    rows += ["Correctness (torch eager / torch.compile against lorex). θ0: initial parameters, keys of meta-step "
             "0 (meta-loss 0 up to rounding: the readout starts at zero); θ1: lorex's parameters after meta-step 0, "
             "keys of meta-step 1. Gradient diffs: largest |Δ| over the largest |g| of each weight array, worst "
             "array.", "",
             "| config | meta-loss abs. diff at θ0 | meta-loss rel. diff at θ1 | meta-grad max rel. diff at θ0 | "
             "meta-grad max rel. diff at θ1 | parameters after the first Adam step, max rel. diff |",
             "|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r['name']} | {both(r, 'loss0_abs')} | {both(r, 'loss_rel')} | {both(r, 'grad0')} | "
                    f"{both(r, 'grad1')} | {both(r, 'params_after_first_step')} |")
    return rows


def isolated(configs: list[str], rounds: int, repeat: int) -> list[str]:
    """lorex and torch.compile each in processes of their own, in turn (lorex, compiled, lorex, …, ``rounds`` times
    per config, ``repeat`` timed meta-steps per process): no side shares its process, its threads or its allocator
    with the other. The ratio is of the medians over all of a side's timed meta-steps."""
    rows = [f"lorex and torch.compile in processes of their own, taken in turn, {rounds} processes per side and "
            f"config, {repeat} timed meta-steps each (after one untimed); medians over all of a side's meta-steps.", "",
            "| config | lorex s/step | torch.compile s/step | lorex speed-up vs compiled | lorex per-process medians | "
            "compiled per-process medians |", "|---|---|---|---|---|---|"]
    for name in configs:
        times = {"lorex": [], "compiled": []}
        per = {"lorex": [], "compiled": []}
        for r in range(rounds):
            for side in ("lorex", "compiled"):
                out = subprocess.run([sys.executable, __file__, "--worker", side, "--configs", name, "--repeat",
                                      str(repeat)], capture_output=True, text=True, check=True).stdout
                t = json.loads(out.strip().splitlines()[-1])
                times[side] += t
                per[side].append(statistics.median(t))
                print(f"{name} round {r + 1}: {side} median {per[side][-1]:.3f} s", flush=True)
        m = {k: statistics.median(v) for k, v in times.items()}
        rows.append(f"| {name} | {m['lorex']:.3f} | {m['compiled']:.3f} | {m['compiled'] / m['lorex']:.2f}× | "
                    f"{', '.join(f'{x:.3f}' for x in per['lorex'])} | "
                    f"{', '.join(f'{x:.3f}' for x in per['compiled'])} |")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["default", "paper32", "linreg32"], choices=sorted(COMPARE_CONFIGS))
    ap.add_argument("--repeat", type=int, default=5, help="timed meta-steps per side")
    ap.add_argument("--check-only", action="store_true", help="the correctness check only, no timing")
    ap.add_argument("--md", help="append the markdown tables to this file")
    ap.add_argument("--isolate", type=int, metavar="ROUNDS", help="lorex and torch.compile in processes of their own, "
                    "in turn, ROUNDS processes per side and config (see isolated())")
    ap.add_argument("--worker", choices=["lorex", "compiled"], help=argparse.SUPPRESS)  # one process of --isolate
    args = ap.parse_args()
    if args.worker:  # the times of one side, as the last line of output
        with contextlib.redirect_stdout(sys.stderr):
            r = run_config(args.configs[0], args.repeat + 1, False,
                           torch_sides=("compiled",) if args.worker == "compiled" else (),
                           time_lorex=args.worker == "lorex")
        print(json.dumps(r["times"]["lorex" if args.worker == "lorex" else "compiled"][1:]))
        return
    head = f"lorex vs PyTorch meta-step on CPU: {machine_line()}"
    print(head, flush=True)
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("warning: the machine is busy; PyTorch's OpenMP threads slow down by an order of magnitude when another "
              "process takes their cores, so these timings would not stand for the quiet machine", flush=True)
    if args.isolate:
        rows = isolated(args.configs, args.isolate, args.repeat)
    else:
        rows = table([run_config(name, args.repeat, args.check_only) for name in args.configs], args.repeat,
                     args.check_only)
    print("\n" + "\n".join(rows))
    append_md(args.md, head, rows)


if __name__ == "__main__":
    main()
