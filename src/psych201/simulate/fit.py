"""Maximum-likelihood fits of the cognitive models to choice sequences (any transcript's).

The likelihood is the agents' own (:class:`psych201.simulate.bandit.QLearner`: values start at
0.5, only the chosen option learns, softmax choice), written as a lean loop because fits call it
thousands of times; a test holds it to the agent's stored log-likelihoods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import optimize

from psych201.simulate.bandit import Q_INIT

FloatArray = npt.NDArray[np.float64]
ALPHA_BOUNDS, BETA_BOUNDS = (1e-3, 1 - 1e-3), (1e-2, 50.0)
_STARTS = ((0.3, 3.0), (0.7, 8.0), (0.1, 1.0))


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

    best, best_nll = _STARTS[0], math.inf
    for start in _STARTS:
        res = optimize.minimize(nll, start, method="L-BFGS-B", bounds=(ALPHA_BOUNDS, BETA_BOUNDS))
        if res.fun < best_nll:
            best_nll, best = float(res.fun), (float(res.x[0]), float(res.x[1]))
    return best
