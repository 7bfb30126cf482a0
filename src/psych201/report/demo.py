"""The ``psych201 demo`` table: each study's mean NLL per response, beside the oracle's and
guessing's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from psych201.results.summary import StudyLine
from psych201.scoring.oracle import oracle_nll


@dataclass(frozen=True)
class StudySummary:
    """One line of the demo table: a study's mean NLL per response, the oracle's, and the run
    summary's line for the study (chance NLL and pseudo-R² against guessing)."""

    study: str
    participants: int
    responses: int
    mean_nll: float
    oracle_nll: float | None
    line: StudyLine


def demo_summary(run_dir: Path, data: Path) -> list[StudySummary]:
    """Per study: participants, responses, mean NLL/response, where the data stores it the
    generating model's NLL over the very same responses, and guessing's NLL."""
    from psych201.results.io import read_responses
    from psych201.results.summary import option_counts_of, summarise_run

    table = read_responses(run_dir)
    oracle = oracle_nll(data)
    lines = {line.study: line for line in summarise_run(run_dir, option_counts_of(run_dir, data))}
    rows: list[StudySummary] = []
    for study, group in table.groupby("study", sort=True):
        values = [
            oracle.get((str(study), int(line), int(index)))
            for line, index in zip(group["line"], group["response_index"], strict=True)
        ]
        known = [v for v in values if v is not None]
        rows.append(
            StudySummary(
                study=str(study),
                participants=int(
                    group[["experiment", "participant", "line"]].drop_duplicates().shape[0]
                ),
                responses=len(group),
                mean_nll=float(group["nll"].mean()),
                oracle_nll=sum(known) / len(known) if len(known) == len(values) else None,
                line=lines[str(study)],
            )
        )
    return rows
