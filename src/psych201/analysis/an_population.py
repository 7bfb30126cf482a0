"""Population baseline: the model's NLL beside that of the training participants' choice
frequencies at the same trial (needs the transcripts: ``report --data``)."""

from __future__ import annotations

from collections.abc import Sequence

from psych201.analysis import baselines as bl
from psych201.analysis.plugin import AnalysisContext, Column, Section, SectionTable

COLUMNS = (Column("model", "model", "text"), Column("study", "study", "text"),
           Column("n_responses", "responses", "int"), Column("nll", "NLL model"),
           Column("nll_population", "NLL population"))


class PopulationBaseline:
    """Runs where ``extras["population"]`` holds a
    :class:`~psych201.analysis.baselines.PopulationBaseline` (silent otherwise)."""

    name = "population"
    columns: Sequence[str] = ("nll",)

    def skip(self, context: AnalysisContext) -> str | None:
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        population = context.extras.get("population")
        if population is None:
            return None
        table = bl.against_population(context.main, population, condition=context.condition)
        covered = ", ".join(sorted(set(table["study"]))) or "none"
        return Section(anchor=self.name, title="Population baseline",
                       text="Mean NLL of the model and of the training participants' choice "
                            "frequencies at the same trial (stimulus text, option letters "
                            "normalised; a likelihood over the offered options), on the "
                            "responses it covers. Covered (discrete-choice studies whose trials "
                            f"recur): {covered}.",
                       tables=(SectionTable("population", table, COLUMNS),),
                       data={"table": table})


ANALYSIS = PopulationBaseline()
