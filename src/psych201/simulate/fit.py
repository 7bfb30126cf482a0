"""Maximum-likelihood fits of the cognitive models to choice sequences (any transcript's).

The likelihood is the agents' own (:class:`psych201.simulate.bandit.QLearner`: values start at
0.5, only the chosen option learns, softmax choice), written as a lean loop because fits call it
thousands of times; a test holds it to the agent's stored log-likelihoods. The reversal task's
learner (:class:`psych201.simulate.reversal.StickyQLearner`, plus a bonus ``kappa`` for
repeating the previous choice) is written across participants at once (:class:`ChoiceBatch`),
one numpy step per trial, so a pooled fit over hundreds of participants takes seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize
from scipy.special import log_expit

from psych201.simulate.bandit import Q_INIT

FloatArray = npt.NDArray[np.float64]
ALPHA_BOUNDS, BETA_BOUNDS = (1e-3, 1 - 1e-3), (1e-2, 50.0)
KAPPA_BOUNDS = (-5.0, 5.0)
_STARTS = ((0.3, 3.0), (0.7, 8.0), (0.1, 1.0))
_STICKY_STARTS = ((0.3, 3.0, 0.0), (0.7, 8.0, 0.5), (0.1, 1.0, -0.5))
Bounds = Sequence[tuple[float, float]]


def q_learning_logliks(alpha: float, beta: float, choices: FloatArray, rewards: FloatArray
                       ) -> FloatArray:
    """log P(each choice) of binary ``choices`` (0/1) under Q-learning with softmax.

    A missing reward (NaN) leaves the values as they are.
    """
    q0 = q1 = Q_INIT
    out = np.empty(len(choices))
    for t, (c, r) in enumerate(zip(choices.tolist(), rewards.tolist(), strict=True)):
        z = beta * (q0 - q1) if c == 0 else beta * (q1 - q0)
        out[t] = z - math.log1p(math.exp(z)) if z < 0 else -math.log1p(math.exp(-z))
        if r == r:  # not NaN
            if c == 0:
                q0 += alpha * (r - q0)
            else:
                q1 += alpha * (r - q1)
    return out


def q_learning_nll(params: Sequence[float], choices: FloatArray, rewards: FloatArray) -> float:
    """Negative log-likelihood of one sequence; ``params`` is ``(alpha, beta)``."""
    return -float(q_learning_logliks(float(params[0]), float(params[1]), choices,
                                     rewards).sum())


def fit_q_learning(choices: FloatArray, rewards: FloatArray) -> tuple[float, float]:
    """Maximum-likelihood ``(alpha, beta)`` of one participant (a few starts, best kept)."""
    return fit_q_learning_pooled([(choices, rewards)])


def fit_q_learning_pooled(sequences: Sequence[tuple[FloatArray, FloatArray]]
                          ) -> tuple[float, float]:
    """One ``(alpha, beta)`` for all ``sequences`` together (a population's shared fit)."""

    def nll(params: Sequence[float]) -> float:
        return sum(q_learning_nll(params, c, r) for c, r in sequences)

    alpha, beta = fit_pooled(nll, _STARTS, (ALPHA_BOUNDS, BETA_BOUNDS))
    return alpha, beta


def fit_pooled(nll: Callable[[Any], float], starts: Sequence[Sequence[float]],
               bounds: Bounds) -> tuple[float, ...]:
    """The parameters minimising ``nll`` (bounded L-BFGS-B from each start; the best kept)."""
    best_x: tuple[float, ...] = tuple(float(v) for v in starts[0])
    best_nll = math.inf
    for start in starts:
        res = optimize.minimize(nll, np.asarray(start, dtype=np.float64), method="L-BFGS-B",
                                bounds=bounds)
        if res.fun < best_nll:
            best_nll, best_x = float(res.fun), tuple(float(v) for v in res.x)
    return best_x


@dataclass(frozen=True)
class ChoiceBatch:
    """Participants' two-option choice sequences, padded to the longest (``mask`` marks the
    real trials). ``rewards`` is NaN where a trial reports none (values are left as they are)."""

    choices: FloatArray  # (participants, trials), 0 or 1
    rewards: FloatArray
    mask: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, sequences: Sequence[tuple[FloatArray, FloatArray]]) -> ChoiceBatch:
        n, length = len(sequences), max((len(c) for c, _ in sequences), default=0)
        choices, rewards = np.zeros((n, length)), np.full((n, length), np.nan)
        mask = np.zeros((n, length), dtype=bool)
        for i, (c, r) in enumerate(sequences):
            choices[i, : len(c)], rewards[i, : len(r)], mask[i, : len(c)] = c, r, True
        return cls(choices, rewards, mask)


def sticky_q_logits(alpha: float, beta: float, kappa: float, batch: ChoiceBatch) -> FloatArray:
    """The logit of each made choice against the other (``log P(choice) = log_expit(logit)``)
    under Q-learning with perseveration: ``softmax(beta * Q + kappa * [c == previous c])``.
    ``kappa = 0`` is plain Q-learning. Padding gets 0."""
    n, length = batch.choices.shape
    q = np.full((n, 2), Q_INIT)
    previous = np.zeros(n)  # +1: option 1 chosen last, -1: option 0, 0: no choice yet
    rows = np.arange(n)
    out = np.zeros((n, length))
    for t in range(length):
        real, chose_1 = batch.mask[:, t], batch.choices[:, t] == 1
        x = beta * (q[:, 1] - q[:, 0]) + kappa * previous  # the logit of option 1
        out[:, t] = np.where(real, np.where(chose_1, x, -x), 0.0)
        learn = real & np.isfinite(batch.rewards[:, t])
        c = batch.choices[learn, t].astype(int)
        q[rows[learn], c] += alpha * (batch.rewards[learn, t] - q[rows[learn], c])
        previous = np.where(real, np.where(chose_1, 1.0, -1.0), previous)
    return out


def fit_sticky_q_pooled(batch: ChoiceBatch, *, perseveration: bool = True
                        ) -> tuple[float, float, float]:
    """One ``(alpha, beta, kappa)`` for all participants of ``batch`` (pooled ML);
    ``perseveration=False`` holds ``kappa`` at 0 (plain Q-learning)."""

    def nll(params: FloatArray) -> float:
        kappa = float(params[2]) if perseveration else 0.0
        logits = sticky_q_logits(float(params[0]), float(params[1]), kappa, batch)
        return -float(log_expit(logits)[batch.mask].sum())

    if not perseveration:
        alpha, beta = fit_pooled(nll, _STARTS, (ALPHA_BOUNDS, BETA_BOUNDS))
        return alpha, beta, 0.0
    alpha, beta, kappa = fit_pooled(nll, _STICKY_STARTS,
                                    (ALPHA_BOUNDS, BETA_BOUNDS, KAPPA_BOUNDS))
    return alpha, beta, kappa
