"""Reference points for NLLs: random guessing and the population of other participants.

* **Random baseline** (Centaur, Nature 2025): a response chosen among ``k`` offered options has
  NLL ``log k`` under uniform guessing; pseudo-R² ``= 1 − LL_model / LL_random = 1 − Σ NLL_model /
  Σ log k`` over the responses whose option set is known. The option counts come from the table's
  ``n_options`` column or from :func:`option_counts` (the transcript parser of
  :mod:`psych201.prompts.options`); responses with unknown or single options are left out.
* **Population baseline**: how likely a discrete choice is given only what *other* people chose
  at the same trial of the same study — add-α smoothed frequencies over the offered options among
  training participants, the trial keyed by its stimulus text with option letters normalised. It
  is a proper likelihood of the response, defined only for discrete-choice studies whose trials
  recur across participants (:func:`population_baseline`); free-text responses get none.
"""

from __future__ import annotations

import math
import re
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
    carried = ["n_options", *(["options_inferred"] if "options_inferred" in counts else [])]
    base = frame.drop(columns=carried, errors="ignore")
    keys = counts[[*RESPONSE_KEY, *carried]].drop_duplicates(RESPONSE_KEY)
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
    inferred = (rows["options_inferred"].fillna(False).astype(bool)
                if "options_inferred" in rows.columns else pd.Series(False, index=rows.index))
    rows = rows.assign(options_inferred=inferred)
    per_study = rows.groupby(["model", "study"], as_index=False, observed=True).agg(
        n_responses=("nll", "size"), nll=("nll", "sum"), nll_random=("nll_random", "sum"),
        n_inferred=("options_inferred", "sum"))
    per_study["pseudo_r2"] = 1 - per_study["nll"] / per_study["nll_random"]
    per_model = per_study.groupby("model", as_index=False, observed=True).agg(
        pseudo_r2=("pseudo_r2", "mean"), nll=("nll", "sum"), nll_random=("nll_random", "sum"),
        n_studies=("study", "size"), n_responses=("n_responses", "sum"),
        n_inferred=("n_inferred", "sum"))
    per_model["chance_nll"] = per_model["nll_random"] / per_model["n_responses"]
    per_model["pseudo_r2_pooled"] = 1 - per_model.pop("nll") / per_model.pop("nll_random")
    return per_study, per_model


# -- from sessions (the data layer) -------------------------------------------------------------
def option_counts(sessions: Iterable[Session],
                  options_of: Callable[[Session], list[frozenset[str] | None]] | None = None,
                  ) -> pd.DataFrame:
    """Option-set size of every response of ``sessions`` (NaN where unknown).

    By default the set is read from the wording and, where the wording is not recognised,
    inferred from the participant's distinct responses (:mod:`psych201.prompts.chance`; the
    ``options_inferred`` column says which). A given ``options_of`` is used as it is.
    """
    if options_of is None:
        from psych201.prompts.chance import COUNT_COLUMNS, option_count_rows

        return pd.DataFrame(option_count_rows(sessions), columns=list(COUNT_COLUMNS))
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
_LETTER = re.compile(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])")


def _normalise_letters(stimulus: str, options: frozenset[str]) -> tuple[str, dict[str, str]]:
    """The stimulus with its option letters renamed by order of first appearance (``<1>``, …).

    Option labels are random per participant; renaming them makes the same trial shown with
    other labels the same key, and maps each participant's letter to the same choice.
    """
    mapping: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        letter = match.group(1)
        if letter not in options:
            return letter
        return mapping.setdefault(letter, f"<{len(mapping) + 1}>")

    return _LETTER.sub(rename, stimulus), mapping


def _is_number(option: str) -> bool:
    try:
        return math.isfinite(float(option))
    except ValueError:
        return False


def trial_responses(sessions: Iterable[Session],
                    options_of: Callable[[Session], list[frozenset[str] | None]] | None = None,
                    *, numeric: bool = False, snippet: int = 0) -> pd.DataFrame:
    """Every response of ``sessions`` with its trial key, normalised choice and option count.

    Only discrete-choice responses get a key: the offered options (read from the transcript)
    are ≥ 2 single capital letters and the response is one of them. The trial key is the
    stimulus — the text since the previous response — with option letters normalised
    (:func:`_normalise_letters`); the choice is the response's normalised letter (letters the
    stimulus does not mention stay as they are: fixed labels such as L/R). Other responses get
    ``trial = None``. ``labels`` maps each offered option as written to its normalised label.
    With ``numeric``, options that are all numbers (a rating scale) are keyed too, by the
    stimulus as it stands (their labels are the numbers). ``snippet > 0`` adds a ``snippet``
    column: the last ``snippet`` characters of the stimulus, whitespace collapsed.
    """
    if options_of is None:
        from psych201.prompts.options import response_options

        options_of = response_options
    rows = []
    for session in sessions:
        previous = 0
        for span, options in zip(session.responses, options_of(session), strict=True):
            stimulus = session.text[previous: max(previous, span.start - 2)]
            previous = span.end + 2
            trial = choice = labels = None
            k = math.nan
            if (options and len(options) >= 2 and span.text in options
                    and (all(len(o) == 1 and "A" <= o <= "Z" for o in options)
                         or (numeric and all(map(_is_number, options))))):
                trial, mapping = _normalise_letters(stimulus, options)
                choice = mapping.get(span.text, span.text)
                labels = {o: mapping.get(o, o) for o in options}
                k = float(len(options))
            row: tuple[object, ...] = (session.study, session.experiment, session.participant,
                                       session.line, span.index, trial, choice, k, labels)
            if snippet > 0:
                row += (" ".join(stimulus.split())[-snippet:],)
            rows.append(row)
    columns = [*RESPONSE_KEY, "trial", "choice", "n_options", "labels"]
    return pd.DataFrame(rows, columns=columns + (["snippet"] if snippet > 0 else []))


