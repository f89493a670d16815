"""One error type for bad user input: it names the field and what is allowed.

The CLI turns it into a one-line message and exit status 2; library callers can catch it.
"""

from __future__ import annotations

from collections.abc import Iterable


class LorexError(ValueError):
    """Invalid user input or an unusable file; ``str(err)`` is a one-line message."""

    def __init__(self, field: str, problem: str, allowed: str | Iterable[str] | None = None):
        self.field = field
        if allowed is not None and not isinstance(allowed, str):
            allowed = ", ".join(str(a) for a in allowed)
        msg = f"{field}: {problem}"
        if allowed:
            msg += f" (allowed: {allowed})"
        super().__init__(msg)


def check_positive_int(field: str, value) -> int:
    """Return ``value`` as an int if it is a positive integer, else raise LorexError."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise LorexError(field, f"got {value!r}", "a positive integer")
    return value


def check_choice(field: str, value, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise LorexError(field, f"unknown value {value!r}", choices)
    return value
