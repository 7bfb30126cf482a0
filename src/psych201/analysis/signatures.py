"""Behavioural signatures, computed the same way from any transcript of a task.

The input is the choice table :mod:`psych201.data.choices` reads back from transcripts —
simulated, played by a language model, or written by people — so a signature means the same
thing for each. Every signature is first computed per participant; the group's value is the
mean over participants, with a bootstrap interval over participants, and the *spread* (the
standard deviation across participants) says whether 100 model "participants" differ like 100
people or collapse onto one behaviour.

Two-option tasks with feedback (bandits, reversal, probability learning):
``win_stay`` P(repeat | rewarded), ``lose_shift`` P(switch | unrewarded), ``reward_effect``
P(repeat | rewarded) - P(repeat | unrewarded) (0: choices ignore outcomes), ``switch_rate``,
``perseveration`` (mean length of runs of the same choice), ``reward_rate``, the learning curve
(reward rate by tenth of the session: the better option itself is not in human transcripts),
and Q-learning ``alpha`` (learning rate) and ``beta`` (inverse temperature) fitted per
participant by maximum likelihood.

Two-step task: P(repeat the first-stage choice) by previous reward × transition, and the
model-free index (main effect of reward) and model-based index (reward × transition
interaction) per participant.

Risky choice between described lotteries: P(choosing the riskier lottery) by expected-value
difference (the choice curve), and loss aversion ``lambda`` with choice sensitivity fitted per
participant (expected value with losses weighted by ``lambda``, logit choice).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize, stats
from scipy.special import log_expit

from psych201.data.choices import twostep_labels
from psych201.simulate.fit import fit_q_learning, q_learning_nll

FloatArray = npt.NDArray[np.float64]

#: Per-participant signatures of two-option tasks with feedback, in report order.
BANDIT_SIGNATURES: tuple[str, ...] = (
    "win_stay", "lose_shift", "reward_effect", "switch_rate", "perseveration", "reward_rate",
    "alpha", "beta",
)
TWOSTEP_SIGNATURES: tuple[str, ...] = ("stay_rewarded_common", "stay_rewarded_rare",
                                       "stay_unrewarded_common", "stay_unrewarded_rare",
                                       "mf_index", "mb_index")
RISKY_SIGNATURES: tuple[str, ...] = ("risky_share", "loss_aversion", "sensitivity")
LEARNING_BINS = 10


# --------------------------------------------------------------------------------------------
# Two-option tasks with feedback


def _runs(choices: FloatArray) -> float:
    changes = np.flatnonzero(np.diff(choices) != 0)
    return float(len(choices) / (len(changes) + 1))


def bandit_participant(choices: FloatArray, rewards: FloatArray, *, fit: bool = True
                       ) -> dict[str, float]:
    """The two-option signatures of one participant (choices 0/1 in order, rewards 0/1/NaN)."""
    stay = choices[1:] == choices[:-1]
    prev = rewards[:-1]
    won, lost = prev == 1, prev == 0
    out = {
        "win_stay": float(stay[won].mean()) if won.any() else math.nan,
        "lose_shift": float((~stay[lost]).mean()) if lost.any() else math.nan,
        "switch_rate": float((~stay).mean()) if stay.size else math.nan,
        # P(stay | win) - P(stay | loss): 0 when choices ignore outcomes
        "reward_effect": (float(stay[won].mean()) - float(stay[lost].mean())
                          if won.any() and lost.any() else math.nan),
        "perseveration": _runs(choices),
        "reward_rate": float(np.nanmean(rewards)) if np.isfinite(rewards).any() else math.nan,
    }
    if fit:
        # without an outcome the likelihood is flat in alpha: the fit would return its start
        out["alpha"], out["beta"] = (fit_q_learning(choices, rewards)
                                     if np.isfinite(rewards).any() else (math.nan, math.nan))
    return out


def _binary(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of two-option choices, with the choice as 0/1 (the options in sorted order)."""
    two = table[table["options"].map(len) == 2].copy()
    two["choice_index"] = [list(o).index(c) for o, c in zip(two["options"], two["choice"],
                                                             strict=True)]
    return two.sort_values(["participant", "response_index"], kind="stable")


def bandit_signatures(table: pd.DataFrame, *, fit: bool = True) -> pd.DataFrame:
    """One row per participant of a two-option task with feedback (:data:`BANDIT_SIGNATURES`)."""
    rows = []
    for participant, rows_of in _binary(table).groupby("participant", sort=False):
        choices = rows_of["choice_index"].to_numpy(dtype=np.float64)
        rewards = rows_of["reward"].to_numpy(dtype=np.float64)
        if len(choices) < 2:
            continue
        rows.append({"participant": participant, **bandit_participant(choices, rewards, fit=fit)})
    return pd.DataFrame(rows, columns=["participant", *(
        BANDIT_SIGNATURES if fit else BANDIT_SIGNATURES[:-2])])


