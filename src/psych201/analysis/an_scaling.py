"""Size scaling (paper Fig. 2): NLL against parameter count per family and line, with the slope
per tenfold size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import pandas as pd

from psych201.analysis import paper
from psych201.analysis.plots import fig_size
from psych201.analysis.plugin import AnalysisContext, Column, Section, SectionFigure, SectionTable
from psych201.analysis.tables import select

CAPTION = "NLL against parameter count per family, one line per model type (paper Fig. 2)."

COLUMNS = (Column("family", "family", "text"), Column("line", "line", "text"),
           Column("slope_per_decade", "Δ NLL per 10×"), Column("n_sizes", "sizes", "int"))


@dataclass(frozen=True)
class ScalingResult:
    """Size-scaling points and the fitted slope per family and line."""

    points: pd.DataFrame
    fits: pd.DataFrame


def section(points: pd.DataFrame, fits: pd.DataFrame,
            families: Sequence[str] | None = None) -> Section:
    """The section of size-scaling points and fits (``families``: the figure's panels)."""
    return Section(anchor=SizeScaling.name, title="Size scaling",
                   text="Least-squares slope of NLL on log10(parameters): change per tenfold "
                        "size.",
                   tables=(SectionTable("size_scaling", fits, COLUMNS),) if not fits.empty
                   else (),
                   figures=(SectionFigure("fig2_size", CAPTION,
                                          partial(fig_size, points, families)),),
                   result=ScalingResult(points, fits))


class SizeScaling:
    name = "scaling"
    requires: Sequence[str] = ()
    result_type: type | None = ScalingResult
    columns: Sequence[str] = ("nll",)

    def skip(self, context: AnalysisContext) -> str | None:
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        points, fits = paper.size_scaling(select(context.main, studies=list(context.studies)),
                                          context.registry, condition=context.condition)
        if points.empty and fits.empty:
            return None
        return section(points, fits, context.options.families)


ANALYSIS = SizeScaling()
