"""Error types with one-line messages: bad user input (:class:`LorexError`) and failed runs (:class:`RunError`).

The CLI turns a LorexError into its message and exit status 2, a RunError into its message and exit status 1;
library callers can catch them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

MAX_SEED = 2**63 - 1


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class LorexError(ValueError):
    """Invalid user input or an unusable file; ``str(err)`` is a one-line message."""

    def __init__(self, field: str, problem: str, allowed: str | Iterable[str] | None = None):
        self.field = field
        if allowed is not None and not isinstance(allowed, str):
            allowed = ", ".join(str(a) for a in allowed)
        self._args = (field, problem, allowed)
        msg = f"{field}: {problem}"
        if allowed:
            msg += f" (allowed: {allowed})"
        super().__init__(_one_line(msg))

    def __reduce__(self):  # rebuilt from its own arguments when it comes back from a worker process
        return type(self), self._args


class RunError(RuntimeError):
    """A run that could not do its work (disk full, run folder gone, training that learned nothing)."""

    def __init__(self, where: str, problem: str):
        self.where = where
        self._args = (where, problem)
        super().__init__(_one_line(f"{where}: {problem}"))

    def __reduce__(self):  # as LorexError's
        return type(self), self._args


def check_positive_int(field: str, value) -> int:
    """Return ``value`` as an int if it is a positive integer, else raise LorexError."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise LorexError(field, f"got {value!r}", "a positive integer")
    return value


def check_seed(field: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise LorexError(field, f"got {value!r}", "an integer from 0 to 2**63 - 1")
    return value


def check_finite(field: str, value, *, positive: bool = False) -> float:
    """Return ``value`` if it is a finite real number (and > 0 when ``positive``), else raise LorexError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if not ok:
        raise LorexError(field, f"got {value!r}", "a finite positive number" if positive else "a finite number")
    return value


def check_choice(field: str, value, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise LorexError(field, f"unknown value {value!r}", choices)
    return value
