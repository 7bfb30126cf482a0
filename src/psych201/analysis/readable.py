"""Numbers a psychologist can read, beside the nats per response of the leaderboard.

A mean NLL of 2.3 nats per response says little on its own. Two translations help: the
probability the model gave the observed response, as a geometric mean (``exp(-mean NLL)``: a
model that gives every observed response probability 0.1 scores 2.303 nats), per response and
per token (free-text answers span many tokens, single letters one); and which studies dominate a
mean (a free-text study at 77 nats per response swamps studies at 1-2 nats), with the mean
without them. Studies are weighted equally, as in the paper's leaderboard.
"""

from __future__ import annotations

import math

import pandas as pd

#: A study dominates a model's mean when its mean NLL per response exceeds this many times the
#: median of the model's other studies.
DOMINANCE_FACTOR = 3.0

#: One sentence for readers who have not met pseudo-R² (HTML report and ``compare``).
PSEUDO_R2_TEXT = (
    "Pseudo-R² compares the model with guessing: 0 means the model predicts the observed "
    "responses no better than picking uniformly among the options offered, 1 means it gives "
    "every observed response probability 1, and negative values mean it does worse than "
    "guessing."
)

READABLE_TEXT = (
    "Mean NLL per response and per token (studies weighted equally), and the same as the "
    "probability the model gave the observed response (geometric mean, exp(−mean NLL)). A study "
    f"whose mean NLL per response is more than {DOMINANCE_FACTOR:g}× the median of the model's "
    "other studies dominates the mean (typically free-text answers of many tokens); the last "
    "column is the mean without such studies."
)


def readable_numbers(responses: pd.DataFrame, *, condition: str,
                     studies: tuple[str, ...] | list[str] | None = None) -> pd.DataFrame:
    """Per model: NLL and geometric-mean probability per response and per token, and dominance.

    ``responses`` is a response table (``model``, ``condition``, ``study``, ``nll`` and, for the
    per-token columns, ``n_tokens``); only ``condition`` and ``studies`` (default: all) count.
    Columns: ``model``, ``nll_response``, ``p_response``, ``nll_token``, ``p_token``,
    ``n_studies``, ``dominant`` (comma-separated studies, "" if none) and
    ``nll_response_without`` (the mean without the dominant studies; NaN when there are none).
    """
    rows = responses[responses["condition"] == condition]
    if studies is not None:
        rows = rows[rows["study"].isin(list(studies))]
    out = []
    for model, group in rows.groupby("model", sort=True, observed=True):
        per_study = group.groupby("study", observed=True)["nll"].mean()
        nll_response = float(per_study.mean())
        if "n_tokens" in group.columns:
            sums = group.groupby("study", observed=True)[["nll", "n_tokens"]].sum()
            sums = sums[sums["n_tokens"] > 0]
            nll_token = float((sums["nll"] / sums["n_tokens"]).mean()) if len(sums) else math.nan
        else:
            nll_token = math.nan
        dominant = dominant_studies(per_study)
        rest = per_study.drop(dominant)
        out.append({
            "model": str(model),
            "nll_response": nll_response,
            "p_response": _probability(nll_response),
            "nll_token": nll_token,
            "p_token": _probability(nll_token),
            "n_studies": len(per_study),
            "dominant": ", ".join(dominant),
            "nll_response_without": float(rest.mean()) if dominant and len(rest) else math.nan,
        })
    columns = ["model", "nll_response", "p_response", "nll_token", "p_token", "n_studies",
               "dominant", "nll_response_without"]
    return pd.DataFrame(out, columns=columns)


def dominant_studies(per_study: pd.Series) -> list[str]:
    """Studies whose mean exceeds :data:`DOMINANCE_FACTOR` × the median of the other studies."""
    if len(per_study) < 2:
        return []
    out = []
    for study, value in per_study.items():
        others = per_study.drop(study)
        median = float(others.median())
        if median > 0 and float(value) > DOMINANCE_FACTOR * median:
            out.append(str(study))
    return sorted(out)


def _probability(nll: float) -> float:
    return math.exp(-nll) if math.isfinite(nll) else math.nan
