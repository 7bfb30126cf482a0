"""The model's distribution over the options a transcript offered, and what it identifies.

Where the engines record ``offered_options`` and ``offered_logprobs`` (one-token options), the
model's whole-vocabulary probabilities of the offered options are known. Renormalised over the
offered set they are the model's *choice* distribution ``q``; the mass they leave out is
probability on tokens that are not options at all. Over that set, over-confidence is
identifiable (whole-vocabulary NLL against entropy is not: any misfit raises it):

* **calibration slope** β: the maximum-likelihood exponent of ``q^β`` renormalised (a conditional
  logit on log q without intercept). β = 1: calibrated; 0 < β < 1: over-confident (a temperature
  1/β > 1 would fix it); β > 1: under-confident; β ≤ 0: the model's favourite is not people's
  (a different failure, which no temperature fixes).
* **expected vs observed accuracy**: the mean of max q (how often the model expects its favourite
  to be chosen) against how often it is; expected above observed is over-confidence in the
  model's own terms.

The slope's interval is a Wald interval with a participant-clustered sandwich variance; the
accuracy gap's resamples participants within the study (:func:`participant_weights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from psych201.analysis import bootstrap as bs
from psych201.analysis.calibration_fit import participant_weights
from psych201.results.schema import RESPONSE_KEY

#: β is searched in [−MAX_SLOPE, MAX_SLOPE] (a perfectly separating favourite has no finite MLE).
MAX_SLOPE = 20.0
_MAX_STEPS = 60


@dataclass(frozen=True, eq=False)
class OfferedChoices:
    """Responses of one model whose offered options and choice are known, as arrays."""

    rows: pd.DataFrame  # RESPONSE_KEY, model; one row per response kept
    log_q: np.ndarray  # (R, K) log q renormalised over the offered set, −inf padding
    chosen: np.ndarray  # (R,) column of the human's choice
    mass: np.ndarray  # (R,) whole-vocabulary probability on the offered options

    @property
    def q(self) -> np.ndarray:
        q: np.ndarray = np.exp(self.log_q)
        return q

    def entropy(self) -> np.ndarray:
        """The model's predictive entropy over the offered options (nats), per response."""
        q = self.q
        entropy: np.ndarray = -(q * np.where(q > 0, self.log_q, 0.0)).sum(axis=1)
        return entropy


def offered_choices(rows: pd.DataFrame) -> OfferedChoices:
    """The responses of ``rows`` with usable ``offered_options``/``offered_logprobs`` whose
    response (stripped) is one of the options."""
    width = 2
    kept, logs, chosen, mass = [], [], [], []
    columns = [c for c in ("offered_options", "offered_logprobs", "response_text")
               if c in rows.columns]
    if len(columns) < 3:
        return OfferedChoices(rows.iloc[:0], np.empty((0, 2)), np.empty(0, np.intp),
                              np.empty(0))
    for i, (options, logprobs, text) in enumerate(zip(
            rows["offered_options"], rows["offered_logprobs"], rows["response_text"],
            strict=True)):
        if options is None or logprobs is None or not isinstance(text, str):
            continue
        names = [str(o) for o in options]
        lp = np.asarray(logprobs, dtype=float)
        if len(names) < 2 or len(lp) != len(names) or np.isnan(lp).any() \
                or not np.isfinite(lp.max()) or text.strip() not in names:
            continue
        top = lp.max()
        total = top + np.log(np.exp(lp - top).sum())
        kept.append(i)
        logs.append(lp - total)
        chosen.append(names.index(text.strip()))
        mass.append(float(np.exp(total)))
        width = max(width, len(names))
    log_q = np.full((len(logs), width), -np.inf)
    for r, lp in enumerate(logs):
        log_q[r, : len(lp)] = lp
    return OfferedChoices(rows.iloc[kept][["model", *RESPONSE_KEY]].reset_index(drop=True),
                          log_q, np.asarray(chosen, dtype=np.intp), np.asarray(mass))


