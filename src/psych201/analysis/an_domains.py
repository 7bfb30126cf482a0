"""Domains (paper Fig. 4): per pair, the mean per-study d within each domain of categories.csv."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import pandas as pd

from psych201.analysis import paper
from psych201.analysis.domains import PAPER_DOMAINS, load_categories
from psych201.analysis.plots import fig_domains
from psych201.analysis.plugin import AnalysisContext, Section, SectionFigure, SectionTable

CAPTION = ("Post-training effect d by domain, pairs × domains, with the average row (paper "
           "Fig. 4; population SD as the authors).")


@dataclass(frozen=True)
class DomainsResult:
    """Pair × domain d (``Average`` row last)."""

    matrix: pd.DataFrame


def section(matrix: pd.DataFrame) -> Section:
    """The section of a pair × domain matrix (``Average`` row last)."""
    return Section(anchor=Domains.name, title="Domains",
                   text="Mean per-study d within each domain of categories.csv (population SD, "
                        "as the authors), per pair; last row: mean over pairs.",
                   tables=(SectionTable("domains", matrix.rename_axis("pair"), index="pair"),),
                   figures=(SectionFigure("fig4_domains", CAPTION, partial(fig_domains, matrix)),),
                   result=DomainsResult(matrix))


class Domains:
    name = "domains"
    requires: Sequence[str] = ()
    result_type: type | None = DomainsResult
    columns: Sequence[str] = ("nll",)

    def skip(self, context: AnalysisContext) -> str | None:
        if not context.pairs:
            return None  # the post-training section already says there is no pair
        categories = load_categories(context.options.categories)
        if not set(context.main["study"].unique()) & set(categories.index):
            return "no scored study is in categories.csv: domain analysis skipped"
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        if not context.pairs:
            return None
        categories = load_categories(context.options.categories)
        matrix = paper.domain_d(context.main, list(context.pairs), categories,
                                condition=context.condition, domains=PAPER_DOMAINS)
        return None if matrix.empty else section(matrix)


ANALYSIS = Domains()
