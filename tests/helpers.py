"""Shared test helpers (importable from tests/ because pytest puts the test folder on sys.path)."""

import os
from pathlib import Path

import jax

from lorex import lopt


def tiny_optimizer(directory: Path, hidden: int = 8, seed: int = 0) -> Path:
    """Save an untrained GRU optimizer with a random non-zero readout and initial state (task: linreg)."""
    cfg = lopt.LOptConfig(hidden=hidden)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = lopt.init_params(k1, cfg)
    params["readout"]["w"] = jax.random.normal(k2, (hidden,)) / hidden**0.5
    params["h0"] = 0.1 * jax.random.normal(k3, (hidden,))
    lopt.save_optimizer(directory, params, cfg, {"task": "linreg"})
    return directory


def toy_surrogate():
    """A surrogate with every part switched on: complex and real momentum modes, tanh clipping, a schedule, adaptation
    with bias correction."""
    import numpy as np

    from lorex.distill.surrogate import Surrogate

    return Surrogate(betas=np.array([0.9 + 0.2j, 0.5, 0.0]), weights=np.array([0.05 - 0.01j, 0.02, 0.03]),
                     clip_kind="tanh", clip_threshold=0.5, schedule=np.linspace(0.5, 1.0, 11),
                     adapt_grid=np.geomspace(1e-2, 10, 7), adapt_ratio=np.geomspace(1.0, 0.05, 7), adapt_rho=0.9,
                     adapt_bias_correction=True)


def die_at_once(*args):
    """Stands in for a worker's task in tests: ends the worker process at once, as the out-of-memory killer would."""
    os._exit(3)


def progress_slot(run, i, task):
    """Stands in for a worker's task in tests: shows a bar and a message, returns the worker's slot."""
    import time

    from lorex import progress

    time.sleep(1.0)  # long enough that every worker takes a task
    bar = progress.bar(total=3, desc=f"bar of {task}", ncols=30)  # narrower than the line a finished bar leaves
    for _ in range(3):
        bar.update()
        bar.set_postfix(task=task)
    bar.close()
    progress.say(f"message from {task}")
    return {"slot": progress._slot, "pid": os.getpid()}
