"""A mechanism's verdict: the deciding number, its 95 % interval, the threshold and the margin.

Every threshold is stated in units where 0 means "no such mechanism", so moving it by ±50 % (the sensitivity
table) is meaningful for all four: momentum β_eff (heavy ball with β = 0 is plain SGD), clipping 1 − κ (κ = 1 is a
linear update), schedule log-amplitude of α_eff (0 = constant), adaptation log-log slope (0 = no adaptation).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

PRESENT, ABSENT, NOT_APPLICABLE = "present", "absent", "not applicable"
VERDICTS = (PRESENT, ABSENT, NOT_APPLICABLE)
N_BOOT = 1000
SENSITIVITY_FACTORS = (0.5, 1.5)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One mechanism on one optimizer: present / absent / not applicable, and everything that decided it.

    ``value`` is the deciding number and ``interval_95`` its 95 % interval (``interval_kind`` says over what);
    the mechanism is present iff ``value > threshold`` (``direction="above"``) or ``value < threshold``
    (``"below"``); ``margin`` is the signed distance to the threshold, positive on the "present" side.
    ``decisive`` is False when the interval straddles the threshold.  ``reason`` says why a verdict is not
    applicable (then ``value`` may still be shown, but decides nothing).
    """

    mechanism: str
    verdict: str
    value: float | None
    interval_95: tuple[float, float] | None
    threshold: float
    direction: str
    measure: str
    interval_kind: str
    statement: str
    reason: str | None = None
    task: str | None = None

    @property
    def margin(self) -> float | None:
        if self.value is None or self.verdict == NOT_APPLICABLE:
            return None
        d = self.value - self.threshold
        return d if self.direction == "above" else -d

    @property
    def decisive(self) -> bool | None:
        if self.interval_95 is None or self.verdict == NOT_APPLICABLE:
            return None
        lo, hi = self.interval_95
        return not (lo <= self.threshold <= hi)

    def verdict_at(self, factor: float) -> str:
        """The verdict if the threshold were ``factor`` × its value (the deciding number unchanged)."""
        if self.verdict == NOT_APPLICABLE or self.value is None:
            return self.verdict
        return decide(self.value, self.threshold * factor, self.direction)

    def to_json(self) -> dict:
        return {"task": self.task, "mechanism": self.mechanism, "verdict": self.verdict, "value": _f(self.value),
                "interval_95": None if self.interval_95 is None else [_f(v) for v in self.interval_95],
                "interval_kind": self.interval_kind, "threshold": self.threshold, "direction": self.direction,
                "margin": _f(self.margin), "decisive": self.decisive, "reason": self.reason,
                "measure": self.measure, "statement": self.statement,
                "sensitivity": {f"threshold_x{f:g}": self.verdict_at(f) for f in SENSITIVITY_FACTORS}}


def _f(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def decide(value: float, threshold: float, direction: str) -> str:
    present = value > threshold if direction == "above" else value < threshold
    return PRESENT if present else ABSENT


def finding(mechanism: str, value, interval, threshold: float, direction: str, *, measure: str, interval_kind: str,
            text: str, reason: str | None = None) -> Finding:
    """Build a :class:`Finding`; a non-finite value or a ``reason`` makes it "not applicable"."""
    ok = value is not None and math.isfinite(float(value))
    if reason is None and not ok:
        reason = "the deciding number could not be computed"
    verdict = NOT_APPLICABLE if reason else decide(float(value), threshold, direction)
    v = float(value) if ok else None
    iv = None if interval is None or not all(np.isfinite(interval)) else (float(interval[0]), float(interval[1]))
    head = f"{mechanism}: {verdict}"
    if verdict == NOT_APPLICABLE:
        statement = f"{head} — {reason}" + (f" ({text})" if text else "")
    else:
        rel = ">" if direction == "above" else "<"
        ci = "" if iv is None else f", 95 % interval [{iv[0]:.3g}, {iv[1]:.3g}]"
        statement = f"{head} — {text}; decides: {v:.3g}{ci} vs threshold {rel} {threshold:.3g}"
    return Finding(mechanism, verdict, v, iv, float(threshold), direction, measure, interval_kind, statement, reason)


def bootstrap(stat: Callable[[np.ndarray], float], n: int, *, n_boot: int = N_BOOT,
              seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of ``stat(indices)`` over ``n`` units (analysis runs) resampled with
    replacement; non-finite replicates are dropped (NaN interval if most are)."""
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    reps = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)], np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size < n_boot // 2:
        return float("nan"), float("nan")
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return float(lo), float(hi)


def bootstrap_mean(values) -> tuple[float, tuple[float, float]]:
    """(mean, 95 % bootstrap interval of the mean) of per-run values (non-finite runs dropped)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    if v.size == 1:
        return float(v[0]), (float(v[0]), float(v[0]))
    rng = np.random.default_rng(0)
    means = v[rng.integers(0, v.size, (N_BOOT, v.size))].mean(axis=1)
    return float(v.mean()), tuple(float(x) for x in np.percentile(means, [2.5, 97.5]))


def sensitivity_tolerance(interval, threshold: float) -> float:
    """How far a deciding number may move under 1e-6 perturbations of its starting point and still be reported:
    its interval's half-width, but at least 1e-3 × |threshold| (an exact quantity has a zero-width interval)."""
    half = 0.0 if interval is None or not np.all(np.isfinite(interval)) else 0.5 * (interval[1] - interval[0])
    return max(half, 1e-3 * abs(threshold))