def fit_slopes(log_q: np.ndarray, chosen: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row of ``weights`` (B × R), the MLE of β in p ∝ q^β (module notes), clipped to
    ±:data:`MAX_SLOPE`: the root of the score, which falls monotonically in β (the
    log-likelihood is concave), by Newton steps kept inside a shrinking bracket (plain Newton
    overshoots on sharp models; a step leaving the bracket is replaced by bisection)."""
    x = np.where(np.isfinite(log_q), log_q, 0.0)
    valid = np.isfinite(log_q)
    x_chosen = x[np.arange(len(x)), chosen]
    low = np.full(len(weights), -MAX_SLOPE)
    high = np.full(len(weights), MAX_SLOPE)
    beta = np.ones(len(weights))
    for _ in range(_MAX_STEPS):
        z = np.where(valid[None], beta[:, None, None] * x[None], -np.inf)  # (B, R, K)
        z -= z.max(axis=2, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=2, keepdims=True)
        mean = (p * x[None]).sum(axis=2)
        var = (p * x[None] ** 2).sum(axis=2) - mean**2
        score = (weights * (x_chosen[None] - mean)).sum(axis=1)
        info = (weights * var).sum(axis=1)
        low = np.where(score > 0, beta, low)
        high = np.where(score > 0, high, beta)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = beta + score / info
        inside = np.isfinite(newton) & (newton > low) & (newton < high)
        step = np.where(inside, newton, 0.5 * (low + high)) - beta
        beta = beta + step
        if np.abs(step).max(initial=0.0) < 1e-9 or (high - low).max(initial=0.0) < 1e-9:
            break
    return np.clip(beta, -MAX_SLOPE, MAX_SLOPE)


#: The verdict where β's interval lies below 1 but reaches 0.
UNINFORMATIVE = "uninformative (β's interval reaches 0)"


@dataclass(frozen=True)
class Overconfidence:
    """Over-confidence over the offered options of one (model, study), with intervals."""

    n_participants: int
    n_responses: int
    offered_mass: float
    slope: float
    slope_ci: tuple[float, float]
    expected_accuracy: float
    observed_accuracy: float
    accuracy_gap: float  # expected − observed
    gap_ci: tuple[float, float]

    @property
    def verdict(self) -> str:
        low, high = self.slope_ci
        if not np.isfinite(low):
            return "too few participants for an interval"
        if high <= 0:
            return "wrong favourite (β ≤ 0: not a temperature)"
        if high < 1:
            # β's interval reaching 0 cannot tell a too-sharp model from one whose preferences
            # carry no information about people's choices at all.
            return "over-confident" if low > 0 else UNINFORMATIVE
        if low > 1:
            return "under-confident"
        return "calibrated within its interval"


def slope_interval(log_q: np.ndarray, chosen: np.ndarray, participant: np.ndarray,
                   beta: float, ci: float = 0.95) -> tuple[float, float]:
    """Wald interval of β with a participant-clustered sandwich variance and t(P − 1) quantiles
    (responses of one person are not independent; a bootstrap that refits β per replicate costs
    B × responses × options and says the same at these sample sizes)."""
    n = int(participant.max()) + 1 if participant.size else 0
    if n < 2 or not abs(beta) < MAX_SLOPE:
        return float("nan"), float("nan")
    x = np.where(np.isfinite(log_q), log_q, 0.0)
    z = np.where(np.isfinite(log_q), beta * x, -np.inf)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    mean = (p * x).sum(axis=1)
    info = float(((p * x**2).sum(axis=1) - mean**2).sum())
    score = np.bincount(participant, weights=x[np.arange(len(x)), chosen] - mean, minlength=n)
    if info <= 0:
        return float("nan"), float("nan")
    se = math.sqrt(n / (n - 1) * float((score**2).sum())) / info
    half = float(sps.t.ppf(0.5 + ci / 2, n - 1)) * se
    return beta - half, beta + half


def overconfidence(choices: OfferedChoices, *, n_boot: int = 2000, ci: float = 0.95,
                   seed: int = 0, salt: str = "") -> Overconfidence:
    """Calibration slope (clustered Wald interval) and expected vs observed accuracy
    (participant-bootstrap interval) of one (model, study)'s choices."""
    pid = (choices.rows["experiment"].astype(str) + "\x1f"
           + choices.rows["participant"].astype(str))
    codes, uniques = pd.factorize(pid, sort=True)
    q = choices.q
    expected = q.max(axis=1)
    hit = (np.argmax(q, axis=1) == choices.chosen).astype(float)
    slope = float(fit_slopes(choices.log_q, choices.chosen, np.ones((1, len(codes))))[0])
    weights = participant_weights(len(uniques), n_boot, seed=seed, salt=salt)
    per_person = np.bincount(codes, weights=expected - hit, minlength=len(uniques))
    counts = np.bincount(codes, minlength=len(uniques)).astype(float)
    gaps = (weights @ per_person) / (weights @ counts)
    n, df = len(uniques), len(uniques) - 1
    return Overconfidence(
        n_participants=n, n_responses=len(codes), offered_mass=float(choices.mass.mean()),
        slope=slope, slope_ci=slope_interval(choices.log_q, choices.chosen, np.asarray(codes),
                                             slope, ci),
        expected_accuracy=float(expected.mean()), observed_accuracy=float(hit.mean()),
        accuracy_gap=float((expected - hit).mean()), gap_ci=bs.interval(gaps, ci, n, df))
