"""The registry of analyses: every output (summary, report, figures, ``compare --json``)
iterates :data:`ANALYSES` in this order. Adding an analysis = one module + one line here."""

from __future__ import annotations

from psych201.analysis.diagnostics import Diagnostics
from psych201.analysis.plugin import Analysis
from psych201.analysis.population_fit import PopulationFit

ANALYSES: list[Analysis] = [
    PopulationFit(),
    Diagnostics(),
]
