"""The mechanism family: the four known mechanisms as ONE trainable optax transformation with a handful of parameters.

Per coordinate, with gradient g_t at step t = 0, 1, … (0-based) and states m_{k,0} = 0, ν_0 = 0:

    m_{k,t+1} = β_k m_{k,t} + (1 − β_k) g_t            K momentum modes (EMA form), β_k = sigmoid(b_k) ∈ (0, 1)
    ν_{t+1}   = ρ ν_t + (1 − ρ) g_t²                    running mean square of the raw gradient, ρ = sigmoid(r)
    [bias_correction: m̂_k = m_k/(1 − β_k^{t+1}), ν̂ = ν/(1 − ρ^{t+1}); otherwise m̂ = m, ν̂ = ν]
    x_t       = Σ_k c_k m̂_{k,t+1}                        combined momentum signal   (momentum off: x_t = g_t)
    s_t       = x_t / ((ν̂_{t+1} + ε_in)^p + ε_out)      adaptation, exponent p      (adaptation off: s_t = x_t)
    φ(s)      = τ · tanh(s/τ),  τ = exp(log_tau)        clipping (τ → ∞: none)       (clipping off: φ(s) = s)
    η(t)      = exp(log_lr + ℓ(t))                      ℓ piecewise linear through J knots at t_j = j(T−1)/(J−1),
                                                        held constant outside [0, T−1]  (schedule off: ℓ ≡ 0)
    u_t       = −η(t) · φ(s_t)

Parameters (:func:`init_params`, a dict of float32 arrays, differentiable, so it can be meta-trained by gradient):
``log_lr`` (), ``beta_logit`` (K,), ``c`` (K,), ``log_tau`` (), ``schedule`` (J,) the log multipliers ℓ(t_j),
``rho_logit`` (), ``p`` (). ``mask`` switches each mechanism of :data:`MECHANISMS` on (1) or off (0); it is a dict of
float arrays, so variants with different masks can be vmapped together (leave-one-out).

Known optimizers are members (exactly, up to float rounding; tests/test_mechanism_family.py):

* heavy ball ``optax.sgd(lr, momentum=β)`` (trace m = β m + g = EMA/(1 − β)): K = 1, β, c = 1/(1 − β),
  log_lr = log lr; clipping, schedule, adaptation off;
* RMSProp ``optax.rmsprop(lr, decay=ρ, eps=ε)``: momentum off, ρ, p = ½, ε_in = ε, ε_out = 0; clipping and schedule off;
* Adam ``optax.adam(lr, b1, b2, eps=ε)``: K = 1, β = b1, c = 1, ρ = b2, p = ½, ε_in = 0, ε_out = ε,
  ``bias_correction=True``; clipping and schedule off.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

MECHANISMS = ("momentum", "clipping", "schedule", "adaptation")
MAX_MODES = 3
DEFAULT_MODES = 3
DEFAULT_KNOTS = 5
# The family's default ε: Adam's ε_out = 1e-8 outside the power, so the adaptation stays scale-free down to gradients
# ~1e-8 (an ε_in = 1e-8 would stop it at ~1e-4, well above where linreg's runs end); ε_in = 1e-30 only keeps
# log(ν + ε_in), which ∂/∂p needs, finite where ν = 0.
EPS_IN = 1e-30
EPS_OUT = 1e-8


class FamilyState(NamedTuple):
    count: jax.Array  # () int32: steps taken
    momentum: Any  # pytree like the parameters, each leaf (*leaf.shape, K)
    nu: Any  # pytree like the parameters


def full_mask(**off) -> dict:
    """Every mechanism on, except those given as ``name=False`` (or 0.0)."""
    bad = set(off) - set(MECHANISMS)
    if bad:
        raise ValueError(f"unknown mechanisms {sorted(bad)} (allowed: {', '.join(MECHANISMS)})")
    return {m: jnp.asarray(float(off.get(m, 1.0)), jnp.float32) for m in MECHANISMS}


def without(mechanism: str) -> dict:
    """The mask with ``mechanism`` off and the rest on."""
    return full_mask(**{mechanism: 0.0})


def _logit(x):
    x = np.clip(np.asarray(x, np.float64), 1e-7, 1 - 1e-7)
    return np.log(x) - np.log1p(-x)


def init_params(*, lr: float = 1e-2, betas=(0.9,), c=None, modes: int = DEFAULT_MODES, knots: int = DEFAULT_KNOTS,
                tau: float = 1e6, rho: float = 0.9, p: float = 0.0, schedule=None) -> dict:
    """Family parameters from natural values; ``betas``/``c`` may be shorter than ``modes`` (the rest get c = 0 and
    β spread over (0.5, 0.9, 0.99) so that every mode can be switched on by training)."""
    if not 1 <= modes <= MAX_MODES:
        raise ValueError(f"modes must be in 1..{MAX_MODES}, got {modes}")
    betas = list(betas)[:modes]
    c = [1.0] + [0.0] * (len(betas) - 1) if c is None else list(c)[:modes]
    if len(c) != len(betas):
        raise ValueError("betas and c must have the same length")
    spare = [b for b in (0.5, 0.9, 0.99, 0.999, 0.3) if all(abs(b - x) > 1e-3 for x in betas)]
    while len(betas) < modes:
        betas.append(spare.pop(0))
        c.append(0.0)
    sched = np.zeros(knots) if schedule is None else np.asarray(schedule, np.float64)
    if sched.shape != (knots,):
        raise ValueError(f"schedule must have {knots} knots, got shape {sched.shape}")

    def f32(x):
        return jnp.asarray(np.asarray(x, np.float64), jnp.float32)

    return {"log_lr": f32(np.log(lr)), "beta_logit": f32(_logit(betas)), "c": f32(c), "log_tau": f32(np.log(tau)),
            "schedule": f32(sched), "rho_logit": f32(_logit(rho)), "p": f32(p)}


def schedule_log_multiplier(params: dict, t, horizon: int) -> jax.Array:
    """ℓ(t): piecewise linear through the knots at t_j = j (T − 1)/(J − 1), constant outside."""
    knots = params["schedule"]
    J = knots.shape[-1]
    xs = jnp.linspace(0.0, float(max(horizon - 1, 1)), J)
    return jnp.interp(jnp.asarray(t, jnp.float32), xs, knots) if J > 1 else knots[0]


def learning_rate(params: dict, t, horizon: int, mask: dict | None = None) -> jax.Array:
    """η(t) = exp(log_lr + ℓ(t)) (ℓ ≡ 0 with the schedule off)."""
    mask = full_mask() if mask is None else mask
    return jnp.exp(params["log_lr"] + mask["schedule"] * schedule_log_multiplier(params, t, horizon))


def mechanism_family(params: dict, horizon: int, *, mask: dict | None = None, bias_correction: bool = False,
                     eps_in: float = EPS_IN, eps_out: float = EPS_OUT) -> optax.GradientTransformationExtraArgs:
    """The family member ``params`` as an optax transformation (see the module docstring for the equations).

    ``horizon`` T places the schedule's knots; ``mask`` ({mechanism: 0. or 1.}, default all on) switches mechanisms
    off; ``bias_correction``, ``eps_in``, ``eps_out`` are fixed (not trained). Differentiable in ``params``.
    """
    mask = full_mask() if mask is None else mask
    theta = params  # update_fn's own ``params`` argument (the optimizee's) would shadow it
    beta = jax.nn.sigmoid(params["beta_logit"])  # (K,)
    c = params["c"]
    rho = jax.nn.sigmoid(params["rho_logit"])
    p = params["p"] * mask["adaptation"]
    tau = jnp.exp(params["log_tau"])
    K = beta.shape[-1]

    def init_fn(x):
        zeros = jax.tree_util.tree_map(lambda a: jnp.zeros((*jnp.shape(a), K), jnp.float32), x)
        return FamilyState(jnp.zeros([], jnp.int32), zeros,
                           jax.tree_util.tree_map(lambda a: jnp.zeros(jnp.shape(a), jnp.float32), x))

    def leaf(g, m, nu, t, eta):
        g32 = g.astype(jnp.float32)
        m = beta * m + (1 - beta) * g32[..., None]
        nu = rho * nu + (1 - rho) * g32 * g32
        if bias_correction:
            m_hat = m / (1 - beta ** (t + 1.0))
            nu_hat = nu / (1 - rho ** (t + 1.0))
        else:
            m_hat, nu_hat = m, nu
        x = jnp.where(mask["momentum"] > 0, jnp.sum(c * m_hat, axis=-1), g32)
        denom = jnp.where(mask["adaptation"] > 0, (nu_hat + eps_in) ** p + eps_out, 1.0)
        s = x / denom
        phi = jnp.where(mask["clipping"] > 0, tau * jnp.tanh(s / tau), s)
        return (-eta * phi).astype(g.dtype), m, nu

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        t = state.count.astype(jnp.float32)
        eta = learning_rate(theta, t, horizon, mask)
        treedef = jax.tree_util.tree_structure(updates)
        out = [leaf(g, m, nu, t, eta) for g, m, nu in zip(treedef.flatten_up_to(updates),
                                                           treedef.flatten_up_to(state.momentum),
                                                           treedef.flatten_up_to(state.nu))]
        return (treedef.unflatten([o[0] for o in out]),
                FamilyState(state.count + 1, treedef.unflatten([o[1] for o in out]),
                            treedef.unflatten([o[2] for o in out])))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def describe(params: dict, mask: dict | None = None) -> dict:
    """The natural values of a member (host floats), what is switched off left out."""
    mask = full_mask() if mask is None else mask
    on = {m: bool(float(mask[m]) > 0) for m in MECHANISMS}
    d = {"learning_rate": float(np.exp(params["log_lr"]))}
    if on["momentum"]:
        d["betas"] = [float(b) for b in np.asarray(jax.nn.sigmoid(params["beta_logit"]))]
        d["c"] = [float(x) for x in np.asarray(params["c"])]
    if on["clipping"]:
        d["tau"] = float(np.exp(params["log_tau"]))
    if on["schedule"]:
        d["schedule_multipliers"] = [float(x) for x in np.exp(np.asarray(params["schedule"]))]
    if on["adaptation"]:
        d["rho"] = float(jax.nn.sigmoid(params["rho_logit"]))
        d["p"] = float(params["p"])
    return d


def params_to_json(params: dict) -> dict:
    return {k: np.asarray(v, np.float64).tolist() for k, v in params.items()}


def params_from_json(d: dict) -> dict:
    return {k: jnp.asarray(np.asarray(v, np.float64), jnp.float32) for k, v in d.items()}
