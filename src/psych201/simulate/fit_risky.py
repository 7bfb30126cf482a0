"""Cumulative prospect theory with logit choice, fitted by pooled maximum likelihood.

The model is the risky-choice agent's (:class:`psych201.simulate.risky.ProspectTheoryAgent`):
value ``x**alpha`` for gains and ``-lam * (-x)**alpha`` for losses, the weighting function
``w(p) = p**gamma / (p**gamma + (1 - p)**gamma)**(1 / gamma)`` applied rank-dependently, and
``P(A) = sigmoid(theta * (V(A) - V(B)))``. It is written for lotteries with any number of
outcomes (Tversky & Kahneman 1992): a gain's decision weight is ``w(P(outcome >= x)) - w(P(outcome
> x))`` over the gains, a loss's the same over the losses from the worst up; for two outcomes
that is exactly the agent's rule. The ranks depend only on the lotteries, so they are computed
once (:class:`LotteryChoices`) and every likelihood evaluation of a fit is a few array
operations over all trials of all participants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import log_expit

from psych201.simulate.fit import fit_pooled

FloatArray = npt.NDArray[np.float64]
#: One lottery: its (outcome, probability) pairs.
Lottery = Sequence[tuple[float, float]]
CPT_PARAMS = ("alpha", "lambda", "gamma", "theta")
# gamma below ~0.28 makes w non-monotone; theta is fitted on a log scale (its size follows the
# outcomes' units, which differ by study).
ALPHA_BOUNDS, LAMBDA_BOUNDS, GAMMA_BOUNDS = (0.05, 2.0), (0.05, 10.0), (0.3, 2.0)
LOG_THETA_BOUNDS = (math.log(1e-5), math.log(50.0))


@dataclass(frozen=True)
class LotteryChoices:
    """Choices between two lotteries, padded to ``k`` outcomes each (padding has probability 0).

    ``upper``/``lower`` are each outcome's cumulative probabilities with and without it, counted
    from the best gain down (gains) or the worst loss up (losses); ``chosen`` is 0 or 1.
    """

    outcomes: FloatArray  # (trials, 2, k)
    upper: FloatArray
    lower: FloatArray
    chosen: FloatArray  # (trials,)

    @classmethod
    def of(cls, problems: Sequence[tuple[Lottery, Lottery]], chosen: Sequence[int]
           ) -> LotteryChoices:
        n, k = len(problems), max((len(lot) for pair in problems for lot in pair), default=1)
        x, p = np.zeros((n, 2, k)), np.zeros((n, 2, k))
        for i, pair in enumerate(problems):
            for j, lottery in enumerate(pair):
                for m, (value, prob) in enumerate(lottery):
                    x[i, j, m], p[i, j, m] = value, prob
        # outcome m is ranked before outcome l (same sign) when it is more extreme, ties by order
        xm, xl = x[..., :, None], x[..., None, :]
        first = np.tril(np.ones((k, k), dtype=bool))  # l <= m
        gain_before = (xl > 0) & ((xl > xm) | ((xl == xm) & first))
        loss_before = (xl < 0) & ((xl < xm) | ((xl == xm) & first))
        before = np.where(xm > 0, gain_before, np.where(xm < 0, loss_before, False))
        upper = np.clip(np.sum(before * p[..., None, :], axis=-1), 0.0, 1.0)
        lower = np.clip(upper - p, 0.0, 1.0)
        return cls(x, upper, lower, np.asarray(chosen, dtype=np.float64))


def weight(p: FloatArray, gamma: float) -> FloatArray:
    """The Tversky-Kahneman probability weighting function."""
    pg = p**gamma
    weighted: FloatArray = pg / (pg + (1.0 - p) ** gamma) ** (1.0 / gamma)
    return weighted


def cpt_logits(alpha: float, lam: float, gamma: float, theta: float, data: LotteryChoices
               ) -> FloatArray:
    """The logit of each chosen lottery against the other under CPT with logit choice."""
    x = data.outcomes
    magnitude = np.abs(x) ** alpha
    value = np.where(x >= 0, magnitude, -lam * magnitude)
    decision = weight(data.upper, gamma) - weight(data.lower, gamma)
    utility = np.sum(decision * value, axis=-1)  # (trials, 2)
    a_over_b = theta * (utility[:, 0] - utility[:, 1])
    logits: FloatArray = np.where(data.chosen == 0, a_over_b, -a_over_b)
    return logits


def fit_cpt_pooled(data: LotteryChoices) -> tuple[float, float, float, float]:
    """One ``(alpha, lambda, gamma, theta)`` for all choices of ``data`` (pooled ML, from a
    few starts whose ``theta`` suits the size of the study's outcomes)."""
    size = float(np.mean(np.abs(data.outcomes[data.outcomes != 0]))) if data.outcomes.any() else 1.0

    def nll(params: FloatArray) -> float:
        logits = cpt_logits(float(params[0]), float(params[1]), float(params[2]),
                            math.exp(float(params[3])), data)
        return -float(log_expit(logits).sum())

    starts = [(a, lam, g, math.log(scale / size**a))
              for a, lam, g, scale in ((0.8, 1.5, 0.7, 1.0), (1.0, 1.0, 1.0, 0.3),
                                       (0.5, 2.5, 0.5, 3.0))]
    alpha, lam, gamma, log_theta = fit_pooled(
        nll, starts, (ALPHA_BOUNDS, LAMBDA_BOUNDS, GAMMA_BOUNDS, LOG_THETA_BOUNDS))
    return alpha, lam, gamma, math.exp(log_theta)
