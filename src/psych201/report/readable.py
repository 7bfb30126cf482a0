"""Moved to :mod:`psych201.analysis.readable` (it computes numbers: analysis, not report)."""

from psych201.analysis.readable import (
    DOMINANCE_FACTOR,
    PSEUDO_R2_TEXT,
    READABLE_TEXT,
    dominant_studies,
    readable_numbers,
)

__all__ = ["DOMINANCE_FACTOR", "PSEUDO_R2_TEXT", "READABLE_TEXT", "dominant_studies",
           "readable_numbers"]
