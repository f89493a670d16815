"""Task families: ``make(name, **overrides)`` builds one; see :mod:`lorex.tasks.base` for the protocol."""

from lorex.tasks import digits, linreg, rosenbrock, two_moons  # noqa: F401  (registers the families)
from lorex.tasks.base import (DEFAULT_POLICY, TaskFamily, TaskPolicy, load_user_task, make, names, policy_of,
                              register, task_name)

__all__ = ["TaskFamily", "TaskPolicy", "DEFAULT_POLICY", "policy_of", "make", "names", "register", "load_user_task",
           "task_name"]
