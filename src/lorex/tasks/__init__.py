"""Task families: ``make(name, **overrides)`` builds one; see :mod:`lorex.tasks.base` for the protocol."""

from lorex.tasks import digits, linreg, rosenbrock, two_moons  # noqa: F401  (registers the families)
from lorex.tasks.base import TaskFamily, load_user_task, make, names, register

__all__ = ["TaskFamily", "make", "names", "register", "load_user_task"]
