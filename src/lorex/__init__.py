"""lorex: train learned optimizers and reverse-engineer how they work."""

__version__ = "0.1.0"

from lorex import tasks  # noqa: E402
from lorex.errors import LorexError  # noqa: E402
from lorex.evaluate import evaluate  # noqa: E402
from lorex.lopt import learned_optimizer, load_optimizer  # noqa: E402

__all__ = ["tasks", "evaluate", "learned_optimizer", "load_optimizer", "LorexError", "__version__"]


def __getattr__(name):  # lazy: the analysis package pulls in more than most callers need
    if name == "analysis":
        import importlib

        return importlib.import_module("lorex.analysis")
    raise AttributeError(name)
