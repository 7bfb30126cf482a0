"""Response → participant → study → model: scores with the paper's weighting and alternatives.

The paper's model score pools all responses of a study into one mean and then weights studies
equally (``weighting="study"``), so a 3,912-participant study counts as much as a 79-participant
one. Alternatives: every participant equally (``"participant"``: each participant's mean NLL,
averaged over all participants of all studies) or every response equally (``"response"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pandas as pd

from psych201.analysis import bootstrap as bs
from psych201.analysis.registry import ModelRegistry
from psych201.analysis.tables import PARTICIPANT_KEY, common_studies, select

Weighting = Literal["study", "participant", "response"]
_STATISTIC: dict[str, bs.Statistic] = {
    "study": "mean",
    "participant": "mean_participant",
    "response": "mean_response",
}


def participant_table(frame: pd.DataFrame, value: str = "nll") -> pd.DataFrame:
    """Per model, condition, study and participant: number of responses and mean ``value``."""
    return (
        frame.groupby(["model", "condition", "study", *PARTICIPANT_KEY], observed=True)[value]
        .agg(n_responses="size", mean="mean")
        .reset_index()
    )


def study_table(frame: pd.DataFrame, value: str = "nll") -> pd.DataFrame:
    """Per model, condition and study: participants, responses, mean and both SDs of ``value``.

    ``sd`` is the sample SD (pandas ``.std()``, ddof 1), ``sd_population`` divides by n.
    """
    grouped = frame.groupby(["model", "condition", "study"], observed=True)
    out = grouped[value].agg(
        n_responses="size", mean="mean", sd="std", sd_population=lambda x: x.std(ddof=0)
    )
    out["n_participants"] = (
        frame.drop_duplicates(["model", "condition", "study", *PARTICIPANT_KEY])
        .groupby(["model", "condition", "study"], observed=True)
        .size()
    )
    return out.reset_index()[
        ["model", "condition", "study", "n_participants", "n_responses", "mean", "sd",
         "sd_population"]
    ]


def model_scores(frame: pd.DataFrame, *, weighting: Weighting = "study",
                 value: str = "nll") -> pd.DataFrame:
    """One score per model and condition (no intervals; see :func:`leaderboard`)."""
    if weighting == "study":
        studies = study_table(frame, value)
        grouped = studies.groupby(["model", "condition"], observed=True)
        out = grouped.agg(
            score=("mean", "mean"), n_studies=("study", "size"),
            n_participants=("n_participants", "sum"), n_responses=("n_responses", "sum"),
        )
    elif weighting == "participant":
        parts = participant_table(frame, value)
        grouped = parts.groupby(["model", "condition"], observed=True)
        out = grouped.agg(
            score=("mean", "mean"), n_studies=("study", "nunique"),
            n_participants=("mean", "size"), n_responses=("n_responses", "sum"),
        )
    elif weighting == "response":
        parts = participant_table(frame, value)
        parts["total"] = parts["mean"] * parts["n_responses"]
        grouped = parts.groupby(["model", "condition"], observed=True)
        out = grouped.agg(
            total=("total", "sum"), n_studies=("study", "nunique"),
            n_participants=("mean", "size"), n_responses=("n_responses", "sum"),
        )
        out["score"] = out.pop("total") / out["n_responses"]
    else:
        raise ValueError(f"weighting must be study, participant or response, not {weighting!r}")
    return out.reset_index()[
        ["model", "condition", "score", "n_studies", "n_participants", "n_responses"]
    ]


def leaderboard(frame: pd.DataFrame, registry: ModelRegistry, *, condition: str,
                models: Sequence[str] | None = None, weighting: Weighting = "study",
                allow_missing: bool = False, value: str = "nll", n_boot: int = 2000,
                ci: float = 0.95, seed: int = 0, levels: bs.Levels = "both") -> pd.DataFrame:
    """Models ranked by score (lowest NLL first) with bootstrap intervals and registry columns.

    All models are compared on the same studies (:func:`common_studies`). Columns: ``rank``,
    ``model``, ``display``, ``family``, ``type``, ``params_b``, ``score``, ``ci_low``,
    ``ci_high``, ``n_studies``, ``n_participants``, ``n_responses``.
    """
    sub = select(frame, condition=condition)
    names = sorted(sub["model"].unique()) if models is None else list(models)
    studies = common_studies(frame, names, condition, allow_missing=allow_missing)
    rows = []
    for i, model in enumerate(names):
        rows_m = select(sub, model=model, studies=studies)
        if value != "nll":
            rows_m = rows_m[rows_m[value].notna()]
        arrays = bs.participant_arrays(rows_m, value=value)
        result = bs.bootstrap(arrays, _STATISTIC[weighting], levels=levels, n_boot=n_boot,
                              ci=ci, seed=seed + i)
        rows.append(
            {
                "model": model,
                "score": result.estimate,
                "ci_low": result.ci_low,
                "ci_high": result.ci_high,
                "n_studies": result.n_studies,
                "n_participants": result.n_participants,
                "n_responses": result.n_responses,
            }
        )
    board = pd.DataFrame(rows)
    info = registry.describe(names).reset_index()
    board = board.merge(info[["model", "display", "family", "type", "params_b"]], on="model")
    ascending = value == "nll"
    board = board.sort_values("score", ascending=ascending, kind="stable").reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    return board[
        ["rank", "model", "display", "family", "type", "params_b", "score", "ci_low", "ci_high",
         "n_studies", "n_participants", "n_responses"]
    ]


def study_matrix(frame: pd.DataFrame, *, condition: str, value: str = "nll") -> pd.DataFrame:
    """Study × model table of study means (the per-study table of the report)."""
    sub = select(frame, condition=condition)
    table = study_table(sub, value)
    return table.pivot(index="study", columns="model", values="mean")
