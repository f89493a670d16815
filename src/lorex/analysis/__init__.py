"""Reverse-engineering tools for any recurrent map F(h, x) → h' (plus a readout h → u for optimizers).

They work on the learned optimizer (:func:`lorex.lopt.recurrent_map`), on hand-designed optimizers written as
recurrent maps (:mod:`lorex.analysis.reference`) and on any user RNN.  See SPEC §6.
"""

from lorex.analysis import reference
from lorex.analysis.autonomous import Autonomous, Schedule, autonomous, schedule_summary
from lorex.analysis.fixed_points import FixedPoints, find_fixed_points, newton_polish, q_value, sample_seeds
from lorex.analysis.linearize import MomentumModes, eigenmodes, momentum_modes, polyak_optimum, timescales
from lorex.analysis.pca import PCA, pca, project
from lorex.analysis.scurve import SCurve, SCurveSummary, s_curve, s_curve_summary
from lorex.analysis.trajectories import Trajectory, record_map_trajectory, record_trajectory
from lorex.analysis.update_function import (Saturation, UpdateSlice, alpha_eff_fn, effective_lr, gradient_density,
                                            saturation, share_beyond, update_along, update_function)

__all__ = [
    "reference",
    "find_fixed_points", "sample_seeds", "q_value", "newton_polish", "FixedPoints",
    "momentum_modes", "polyak_optimum", "eigenmodes", "timescales", "MomentumModes",
    "update_function", "update_along", "alpha_eff_fn", "effective_lr", "saturation", "gradient_density",
    "share_beyond",
    "Saturation", "UpdateSlice",
    "autonomous", "schedule_summary", "Autonomous", "Schedule",
    "s_curve", "s_curve_summary", "SCurve", "SCurveSummary",
    "pca", "project", "PCA",
    "record_trajectory", "record_map_trajectory", "Trajectory",
]
