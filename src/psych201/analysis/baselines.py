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
from collections import Counter
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
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _normalise_letters(stimulus: str, options: frozenset[str],
                       introduced: dict[str, int] | None = None) -> tuple[str, dict[str, str]]:
    """The stimulus with its option letters renamed by order of first appearance (``<1>``, …).

    Option labels are random per participant; renaming them makes the same trial shown with
    other labels the same key, and maps each participant's letter to the same choice. Options
    the stimulus does not name (a bandit's machines, named once in the instructions) are
    numbered next, in the order ``introduced`` gives (where each first appeared in the text
    before the response); options shown nowhere keep their letter.
    """
    mapping: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        letter = match.group(1)
        if letter not in options:
            return letter
        return mapping.setdefault(letter, f"<{len(mapping) + 1}>")

    renamed = _LETTER.sub(rename, stimulus)
    for letter in sorted(set(options) & set(introduced or {}) - set(mapping),
                         key=lambda o: (introduced or {})[o]):
        mapping[letter] = f"<{len(mapping) + 1}>"
    return renamed, mapping


def _first_shown(shown: str) -> dict[str, int]:
    """Where each capital letter first stands alone in the text shown (responses masked)."""
    first: dict[str, int] = {}
    for match in _LETTER.finditer(shown):
        first.setdefault(match.group(1), match.start())
    return first


def _segments(stimulus: str) -> list[str]:
    """The stimulus cut into lines, or into sentences where it has no line break (a trial that
    shares its line with the previous response and its feedback)."""
    return stimulus.split("\n") if "\n" in stimulus else _SENTENCE_END.split(stimulus)


def _names_an_option(segment: str, options: frozenset[str]) -> bool:
    return any(m.group(1) in options for m in _LETTER.finditer(segment))


def _trial_text(segments: list[str], options: frozenset[str], first: bool,
                repeated: set[str]) -> str:
    """What identifies the trial: the stimulus without the outcome of the previous trial.

    The first segment after a response is its feedback (``… and won nothing.``); the segments
    that follow it are dropped while they are text the participant is shown again and again
    between trials (in ``repeated``, whitespace collapsed) and name no option (``Your choice
    was correct …``): they carry the history, not the trial. The first response has no
    feedback. Whitespace is collapsed.
    """
    kept = segments if first else segments[1:]
    while (len(kept) > 1 and " ".join(kept[0].split()) in repeated
           and not _names_an_option(kept[0], options)):
        kept = kept[1:]
    return " ".join(" ".join(kept).split())


def _is_number(option: str) -> bool:
    try:
        return math.isfinite(float(option))
    except ValueError:
        return False


def _keyable(options: frozenset[str] | None, response: str, numeric: bool) -> bool:
    return bool(options and len(options) >= 2 and response in options
                and (all(len(o) == 1 and "A" <= o <= "Z" for o in options)
                     or (numeric and all(map(_is_number, options)))))


def trial_responses(sessions: Iterable[Session],
                    options_of: Callable[[Session], list[frozenset[str] | None]] | None = None,
                    *, numeric: bool = False, snippet: int = 0) -> pd.DataFrame:
    """Every response of ``sessions`` with its trial key, normalised choice and option count.

    Only discrete-choice responses get a key: the offered options (read from the transcript)
    are ≥ 2 single capital letters and the response is one of them. The trial is keyed by what
    was offered, never by what happened before: the stimulus — the text since the previous
    response, less the feedback to it (:func:`_trial_text`) — with option letters normalised
    (:func:`_normalise_letters`, letters named only in the instructions included), followed by
    the normalised option set. The choice is the response's normalised letter (letters shown
    nowhere stay as they are). Other responses get ``trial = None``. ``labels`` maps each
    offered option as written to its normalised label. With ``numeric``, options that are all
    numbers (a rating scale) are keyed too (their labels are the numbers). ``snippet > 0`` adds
    a ``snippet`` column: the last ``snippet`` characters of the text since the previous
    response, whitespace collapsed.
    """
    if options_of is None:
        from psych201.prompts.options import response_options

        options_of = response_options
    from psych201.prompts.options import CLOSE, OPEN, mask_responses

    rows = []
    for session in sessions:
        shown = mask_responses(session.text, session.responses)
        stimuli, previous = [], 0
        for span in session.responses:
            stimuli.append(session.text[previous: max(previous, span.start - len(OPEN))])
            previous = span.end + len(CLOSE)
        segments = [_segments(stimulus) for stimulus in stimuli]
        seen = Counter(" ".join(seg.split()) for parts in segments for seg in parts[1:])
        repeated = {seg for seg, n in seen.items() if n > 1}
        first_shown = _first_shown(shown)
        for i, (span, options) in enumerate(zip(session.responses, options_of(session),
                                                strict=True)):
            trial = choice = labels = None
            k = math.nan
            if _keyable(options, span.text, numeric):
                assert options is not None
                text = _trial_text(segments[i], options, i == 0, repeated)
                introduced = {o: at for o, at in first_shown.items() if at < span.start}
                text, mapping = _normalise_letters(text, options, introduced)
                choice = mapping.get(span.text, span.text)
                labels = {o: mapping.get(o, o) for o in options}
                offered = ", ".join(sorted(labels.values(), key=_label_key))
                trial = f"{text}\n[options: {offered}]"
                k = float(len(options))
            row: tuple[object, ...] = (session.study, session.experiment, session.participant,
                                       session.line, span.index, trial, choice, k, labels)
            if snippet > 0:
                row += (" ".join(stimuli[i].split())[-snippet:],)
            rows.append(row)
    columns = [*RESPONSE_KEY, "trial", "choice", "n_options", "labels"]
    return pd.DataFrame(rows, columns=columns + (["snippet"] if snippet > 0 else []))


