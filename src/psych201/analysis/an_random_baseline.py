"""Random baseline: pseudo-R² against guessing uniformly among the options offered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from psych201.analysis import baselines as bl
from psych201.analysis.plugin import AnalysisContext, Column, Section, SectionTable
from psych201.analysis.readable import PSEUDO_R2_TEXT
from psych201.analysis.tables import select

COLUMNS = (Column("model", "model", "text"), Column("pseudo_r2", "pseudo-R² (study mean)"),
           Column("pseudo_r2_pooled", "pooled"), Column("n_studies", "studies", "int"),
           Column("n_responses", "responses", "int"))


@dataclass(frozen=True)
class PseudoR2Result:
    """Pseudo-R² against guessing, per model."""

    table: pd.DataFrame


class RandomBaseline:
    """Needs the option count of each response: from the table, or from the transcripts
    (``inputs.option_counts``, what ``report --data`` passes)."""

    name = "baselines"
    requires: Sequence[str] = ()
    result_type: type | None = PseudoR2Result
    columns: Sequence[str] = ("nll",)

    def skip(self, context: AnalysisContext) -> str | None:
        rows = select(context.main, studies=list(context.studies))
        if context.inputs.option_counts is None and not (
                "n_options" in rows.columns and rows["n_options"].notna().any()):
            return ("no option counts (n_options): chance level and pseudo-R² need the "
                    "transcripts; rerun with --data PATH")
        return None

    def run(self, context: AnalysisContext) -> Section | None:
        rows = select(context.main, studies=list(context.studies))
        _, r2 = bl.pseudo_r2(rows, condition=context.condition,
                             counts=context.inputs.option_counts)
        inferred = int(r2["n_inferred"].sum()) if "n_inferred" in r2 else 0
        note = (f" For {inferred} responses the wording did not state the options; their sets "
                "were inferred from the distinct responses of each participant."
                if inferred else "")
        return Section(anchor=self.name, title="Random baseline (pseudo-R²)",
                       text=f"{PSEUDO_R2_TEXT} Computed as 1 − Σ NLL / Σ log k over responses "
                            "with k known options (guessing scores log k nats); mean over "
                            f"studies and pooled.{note}",
                       tables=(SectionTable("pseudo_r2", r2, COLUMNS),),
                       result=PseudoR2Result(r2))


ANALYSIS = RandomBaseline()
