"""lorex: train learned optimizers and reverse-engineer how they work.

The public names (``__all__``):

* ``load_optimizer``       a trained learned optimizer (shipped name or run folder) as an optax transformation
* ``learned_optimizer``    the learned optimizer of given weights and architecture as an optax transformation
* ``evaluate_optimizer``   loss curves of any optax transformation on the problems of a task family (one compiled call)
* ``train``                meta-train a learned optimizer, as ``lorex train``
* ``benchmark_optimizer``  tuned baselines and a learned optimizer on a task's test seeds, as ``lorex benchmark``
* ``distill_optimizer``    a mechanistic surrogate of a learned optimizer, as ``lorex distill``
* ``reproduce``            the paper's figures and numbers as report.html, as ``lorex reproduce``
* ``tasks``                the task families: ``tasks.make("linreg", n=10)``
* ``analysis``             reverse-engineering tools for any recurrent map (imported on first use)
* ``LorexError``           what bad input raises; its message names the field and what is allowed
* ``__version__``          the package version

Modules keep their own names: ``lorex.evaluate``, ``lorex.benchmark`` and ``lorex.distill`` are modules (a function
named like a module is exported as ``<verb>_optimizer``); ``lorex.lopt``, ``lorex.meta``, ``lorex.mechanisms`` and
``lorex.seeds`` hold the rest of the library.
"""

__version__ = "0.1.0"

from lorex import tasks  # noqa: E402
from lorex.api import benchmark_optimizer, distill_optimizer, reproduce, train  # noqa: E402
from lorex.errors import LorexError  # noqa: E402
from lorex.evaluate import evaluate as evaluate_optimizer  # noqa: E402
from lorex.lopt import learned_optimizer, load_optimizer  # noqa: E402

__all__ = ["load_optimizer", "learned_optimizer", "evaluate_optimizer", "train", "benchmark_optimizer",
           "distill_optimizer", "reproduce", "tasks", "analysis", "LorexError", "__version__"]


def __getattr__(name):  # lazy: the analysis package pulls in more than most callers need
    if name == "analysis":
        import importlib

        return importlib.import_module("lorex.analysis")
    raise AttributeError(name)
