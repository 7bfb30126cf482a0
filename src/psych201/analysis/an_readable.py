"""Readable numbers: NLL per response and per token as geometric-mean probabilities, and the
studies that dominate a model's mean (see :mod:`psych201.analysis.readable`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from psych201.analysis.plugin import AnalysisContext, Column, Section, SectionTable
from psych201.analysis.readable import READABLE_TEXT, readable_numbers

COLUMNS = (Column("model", "model", "text"), Column("nll_response", "NLL per response"),
           Column("p_response", "P(response), geometric mean", "probability"),
           Column("nll_token", "NLL per token"),
           Column("p_token", "P(token), geometric mean", "probability"),
           Column("n_studies", "studies", "int"), Column("dominant", "dominating studies", "text"),
           Column("nll_response_without", "NLL per response without them"))


@dataclass(frozen=True)
class ReadableResult:
    """NLL per response and token as probabilities, per model."""

    table: pd.DataFrame


class Readable:
    name = "readable"
    requires: Sequence[str] = ()
    result_type: type | None = ReadableResult
    columns: Sequence[str] = ("nll",)

    def skip(self, context: AnalysisContext) -> str | None:
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        # the full table: per-token numbers need n_tokens, which no other analysis reads
        table = readable_numbers(context.results.responses, condition=context.condition,
                                 studies=context.studies)
        return Section(anchor=self.name, title="Readable numbers", text=READABLE_TEXT,
                       tables=(SectionTable("readable", table, COLUMNS),),
                       result=ReadableResult(table))


ANALYSIS = Readable()
