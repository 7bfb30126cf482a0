"""A run's per-study summary: what ``psych201 score`` prints at the end and keeps in
``summary.json`` (strict JSON: an undefined mean is ``null``, never ``NaN``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from psych201.results.io import read_responses
from psych201.results.writer import SUMMARY_FILE, write_text_atomic
from psych201.strict_json import dumps


@dataclass(frozen=True)
class StudyLine:
    """One study of a run: participants, responses, mean NLL per response and per token (nats).

    ``study`` is ``"all"`` on the total line. A mean over no scored response is None.
    """

    study: str
    participants: int
    responses: int
    nll_per_response: float | None
    nll_per_token: float | None


def _mean_nll(nll: Any, tokens: Any) -> tuple[float | None, float | None]:
    # Responses without a defined NLL (paper alignment that found no tokens) are left out.
    defined = nll.notna()
    per_response = float(nll[defined].mean()) if defined.any() else None
    token_total = float(tokens[defined].sum())
    per_token = float(nll[defined].sum()) / token_total if token_total > 0 else None
    return per_response, per_token


def summarise_run(run_dir: Path) -> list[StudyLine]:
    """Per study, then ``all``: participants, responses, mean NLL per response and per token."""
    table = read_responses(run_dir)
    keys = ["study", "experiment", "participant", "line"]
    lines: list[StudyLine] = []
    for study, group in table.groupby("study", sort=True):
        per_response, per_token = _mean_nll(group["nll"], group["n_tokens"])
        lines.append(
            StudyLine(
                study=str(study),
                participants=int(group[keys].drop_duplicates().shape[0]),
                responses=len(group),
                nll_per_response=per_response,
                nll_per_token=per_token,
            )
        )
    per_response, per_token = _mean_nll(table["nll"], table["n_tokens"])
    lines.append(
        StudyLine(
            study="all",
            participants=int(table[keys].drop_duplicates().shape[0]),
            responses=len(table),
            nll_per_response=per_response,
            nll_per_token=per_token,
        )
    )
    return lines


def write_summary(
    run_dir: Path, lines: Sequence[StudyLine], extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``run_dir/summary.json`` atomically; returns its path."""
    body = {**(extra or {}), "studies": [asdict(line) for line in lines]}
    text = dumps(body)
    path = Path(run_dir) / SUMMARY_FILE
    write_text_atomic(text + "\n", path)
    return path