def letters_only(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` (of :func:`trial_responses` with ``numeric``) as it is without ``numeric``:
    responses keyed by a numeric option set lose their key."""
    numeric = trials["trial"].notna() & trials["choice"].map(
        lambda c: isinstance(c, str) and _is_number(c))
    out = trials.copy()
    out.loc[numeric, ["trial", "choice", "labels"]] = None
    out.loc[numeric, "n_options"] = math.nan
    return out


@dataclass(frozen=True, eq=False)
class PopulationBaseline:
    """Per-response NLLs of the population baseline and which studies it covers.

    ``responses`` has the response key, ``nll`` (NaN where undefined) and ``model`` =
    :data:`POPULATION_MODEL`; ``studies`` has per study ``discrete`` (share of test responses
    that are discrete choices), ``covered`` (share of test responses with an NLL), ``aligned``
    (the study is covered: ``covered ≥ min_share``), ``n_train`` and ``reason``.
    """

    responses: pd.DataFrame
    studies: pd.DataFrame

    @property
    def covered_studies(self) -> list[str]:
        return sorted(self.studies.loc[self.studies["aligned"], "study"])


def population_baseline(train: pd.DataFrame, test: pd.DataFrame, *, alpha: float = 0.5,
                        min_share: float = 0.5, min_train: int = 5) -> PopulationBaseline:
    """How likely each test choice is given what training participants chose at the same trial.

    ``train`` and ``test`` are :func:`trial_responses` tables. For a discrete-choice response
    with ``k`` offered options at trial ``t`` (its stimulus, option letters normalised):
    ``P(choice) = (count_t(choice) + α) / (N_t + α·k)``, counts over the training responses at
    the same trial with the same number of options — a proper likelihood over the offered
    options (it sums to one over them). A trial needs ``min_train`` training responses;
    free-text responses, trials without enough training data, and studies where fewer than
    ``min_share`` of the test responses are covered get NaN: the baseline then says nothing
    there rather than something that is not a likelihood of the response.
    """
    if alpha <= 0:
        raise ValueError("alpha must be > 0 (an unseen response would get probability 0)")
    keyed = train.dropna(subset=["trial"])
    counts = keyed.groupby(["study", "trial", "n_options", "choice"], observed=True).size()
    totals = keyed.groupby(["study", "trial", "n_options"], observed=True).size()
    out = test[[*RESPONSE_KEY, "trial", "choice", "n_options"]].drop_duplicates(RESPONSE_KEY)
    out = out.merge(counts.rename("count").reset_index(),
                    on=["study", "trial", "n_options", "choice"], how="left")
    out = out.merge(totals.rename("n_trial").reset_index(), on=["study", "trial", "n_options"],
                    how="left")
    n = out["n_trial"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (out["count"].fillna(0.0).to_numpy(float) + alpha) / (
            n + alpha * out["n_options"].to_numpy(float))
        nll = np.where(out["trial"].notna() & (n >= min_train), -np.log(p), np.nan)
    out["nll"] = nll
    study_rows = []
    n_train = train.groupby("study", observed=True).size()
    for study, rows in out.groupby("study", observed=True):
        discrete = float(rows["trial"].notna().mean())
        covered = float(rows["nll"].notna().mean())
        aligned = covered >= min_share
        reason = "" if aligned else (
            "not a discrete-choice study" if discrete < min_share else
            f"only {covered:.0%} of test responses meet a trial seen in training "
            f"≥ {min_train} times")
        study_rows.append({"study": study, "discrete": discrete, "covered": covered,
                           "aligned": aligned, "n_train": int(n_train.get(study, 0)),
                           "reason": reason})
    studies = pd.DataFrame(study_rows, columns=["study", "discrete", "covered", "aligned",
                                                "n_train", "reason"])
    out.loc[~out["study"].isin(studies.loc[studies["aligned"], "study"]), "nll"] = np.nan
    out = out[[*RESPONSE_KEY, "nll"]].assign(model=POPULATION_MODEL)
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
