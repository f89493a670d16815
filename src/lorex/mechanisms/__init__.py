"""The four mechanisms of a recurrent optimizer, each read at operating points the optimizer actually visits.

Each function takes any recurrent map (a :class:`lorex.lopt.RecurrentMap`: ``step(h, [g]) -> h'``, ``readout(h')
-> u``, ``h0``) and :class:`Evidence`, the runs it is about, and returns a typed result whose ``finding`` is a
:class:`Finding`: verdict (present / absent / not applicable), deciding number, 95 % interval, threshold, margin,
and the reason when a validity gate fails.

* :func:`momentum` — aggregate heavy ball (Σα_i, β_eff) of the linearization at the convergence fixed point;
* :func:`clipping` — sublinear growth of the update over the gradients met;
* :func:`schedule` — α_eff along the autonomous trajectory (and on the trajectories);
* :func:`adaptation` — α_eff against each coordinate's running RMS gradient (and the S-curve).

:func:`analyze` runs all four and shares the work between them (α_eff at every visited state is computed once).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

# the modules first (their constants make the rules below); the package attributes then become the functions
from lorex.mechanisms import adaptation as _adaptation
from lorex.mechanisms import clipping as _clipping
from lorex.mechanisms import evidence, finding
from lorex.mechanisms import momentum as _momentum
from lorex.mechanisms import schedule as _schedule
from lorex.mechanisms.adaptation import Adaptation, adaptation
from lorex.mechanisms.clipping import Clipping, clipping
from lorex.mechanisms.evidence import Evidence, GradientRange, gradient_range, record, replay
from lorex.mechanisms.finding import (ABSENT, NOT_APPLICABLE, PRESENT, SENSITIVITY_FACTORS, VERDICTS, Finding,
                                      bootstrap, bootstrap_mean)
from lorex.mechanisms.momentum import HeavyBall, Momentum, aggregate_heavy_ball, impulse_response, momentum
from lorex.mechanisms.population import Agreement, agreement
from lorex.mechanisms.schedule import Schedule, schedule

MECHANISMS = ("momentum", "clipping", "schedule", "adaptation")
FP_TOL = _momentum.FP_TOL
THRESHOLDS = {"momentum": _momentum.THRESHOLD, "clipping": _clipping.THRESHOLD, "schedule": _schedule.THRESHOLD,
              "adaptation": _adaptation.THRESHOLD}
RULES = {
    "momentum": (f"aggregate heavy ball of the linearization at the convergence fixed point: β_eff = 1 − r₀/Σr_k of "
                 f"its impulse response r_k = −wᵀJᵏB; present iff β_eff > {_momentum.THRESHOLD} (gates: runs "
                 "converged, a zero gradient is met, the fixed point is stable and within the spread of the final "
                 "states, β_eff stable under 1e-6 perturbations)"),
    "clipping": ("1 − κ at h₀, κ = the update at each run's largest first-step gradient over the linear prediction "
                 "from the slope at the 10th percentile of the first-step |g| (max over signs); present iff 1 − κ > "
                 f"{_clipping.THRESHOLD}"),
    "schedule": ("log-amplitude ln(max/min) of α_eff along the autonomous trajectory; "
                 f"present iff > ln 1.25 = {_schedule.THRESHOLD:.3f} (gates: a zero gradient is met, the autonomous "
                 f"trajectory runs among the visited states at >= {_schedule.WITHIN_SHARE:.0%} of the steps)"),
    "adaptation": (f"median over {_adaptation.FIT_STEPS} steps in the first half of the run of the slope of ln α_eff "
                   f"against ln recent RMS gradient (last {_adaptation.WINDOW} steps) across the coordinates in the top decade "
                   "of recent RMS; present "
                   f"iff < {_adaptation.THRESHOLD} (RMSProp −1); the S-curve slope is shown beside it"),
}


class Analysis(NamedTuple):
    """All four mechanisms of one optimizer on one task."""

    momentum: Momentum
    clipping: Clipping
    schedule: Schedule
    adaptation: Adaptation
    gradients: GradientRange
    zero_input: evidence.ZeroInput
    fd_step: float | None  # None: α_eff by autodiff at g = 0

    @property
    def findings(self) -> list[Finding]:
        return [self.momentum.finding, self.clipping.finding, self.schedule.finding, self.adaptation.finding]


def analyze(rmap, ev: Evidence, *, task: str | None = None, polyak=None, seed: int = 0, fp_seeds: int = 256,
            scurve_points: int = 21, relax_steps: int = 2000, progress=None) -> Analysis:
    """Every mechanism of ``rmap`` on ``ev``; ``task`` labels the findings; ``polyak`` = (α*, β*) if known."""
    say = progress or (lambda msg: None)
    op = evidence.operating(rmap, ev)
    say("α_eff at the visited states")
    alpha_visited = evidence.alpha_eff_at(rmap, ev.states_before(), op.fd_step)
    say("momentum")
    mo = momentum(rmap, ev, polyak=polyak, seed=seed, fp_seeds=fp_seeds, operating=op)
    say("clipping")
    cl = clipping(rmap, ev)
    say("schedule")
    sc = schedule(rmap, ev, alpha_visited=alpha_visited, seed=seed, operating=op)
    say("adaptation")
    ad = adaptation(rmap, ev, alpha_visited=alpha_visited, h_start=mo.fixed_point, scurve_points=scurve_points,
                    relax_steps=relax_steps, operating=op)
    if task is not None:
        mo = mo._replace(finding=dataclasses.replace(mo.finding, task=task))
        cl = cl._replace(finding=dataclasses.replace(cl.finding, task=task))
        sc = sc._replace(finding=dataclasses.replace(sc.finding, task=task))
        ad = ad._replace(finding=dataclasses.replace(ad.finding, task=task))
    return Analysis(mo, cl, sc, ad, op.gradients, op.zero, op.fd_step)


__all__ = [
    "MECHANISMS", "RULES", "THRESHOLDS", "FP_TOL", "Analysis", "analyze", "Evidence", "record", "replay", "gradient_range", "GradientRange",
    "evidence", "momentum", "clipping", "schedule", "adaptation", "Momentum", "Clipping", "Schedule", "Adaptation",
    "HeavyBall", "aggregate_heavy_ball", "impulse_response", "Finding", "bootstrap", "bootstrap_mean",
    "PRESENT", "ABSENT", "NOT_APPLICABLE", "VERDICTS", "SENSITIVITY_FACTORS", "Agreement", "agreement",
]
