"""Generations (paper Fig. 3a): base NLL by size per generation and each generation's mean pair d,
with coupled bootstrap intervals when the post-training section resampled the pairs."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from psych201.analysis import paper
from psych201.analysis.an_post_training import PostTrainingResult, _group_intervals
from psych201.analysis.plots import fig_generation
from psych201.analysis.plugin import AnalysisContext, Column, Section, SectionFigure, SectionTable

CAPTION = ("Left: base-model NLL by size across generations. Right: pair d of each generation's "
           "post-trained models (paper Fig. 3a).")

COLUMNS = (Column("family", "generation", "text"), Column("d", "mean pair d"),
           Column("ci_low", "interval", "interval"), Column("p_value", "p", "p"),
           Column("n_pairs", "pairs", "int"), Column("n_studies", "studies", "int"))


def section(trend: paper.GenerationTrend) -> Section:
    """The section of a generation trend (paper mode draws the paper's own trend with it)."""
    tables: tuple[SectionTable, ...] = ()
    if not trend.mean_d.empty:
        tables = (SectionTable("generations", trend.mean_d, COLUMNS),)
    return Section(anchor=Generations.name, title="Generations",
                   text="Mean pair d of each generation's standard post-trained models (paper "
                        "Fig. 3a), with coupled bootstrap intervals.",
                   tables=tables,
                   figures=(SectionFigure("fig3a_generations", CAPTION,
                                          partial(fig_generation, trend)),),
                   result=trend)


class Generations:
    name = "generations"
    requires: Sequence[str] = ("post-training",)
    result_type: type | None = paper.GenerationTrend
    columns: Sequence[str] = ("nll",)

    def skip(self, context: AnalysisContext) -> str | None:
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        trend = paper.generation_trend(context.main, context.registry,
                                       condition=context.condition, sd=context.options.sd)
        if trend.base_scores.empty and trend.pair_d.empty:
            return None
        pairs = context.required("post-training", PostTrainingResult)
        if pairs is not None and not trend.mean_d.empty:
            members = pairs.pairs[pairs.pairs["post"].isin(trend.pair_d["post"])]
            trend = paper.GenerationTrend(
                trend.base_scores, trend.pair_d,
                _group_intervals(trend.mean_d, members, "family", pairs.replicates,
                                 context.options))
        return section(trend)


ANALYSIS = Generations()