def _label_key(label: str) -> tuple[int, float, str]:
    """Sort order of option labels: numbers by value, then the rest as text."""
    return (0, float(label), "") if _is_number(label) else (1, 0.0, label)


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
    (the study is pooled: ``covered ≥ min_share``), ``n_train``, ``alpha`` (the smoothing
    used), ``in_sample`` (test responses of training participants, scored with their own
    choices left out) and ``reason`` (why a study is not pooled).
    """

    responses: pd.DataFrame
    studies: pd.DataFrame

    @property
    def covered_studies(self) -> list[str]:
        return sorted(self.studies.loc[self.studies["aligned"], "study"])


#: Smoothing strengths the leave-one-participant-out choice of α tries (large: guessing).
ALPHA_GRID = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 300.0, 1e3, 1e4, 1e6)
_TRIAL = ["study", "trial", "n_options"]
_SESSION = ["experiment", "participant", "line"]


def _held_out(rows: pd.DataFrame, counts: pd.Series, totals: pd.Series,
              own_counts: pd.Series, own_totals: pd.Series) -> pd.DataFrame:
    """``rows`` with ``count`` and ``n_trial``: the training choices at each response's trial,
    less the response's own session's (a participant never predicts themselves)."""
    out = rows.merge(counts.rename("count").reset_index(), on=[*_TRIAL, "choice"], how="left")
    out = out.merge(totals.rename("n_trial").reset_index(), on=_TRIAL, how="left")
    out = out.merge(own_counts.rename("own").reset_index(), on=[*_SESSION, *_TRIAL, "choice"],
                    how="left")
    out = out.merge(own_totals.rename("own_n").reset_index(), on=[*_SESSION, *_TRIAL],
                    how="left")
    own_n = out["own_n"].fillna(0.0)
    return out.assign(count=out["count"].fillna(0.0) - out["own"].fillna(0.0),
                      n_trial=out["n_trial"].fillna(0.0) - own_n, in_sample=own_n > 0)


def _smoothed_nll(held: pd.DataFrame, alpha: float | np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(-np.log((held["count"].to_numpy(float) + alpha)
                                  / (held["n_trial"].to_numpy(float)
                                     + alpha * held["n_options"].to_numpy(float))))


def _best_alpha(held: pd.DataFrame) -> float:
    """The α of :data:`ALPHA_GRID` with the best leave-one-participant-out likelihood of the
    training choices (the smallest on ties): where people choose as if at random it is large
    and the baseline is guessing, so the baseline is never worse than guessing by overfitting."""
    if held.empty:
        return ALPHA_GRID[0]
    losses = [float(np.mean(_smoothed_nll(held, a))) for a in ALPHA_GRID]
    return ALPHA_GRID[int(np.argmin(losses))]


def population_baseline(train: pd.DataFrame, test: pd.DataFrame, *,
                        alpha: float | None = None, min_share: float = 0.5,
                        min_train: int = 5) -> PopulationBaseline:
    """How likely each test choice is given what training participants chose at the same trial.

    ``train`` and ``test`` are :func:`trial_responses` tables. For a discrete-choice response
    with ``k`` offered options at trial ``t`` (its stimulus and option set, letters
    normalised): ``P(choice) = (count_t(choice) + α) / (N_t + α·k)``, counts over the training
    responses at the same trial of other sessions (a test response whose session is in
    training is scored with its own choices left out: the baseline is never in-sample) — a
    proper likelihood over the offered options. ``alpha=None`` chooses α per study from
    :data:`ALPHA_GRID` by leave-one-participant-out likelihood on the training choices. A
    trial needs ``min_train`` training responses; free-text responses, trials without enough
    training data, and studies where fewer than ``min_share`` of the test responses are covered
    (their trials do not recur across participants: "not pooled") get NaN: the baseline then
    says nothing there rather than something that is not a likelihood of the response.
    """
    if alpha is not None and alpha <= 0:
        raise ValueError("alpha must be > 0 (an unseen response would get probability 0)")
    keyed = train.dropna(subset=["trial"])
    counts = keyed.groupby([*_TRIAL, "choice"], observed=True).size()
    totals = keyed.groupby(_TRIAL, observed=True).size()
    own_counts = keyed.groupby([*_SESSION, *_TRIAL, "choice"], observed=True).size()
    own_totals = keyed.groupby([*_SESSION, *_TRIAL], observed=True).size()
    train_held = _held_out(keyed[[*RESPONSE_KEY, *_TRIAL[1:], "choice"]], counts, totals,
                           own_counts, own_totals)
    train_held = train_held[train_held["n_trial"] >= min_train]
    out = test[[*RESPONSE_KEY, "trial", "choice", "n_options"]].drop_duplicates(RESPONSE_KEY)
    out = _held_out(out, counts, totals, own_counts, own_totals)
    alphas = {str(study): alpha if alpha is not None else _best_alpha(rows)
              for study, rows in train_held.groupby("study", observed=True)}
    used = out["study"].astype(str).map(alphas).fillna(ALPHA_GRID[0]).to_numpy(float)
    out["nll"] = np.where(out["trial"].notna() & (out["n_trial"] >= min_train),
                          _smoothed_nll(out, used), np.nan)
    study_rows = []
    n_train = train.groupby("study", observed=True).size()
    for study, rows in out.groupby("study", observed=True):
        discrete = float(rows["trial"].notna().mean())
        covered = float(rows["nll"].notna().mean())
        aligned = covered >= min_share
        reason = "" if aligned else (
            "not a discrete-choice study" if discrete < min_share else
            f"not pooled: only {covered:.0%} of test responses meet a trial (stimulus and "
            f"option set) that ≥ {min_train} other participants' training responses share")
        study_rows.append({"study": study, "discrete": discrete, "covered": covered,
                           "aligned": aligned, "n_train": int(n_train.get(study, 0)),
                           "alpha": alphas.get(str(study), math.nan),
                           "in_sample": int((rows["in_sample"] & rows["nll"].notna()).sum()),
                           "reason": reason})
    studies = pd.DataFrame(study_rows, columns=["study", "discrete", "covered", "aligned",
                                                "n_train", "alpha", "in_sample", "reason"])
    out.loc[~out["study"].isin(studies.loc[studies["aligned"], "study"]), "nll"] = np.nan
    out = out[[*RESPONSE_KEY, "nll", "n_options"]].assign(model=POPULATION_MODEL)
    return PopulationBaseline(out.reset_index(drop=True), studies)


def against_population(frame: pd.DataFrame, baseline: PopulationBaseline, *,
                       condition: str) -> pd.DataFrame:
    """Per model and study: mean NLL of the model, of the baseline and of guessing (log k) on
    the covered responses."""
    covered = baseline.responses.dropna(subset=["nll"])[[*RESPONSE_KEY, "nll", "n_options"]]
    rows = select(frame, condition=condition).drop(columns=["n_options"], errors="ignore").merge(
        covered.rename(columns={"nll": "nll_population"}), on=RESPONSE_KEY)
    rows = rows.assign(nll_guessing=random_nll(rows["n_options"]))
    out = rows.groupby(["model", "study"], as_index=False, observed=True).agg(
        n_responses=("nll", "size"), nll=("nll", "mean"), nll_population=("nll_population",
                                                                          "mean"),
        nll_guessing=("nll_guessing", "mean"))
    return out
