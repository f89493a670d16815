"""Shared test helpers (importable from tests/ because pytest puts the test folder on sys.path)."""

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
