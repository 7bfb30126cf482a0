"""The registry of analyses: every output (summary, report, figures, ``compare --json``)
iterates :data:`ANALYSES` in this order. Adding an analysis = one module + one line here."""

from __future__ import annotations

from psych201.analysis import diagnostics, population_fit
from psych201.analysis.plugin import Analysis

ANALYSES: list[Analysis] = [
    population_fit.ANALYSIS,
    diagnostics.ANALYSIS,
]
