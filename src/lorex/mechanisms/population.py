"""Findings across a population: the same mechanism read on several optimizers meta-trained from different seeds.

A finding about "what meta-training produces" should hold for most optimizers it produces, not for one seed. For each
mechanism: how many of the n members show it present / absent / not applicable, and the spread of the deciding
numbers over members (median and range) next to each member's own 95 % interval.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from lorex.mechanisms.finding import ABSENT, NOT_APPLICABLE, PRESENT, Finding


class Agreement(NamedTuple):
    """One mechanism over the members of a population (``seeds`` in the order of the other fields)."""

    mechanism: str
    seeds: tuple[int, ...]
    verdicts: tuple[str, ...]
    values: tuple[float | None, ...]
    intervals: tuple[tuple[float, float] | None, ...]
    threshold: float
    direction: str

    @property
    def n(self) -> int:
        return len(self.seeds)

    def count(self, verdict: str) -> int:
        return sum(v == verdict for v in self.verdicts)

    @property
    def spread(self) -> tuple[float, float, float] | None:
        """(median, min, max) of the deciding numbers of the members where one exists."""
        v = np.array([x for x in self.values if x is not None and math.isfinite(x)], np.float64)
        return None if v.size == 0 else (float(np.median(v)), float(v.min()), float(v.max()))

    @property
    def summary(self) -> str:
        """E.g. "4 of 5 present (1 absent)"; not-applicable members are counted, never dropped."""
        rest = [f"{self.count(v)} {v}" for v in (ABSENT, NOT_APPLICABLE, PRESENT) if v != PRESENT and self.count(v)]
        return f"{self.count(PRESENT)} of {self.n} present" + (f" ({', '.join(rest)})" if rest else "")

    def to_json(self) -> dict:
        sp = self.spread
        return {"mechanism": self.mechanism, "n": self.n, "present": self.count(PRESENT),
                "absent": self.count(ABSENT), "not_applicable": self.count(NOT_APPLICABLE), "summary": self.summary,
                "threshold": self.threshold, "direction": self.direction,
                "median": None if sp is None else sp[0], "min": None if sp is None else sp[1],
                "max": None if sp is None else sp[2],
                "members": [{"seed": s, "verdict": v, "value": x, "interval_95": None if i is None else list(i)}
                            for s, v, x, i in zip(self.seeds, self.verdicts, self.values, self.intervals)]}


def _num(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def agreement(findings_by_seed: dict[int, list[Finding]]) -> list[Agreement]:
    """One :class:`Agreement` per mechanism from each member's findings ({seed: [Finding, ...]})."""
    seeds = tuple(findings_by_seed)
    by_mech: dict[str, list[Finding]] = {}
    for s in seeds:
        for f in findings_by_seed[s]:
            by_mech.setdefault(f.mechanism, []).append(f)
    out = []
    for mech, fs in by_mech.items():
        if len(fs) != len(seeds):
            raise ValueError(f"mechanism {mech!r} is missing for some members")
        out.append(Agreement(
            mech, seeds, tuple(f.verdict for f in fs), tuple(_num(f.value) for f in fs),
            tuple(None if f.interval_95 is None else (float(f.interval_95[0]), float(f.interval_95[1])) for f in fs),
            fs[0].threshold, fs[0].direction))
    return out
