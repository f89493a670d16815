import os

import jax
import pytest

# Tests that call the CLI in-process must not write to the user's cache folder (the persistent-cache test sets its own)
os.environ.setdefault("LOREX_COMPILATION_CACHE", "off")


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
