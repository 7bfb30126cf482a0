"""Reference points for NLLs: random guessing and the population of other participants.

* **Random baseline** (Centaur, PROTOCOL §5): a response chosen among ``k`` offered options has
  NLL ``log k`` under uniform guessing; pseudo-R² ``= 1 − LL_model / LL_random = 1 − Σ NLL_model /
  Σ log k`` over the responses whose option set is known. The option counts come from the table's
  ``n_options`` column or from :func:`option_counts` (the transcript parser of
  :mod:`psych201.prompts.options`); responses with unknown or single options are left out.
* **Population baseline**: how likely a response is given only what *other* people answered at the
  same point of the same study — the frequency of each response among training participants at
  the same trial (add-α smoothed). No model of the individual can be expected to beat it by
  ignoring the individual, so it is an upper reference for non-individual prediction. It is only
  defined where trials align across participants (see :func:`population_baseline`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from psych201.analysis.tables import select
from psych201.data.records import Session
from psych201.results.schema import RESPONSE_KEY

POPULATION_MODEL = "population-baseline"


def random_nll(n_options: Iterable[float] | np.ndarray | pd.Series) -> np.ndarray:
    """``log k`` for each response with ``k ≥ 2`` known options, NaN otherwise."""
    k = np.asarray(pd.to_numeric(pd.Series(list(n_options) if not isinstance(
        n_options, (np.ndarray, pd.Series)) else n_options), errors="coerce"), dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(k) & (k >= 2), np.log(k), np.nan)


def with_option_counts(frame: pd.DataFrame, counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """``frame`` with an ``n_options`` column (from ``counts``, keyed by the response key)."""
    if counts is None:
        if "n_options" not in frame.columns:
            raise ValueError(
                "no option counts: the table has no n_options column and none were given"
            )
        return frame
    missing = [c for c in [*RESPONSE_KEY, "n_options"] if c not in counts.columns]
    if missing:
        raise ValueError(f"option counts lack columns {', '.join(missing)}")
    base = frame.drop(columns=["n_options"], errors="ignore")
    keys = counts[[*RESPONSE_KEY, "n_options"]].drop_duplicates(RESPONSE_KEY)
    keys = keys.astype({"participant": str, "experiment": str, "study": str})
    return base.merge(keys, on=RESPONSE_KEY, how="left")


def pseudo_r2(frame: pd.DataFrame, *, condition: str,
              counts: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pseudo-R² against random guessing per model and study, and per model.

    Per study ``1 − Σ NLL / Σ log k`` over responses with known ``k``; per model the mean over
    studies (the paper's weighting) next to the pooled value. Returns (per_study, per_model).
    """
    rows = with_option_counts(select(frame, condition=condition), counts)
    rows = rows.assign(nll_random=random_nll(rows["n_options"]))
    rows = rows[rows["nll_random"].notna()]
    per_study = rows.groupby(["model", "study"], as_index=False, observed=True).agg(
        n_responses=("nll", "size"), nll=("nll", "sum"), nll_random=("nll_random", "sum"))
    per_study["pseudo_r2"] = 1 - per_study["nll"] / per_study["nll_random"]
    per_model = per_study.groupby("model", as_index=False, observed=True).agg(
        pseudo_r2=("pseudo_r2", "mean"), nll=("nll", "sum"), nll_random=("nll_random", "sum"),
        n_studies=("study", "size"), n_responses=("n_responses", "sum"))
    per_model["pseudo_r2_pooled"] = 1 - per_model.pop("nll") / per_model.pop("nll_random")
    return per_study, per_model


# -- from sessions (the data layer) -------------------------------------------------------------
def option_counts(sessions: Iterable[Session],
                  options_of: Callable[[Session], list[frozenset[str] | None]] | None = None,
                  ) -> pd.DataFrame:
    """Option-set size of every response of ``sessions`` (NaN where the transcript is silent).

    ``options_of`` defaults to :func:`psych201.prompts.options.response_options`.
    """
    if options_of is None:
        from psych201.prompts.options import response_options

        options_of = response_options
    rows = []
    for session in sessions:
        for span, options in zip(session.responses, options_of(session), strict=True):
            rows.append((session.study, session.experiment, session.participant, session.line,
                         span.index, float(len(options)) if options else math.nan))
    return pd.DataFrame(rows, columns=[*RESPONSE_KEY, "n_options"])


