"""Population baseline: the model's NLL beside that of the training participants' choice
frequencies at the same trial (needs the transcripts: ``report --data``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from psych201.analysis import baselines as bl
from psych201.analysis.plugin import AnalysisContext, Column, Section, SectionTable

COLUMNS = (Column("model", "model", "text"), Column("study", "study", "text"),
           Column("n_responses", "responses", "int"), Column("nll", "NLL model"),
           Column("nll_population", "NLL population"), Column("nll_guessing", "NLL guessing"))


@dataclass(frozen=True)
class PopulationResult:
    """Model, population and guessing NLL per model and study."""

    table: pd.DataFrame


class PopulationBaseline:
    """Runs where ``inputs.population`` holds a
    :class:`~psych201.analysis.baselines.PopulationBaseline` (silent otherwise)."""

    name = "population"
    requires: Sequence[str] = ()
    result_type: type | None = PopulationResult
    columns: Sequence[str] = ("nll",)

    def skip(self, context: AnalysisContext) -> str | None:
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        population = context.inputs.population
        if population is None:
            return None
        table = bl.against_population(context.main, population, condition=context.condition)
        covered = ", ".join(sorted(set(table["study"]))) or "none"
        studies = population.studies[population.studies["study"].isin(context.studies)]
        notes = [f"{row.study}: {row.reason}" for row in studies.itertuples() if row.reason]
        notes += [f"{row.study}: {row.in_sample} responses are of participants whose choices "
                  "are among the frequencies (the runs scored the training split too, e.g. "
                  "--split all); each was scored with that participant's own choices left "
                  "out, so the baseline stays out-of-sample"
                  for row in studies.itertuples() if row.in_sample]
        return Section(anchor=self.name, title="Population baseline",
                       text="Mean NLL of the model, of guessing among the offered options "
                            "(log k), and of what other participants chose at the same trial: "
                            "their choice frequencies over the offered options, smoothed "
                            "towards guessing by an amount chosen by leave-one-participant-out "
                            "(a likelihood of the response that, where people choose as if at "
                            "random, is guessing). A trial is its stimulus and offered options "
                            "with option letters normalised, never the outcome of earlier "
                            "trials; a study whose trials do not recur across participants is "
                            "not pooled. Free-text responses have no population baseline. "
                            f"Pooled studies: {covered}.",
                       tables=(SectionTable("population", table, COLUMNS),),
                       notes=tuple(notes), result=PopulationResult(table))


ANALYSIS = PopulationBaseline()