def learning_curve(table: pd.DataFrame, bins: int = LEARNING_BINS) -> pd.DataFrame:
    """Reward rate by tenth of each participant's session: per participant and bin."""
    frame = _binary(table)
    position = frame.groupby("participant").cumcount()
    size = frame.groupby("participant")["choice"].transform("size")
    frame = frame.assign(bin=(position * bins // size).astype(int))
    curve = frame.groupby(["participant", "bin"])["reward"].mean().rename("reward_rate")
    return curve.reset_index()


# --------------------------------------------------------------------------------------------
# Two-step task

def twostep_trials(text: str, choices: Sequence[str], rewards: Sequence[float]) -> pd.DataFrame:
    """First-stage choice, transition (common or rare) and reward per trial of one two-step
    transcript (``choices``/``rewards`` from the choice table, two responses per trial).

    Ship ``k`` (in the order the instructions name them) goes commonly to planet ``k``; the
    planet reached is the one whose alien was asked.
    """
    labels = twostep_labels(text)
    if labels is None:
        raise ValueError("not a two-step transcript: no spaceships and aliens named")
    ship_of = {ship: k for k, ship in enumerate(labels.ships)}
    planet_of = {alien: k for k, pair in enumerate(labels.aliens) for alien in pair}
    rows = []
    for t in range(len(choices) // 2):
        ship, alien = ship_of[choices[2 * t]], planet_of[choices[2 * t + 1]]
        rows.append({"ship": ship, "common": ship == alien, "reward": rewards[2 * t + 1]})
    return pd.DataFrame(rows, columns=["ship", "common", "reward"])


def twostep_participant(trials: pd.DataFrame) -> dict[str, float]:
    """Stay probabilities by previous reward × transition, and the model-free (reward main
    effect) and model-based (reward × transition interaction) indices of one participant."""
    stay = (trials["ship"].to_numpy()[1:] == trials["ship"].to_numpy()[:-1])
    rew = trials["reward"].to_numpy()[:-1] == 1
    common = trials["common"].to_numpy()[:-1].astype(bool)
    cell = {}
    for r_name, r in (("rewarded", True), ("unrewarded", False)):
        for c_name, c in (("common", True), ("rare", False)):
            mask = (rew == r) & (common == c)
            cell[f"stay_{r_name}_{c_name}"] = float(stay[mask].mean()) if mask.any() else math.nan
    rc, rr = cell["stay_rewarded_common"], cell["stay_rewarded_rare"]
    uc, ur = cell["stay_unrewarded_common"], cell["stay_unrewarded_rare"]
    return {**cell, "mf_index": (rc + rr - uc - ur) / 2, "mb_index": (rc - rr - uc + ur) / 2}


# --------------------------------------------------------------------------------------------
# Risky choice between described lotteries


def _lottery_moments(pairs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    values = np.array([v for v, _ in pairs])
    probs = np.array([p for _, p in pairs])
    ev = float(values @ probs)
    return ev, float(np.sqrt(max(0.0, (values - ev) ** 2 @ probs)))


def risky_trials(table: pd.DataFrame) -> pd.DataFrame:
    """Per two-lottery choice: whether the riskier lottery (larger outcome SD) was chosen, the
    EV difference (riskier minus safer), and each lottery's gains and losses for the fits."""
    rows = []
    for rec in table.itertuples(index=False):
        lots = rec.lotteries
        if not isinstance(lots, dict) or len(lots) != 2 or len(rec.options) != 2:
            continue
        a, b = rec.options
        (ev_a, sd_a), (ev_b, sd_b) = _lottery_moments(lots[a]), _lottery_moments(lots[b])
        if sd_a == sd_b:
            continue
        risky, safe, ev_r, ev_s = (a, b, ev_a, ev_b) if sd_a > sd_b else (b, a, ev_b, ev_a)
        gain_r = sum(p * v for v, p in lots[risky] if v > 0)
        loss_r = sum(p * v for v, p in lots[risky] if v < 0)
        gain_s = sum(p * v for v, p in lots[safe] if v > 0)
        loss_s = sum(p * v for v, p in lots[safe] if v < 0)
        rows.append({"participant": rec.participant, "chose_risky": rec.choice == risky,
                     "ev_diff": ev_r - ev_s, "gain_diff": gain_r - gain_s,
                     "loss_diff": loss_r - loss_s})
    return pd.DataFrame(rows, columns=["participant", "chose_risky", "ev_diff", "gain_diff",
                                       "loss_diff"])


def fit_loss_aversion(trials: pd.DataFrame) -> tuple[float, float]:
    """ML ``(lambda, sensitivity)``: P(risky) = sigmoid(s * (gain diff + lambda * loss diff)),
    the outcomes scaled by their spread so one sensitivity bound suits every study."""
    chose = trials["chose_risky"].to_numpy(dtype=bool)
    scale = float(np.std(trials["ev_diff"])) or 1.0
    gains = trials["gain_diff"].to_numpy(dtype=np.float64) / scale
    losses = trials["loss_diff"].to_numpy(dtype=np.float64) / scale

    def nll(p: FloatArray) -> float:
        x = p[1] * (gains + p[0] * losses)
        return -float(np.sum(np.where(chose, log_expit(x), log_expit(-x))))

    res = optimize.minimize(nll, np.array([1.0, 1.0]), method="L-BFGS-B",
                            bounds=((0.1, 10.0), (1e-3, 50.0)))
    return float(res.x[0]), float(res.x[1])


def risky_signatures(table: pd.DataFrame) -> pd.DataFrame:
    """Per participant: share of risky choices, fitted loss aversion and sensitivity."""
    trials = risky_trials(table)
    rows = []
    for participant, own in trials.groupby("participant", sort=False):
        lam, sens = fit_loss_aversion(own) if len(own) >= 5 else (math.nan, math.nan)
        rows.append({"participant": participant, "risky_share": float(own["chose_risky"].mean()),
                     "loss_aversion": lam, "sensitivity": sens})
    return pd.DataFrame(rows, columns=["participant", *RISKY_SIGNATURES])


def choice_curve(table: pd.DataFrame, edges: Sequence[float] = (-np.inf, -20, -5, 5, 20, np.inf)
                 ) -> pd.DataFrame:
    """P(choosing the riskier lottery) by EV difference bin, per participant."""
    trials = risky_trials(table)
    trials["ev_bin"] = pd.cut(trials["ev_diff"], list(edges)).astype(str)
    curve = trials.groupby(["participant", "ev_bin"])["chose_risky"].mean()
    return curve.rename("risky_share").reset_index()


# --------------------------------------------------------------------------------------------
# Groups: means with bootstrap intervals, spread, distances


@dataclass(frozen=True)
class GroupSignature:
    """One signature of one group (people, a cognitive model, a language model)."""

    group: str
    signature: str
    n: int
    mean: float
    low: float
    high: float
    spread: float


def summarise(group: str, per_participant: pd.DataFrame, signatures: Sequence[str], *,
              ci: float = 0.95, seed: int = 0, n_resamples: int = 2000) -> list[GroupSignature]:
    """Mean (percentile bootstrap interval over participants) and SD of each signature."""
    out = []
    for name in signatures:
        values = per_participant[name].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            out.append(GroupSignature(group, name, 0, math.nan, math.nan, math.nan, math.nan))
            continue
        if values.size > 1 and np.ptp(values) > 0:
            res = stats.bootstrap((values,), np.mean, confidence_level=ci, n_resamples=n_resamples,
                                  method="percentile", rng=np.random.default_rng(seed))
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        else:
            low = high = float(values.mean())
        spread = float(values.std(ddof=1)) if values.size > 1 else math.nan
        out.append(GroupSignature(group, name, int(values.size), float(values.mean()), low, high,
                                  spread))
    return out


def distance(a: pd.DataFrame, b: pd.DataFrame, signature: str,
             scale: Callable[[FloatArray], FloatArray] | None = None) -> float:
    """Wasserstein-1 distance between two groups' per-participant values of ``signature``
    (``scale``, e.g. ``np.log`` for an inverse temperature, applied first)."""
    x = a[signature].to_numpy(dtype=np.float64)
    y = b[signature].to_numpy(dtype=np.float64)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if not x.size or not y.size:
        return math.nan
    if scale is not None:
        x, y = scale(x), scale(y)
    return float(stats.wasserstein_distance(x, y))


__all__ = [
    "BANDIT_SIGNATURES",
    "RISKY_SIGNATURES",
    "TWOSTEP_SIGNATURES",
    "GroupSignature",
    "bandit_participant",
    "bandit_signatures",
    "choice_curve",
    "distance",
    "fit_loss_aversion",
    "fit_q_learning",
    "learning_curve",
    "q_learning_nll",
    "risky_signatures",
    "risky_trials",
    "summarise",
    "twostep_participant",
    "twostep_trials",
]
