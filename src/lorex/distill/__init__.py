"""``lorex distill``: a mechanistic surrogate of a trained learned optimizer, built only from its analysis.

* :mod:`lorex.distill.surrogate` — the surrogate (momentum modes, clipping, schedule, adaptation) as an optax
  transformation, and the fits that set its parameters;
* :mod:`lorex.distill.lens` — the surrogate's parts taken from :func:`lorex.mechanisms.analyze` of any recurrent
  map (the learned optimizer; Momentum, RMSProp, Adam via :mod:`lorex.analysis.reference`), and the learned
  optimizer with mechanisms suppressed;
* :mod:`lorex.distill.core` — :func:`distill`: explained fraction, ablations, reference optimizers;
* :mod:`lorex.distill.present` — :func:`distill_figure`, :func:`distill_html`, :func:`format_table`.
"""

from lorex.distill.core import distill, explained_fraction, per_seed_mll
from lorex.distill.lens import (
           Lens,
           build_surrogate,
           lens_from_analysis,
           reference_lens,
)
from lorex.distill.roundtrip import round_trip
from lorex.distill.present import (
           distill_figure,
           distill_html,
           format_table,
           ladder_figure,
)
from lorex.distill.surrogate import (
           MECHANISMS,
           Surrogate,
           scale_by_mechanisms,
           surrogate_optimizer,
)

__all__ = [
           "MECHANISMS",
           "Lens",
           "Surrogate",
           "build_surrogate",
           "distill",
           "distill_figure",
           "distill_html",
           "explained_fraction",
           "format_table",
           "ladder_figure",
           "lens_from_analysis",
           "per_seed_mll",
           "reference_lens",
           "round_trip",
           "scale_by_mechanisms",
           "surrogate_optimizer",
]
