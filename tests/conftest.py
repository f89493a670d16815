import os

import jax
import pytest

# Tests that call the CLI in-process must not write to the user's cache folder (the persistent-cache test sets its own)
os.environ.setdefault("LOREX_COMPILATION_CACHE", "off")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. Every XLA CPU executable keeps its code in memory
    mappings of its own; the whole suite in one process compiles thousands of programs, and kept alive they reach the
    kernel's limit on mappings per process (vm.max_map_count, 65530 by default), where LLVM aborts the process with
    "Unable to allocate section memory" although memory is free."""
    yield
    jax.clear_caches()


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
