"""A run's per-study summary: what ``psych201 score`` prints at the end and keeps in
``summary.json`` (strict JSON: an undefined mean is ``null``, never ``NaN``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from psych201.atomic import write_text_atomic
from psych201.results.io import read_responses
from psych201.results.writer import SUMMARY_FILE
from psych201.strict_json import dumps


@dataclass(frozen=True)
class StudyLine:
    """One study of a run: participants, responses, mean NLL per response and per token (nats).

    ``study`` is ``"all"`` on the total line. A mean over no scored response is None.
    ``chance_nll`` is what guessing scores per response (mean ``log k`` nats over the responses
    with ``k`` known options), ``pseudo_r2`` the model against guessing over those responses
    (``1 − Σ NLL / Σ log k``: 0 = no better than guessing, below 0 = worse), ``chance_responses``
    how many responses they cover and ``inferred_responses`` how many of those had their option
    set inferred from the participant's distinct responses (:mod:`psych201.prompts.chance`).
    """

    study: str
    participants: int
    responses: int
    nll_per_response: float | None
    nll_per_token: float | None
    chance_nll: float | None = None
    pseudo_r2: float | None = None
    chance_responses: int = 0
    inferred_responses: int = 0


def _mean_nll(nll: Any, tokens: Any) -> tuple[float | None, float | None]:
    # Responses without a defined NLL (paper alignment that found no tokens) are left out.
    defined = nll.notna()
    per_response = float(nll[defined].mean()) if defined.any() else None
    token_total = float(tokens[defined].sum())
    per_token = float(nll[defined].sum()) / token_total if token_total > 0 else None
    return per_response, per_token


_SESSION_KEY = ["study", "experiment", "participant", "line"]
_RESPONSE_KEY = [*_SESSION_KEY, "response_index"]


def _chance(group: pd.DataFrame) -> dict[str, Any]:
    """Chance NLL, pseudo-R² and their coverage over the responses with a known option count."""
    if "n_options" not in group.columns:
        return {}
    k = pd.to_numeric(group["n_options"], errors="coerce").to_numpy(dtype=float)
    nll = group["nll"].to_numpy(dtype=float)
    known = np.isfinite(k) & (k >= 2) & np.isfinite(nll)
    if not known.any():
        return {}
    log_k = np.log(k[known])
    inferred = group["options_inferred"].fillna(False).to_numpy(dtype=bool)[known]
    return {
        "chance_nll": float(log_k.mean()),
        "pseudo_r2": float(1 - nll[known].sum() / log_k.sum()),
        "chance_responses": int(known.sum()),
        "inferred_responses": int(inferred.sum()),
    }


def _line(study: str, group: pd.DataFrame) -> StudyLine:
    per_response, per_token = _mean_nll(group["nll"], group["n_tokens"])
    return StudyLine(
        study=study,
        participants=int(group[_SESSION_KEY].drop_duplicates().shape[0]),
        responses=len(group),
        nll_per_response=per_response,
        nll_per_token=per_token,
        **_chance(group),
    )


def summarise_run(run_dir: Path, counts: pd.DataFrame | None = None) -> list[StudyLine]:
    """Per study, then ``all``: participants, responses, mean NLL per response and per token,
    and with ``counts`` (:func:`option_counts_of`) the chance NLL and pseudo-R²."""
    table = read_responses(run_dir)
    if counts is not None and not counts.empty:
        carried = counts[[*_RESPONSE_KEY, "n_options", "options_inferred"]]
        table = table.drop(columns=["n_options"], errors="ignore").merge(
            carried.drop_duplicates(_RESPONSE_KEY), on=_RESPONSE_KEY, how="left")
    lines = [_line(str(study), group) for study, group in table.groupby("study", sort=True)]
    lines.append(_line("all", table))
    return lines


def option_counts_of(run_dir: Path, data: str | Path) -> pd.DataFrame:
    """The option count of every response of ``run_dir``, read from the sessions in ``data``
    (:func:`psych201.prompts.chance.option_count_rows`); empty when none can be read."""
    from psych201.data.discover import discover_studies
    from psych201.data.hub import resolve_data
    from psych201.data.readers import iter_sessions
    from psych201.prompts.chance import COUNT_COLUMNS, option_count_rows

    table = read_responses(run_dir)[_SESSION_KEY]
    scored = set(table.drop_duplicates().itertuples(index=False, name=None))
    studies = {key[0] for key in scored}
    sessions = (
        session
        for source in discover_studies(resolve_data(data)) if source.name in studies
        for session in iter_sessions(source, on_error="skip")
        if (session.study, session.experiment, session.participant, session.line) in scored
    )
    return pd.DataFrame(option_count_rows(sessions), columns=list(COUNT_COLUMNS))


def chance_words(pseudo_r2: float | None) -> str:
    """The pseudo-R² against guessing, in words."""
    if pseudo_r2 is None or not math.isfinite(pseudo_r2):
        return "chance unknown"
    if pseudo_r2 < -0.02:
        return "worse than guessing"
    if pseudo_r2 <= 0.02:
        return "about as good as guessing"
    return "better than guessing"


def write_summary(
    run_dir: Path, lines: Sequence[StudyLine], extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``run_dir/summary.json`` atomically; returns its path."""
    body = {**(extra or {}), "studies": [asdict(line) for line in lines]}
    text = dumps(body)
    path = Path(run_dir) / SUMMARY_FILE
    write_text_atomic(text + "\n", path)
    return path
