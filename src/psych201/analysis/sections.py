"""The registry of analyses: every output (summary, report, figures, ``compare --json``)
iterates :data:`ANALYSES` in this order. Adding an analysis = one module + one line here."""

from __future__ import annotations

from psych201.analysis import (
    an_accuracy,
    an_calibration,
    an_chat_template,
    an_closed_loop,
    an_diagnostics,
    an_domains,
    an_generations,
    an_items,
    an_meta,
    an_persona,
    an_population,
    an_population_fit,
    an_post_training,
    an_random_baseline,
    an_readable,
    an_scaling,
)
from psych201.analysis.plugin import Analysis

ANALYSES: list[Analysis] = [
    an_readable.ANALYSIS,
    an_post_training.ANALYSIS,
    an_generations.ANALYSIS,
    an_meta.ANALYSIS,
    an_domains.ANALYSIS,
    an_scaling.ANALYSIS,
    an_accuracy.ANALYSIS,
    an_chat_template.ANALYSIS,
    an_persona.ANALYSIS,
    an_random_baseline.ANALYSIS,
    an_population.ANALYSIS,
    an_calibration.ANALYSIS,
    an_population_fit.ANALYSIS,
    an_items.ANALYSIS,
    an_diagnostics.ANALYSIS,
    an_closed_loop.ANALYSIS,
]