def session_responses(sessions: Iterable[Session]) -> pd.DataFrame:
    """One row per response of ``sessions`` with its text and the session's response count."""
    rows = []
    for s in sessions:
        for span in s.responses:
            rows.append((s.study, s.experiment, s.participant, s.line, span.index, span.text,
                         len(s.responses)))
    return pd.DataFrame(rows, columns=[*RESPONSE_KEY, "response_text", "session_responses"])


# -- population baseline -----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PopulationBaseline:
    """Per-response NLLs of the population baseline and which studies it covers.

    ``responses`` has the response key, ``response_text``, ``nll`` (NaN where undefined), and
    ``model`` = :data:`POPULATION_MODEL`; ``studies`` has per study ``aligned`` (bool),
    ``modal_length``, ``share`` (training sessions of that length), ``n_train`` and ``reason``.
    """

    responses: pd.DataFrame
    studies: pd.DataFrame


def population_baseline(train: pd.DataFrame, test: pd.DataFrame, *, alpha: float = 0.5,
                        min_share: float = 0.8, min_train: int = 5) -> PopulationBaseline:
    """Frequency of each test response among training participants at the same trial.

    ``train`` is :func:`session_responses` of the training participants; ``test`` any table with
    the response key and ``response_text`` (e.g. one model's rows). Trials *align* in a study
    when at least ``min_share`` of its training sessions have the same number of responses (the
    modal length); then response ``k`` of every session is taken to be the same trial, counts come
    from the modal-length sessions, and ``P(text) = (count + α) / (N + α·(V + 1))`` with ``V``
    distinct training answers at that trial (one extra slot for unseen answers). Studies that do
    not align, and trials with fewer than ``min_train`` training answers, get NaN.
    """
    if alpha <= 0:
        raise ValueError("alpha must be > 0 (an unseen response would get probability 0)")
    study_rows = []
    tables = []
    lengths = train.drop_duplicates([*RESPONSE_KEY[:4]])
    for study, sessions in lengths.groupby("study", observed=True):
        counts = sessions["session_responses"].value_counts()
        modal = int(counts.index[0])
        share = float(counts.iloc[0] / counts.sum())
        aligned = share >= min_share
        reason = "" if aligned else (
            f"only {share:.0%} of training sessions share the modal length {modal}"
        )
        study_rows.append({"study": study, "aligned": aligned, "modal_length": modal,
                           "share": share, "n_train": int(counts.sum()), "reason": reason})
        if not aligned:
            continue
        rows = train[(train["study"] == study) & (train["session_responses"] == modal)]
        freq = rows.groupby(["response_index", "response_text"], observed=True).size()
        freq = freq.rename("count")
        trial = rows.groupby("response_index", observed=True).agg(n=("response_text", "size"),
                                                   v=("response_text", "nunique"))
        tables.append((study, freq.reset_index(), trial.reset_index()))
    studies = pd.DataFrame(study_rows, columns=["study", "aligned", "modal_length", "share",
                                                "n_train", "reason"])
    keys = test[[*RESPONSE_KEY, "response_text"]].drop_duplicates(RESPONSE_KEY)
    out = keys.assign(nll=np.nan)
    for study, freq, trial in tables:
        mask = (out["study"] == study).to_numpy()
        part = out.loc[mask, [*RESPONSE_KEY, "response_text"]]
        part = part.merge(trial, on="response_index", how="left").merge(
            freq.assign(study=study), on=["study", "response_index", "response_text"], how="left")
        count = part["count"].fillna(0.0).to_numpy(float)
        n = part["n"].to_numpy(float)
        v = part["v"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = (count + alpha) / (n + alpha * (v + 1))
            nll = np.where(n >= min_train, -np.log(p), np.nan)
        out.loc[mask, "nll"] = nll
    out["model"] = POPULATION_MODEL
    return PopulationBaseline(out.reset_index(drop=True), studies)


def against_population(frame: pd.DataFrame, baseline: PopulationBaseline, *,
                       condition: str) -> pd.DataFrame:
    """Per model and study: mean NLL of the model and of the baseline on the covered responses."""
    covered = baseline.responses.dropna(subset=["nll"])[[*RESPONSE_KEY, "nll"]]
    rows = select(frame, condition=condition).merge(
        covered.rename(columns={"nll": "nll_population"}), on=RESPONSE_KEY)
    out = rows.groupby(["model", "study"], as_index=False, observed=True).agg(
        n_responses=("nll", "size"), nll=("nll", "mean"), nll_population=("nll_population",
                                                                          "mean"))
    return out
