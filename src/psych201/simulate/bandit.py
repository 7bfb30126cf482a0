"""Two-armed bandit with one reversal; choices from Q-learning with softmax choice.

Model (per participant): values start at ``Q = 0.5`` for both arms; after choosing arm ``c`` and
receiving reward ``r`` in {0, 1}, ``Q[c] += alpha * (r - Q[c])`` (the unchosen arm is left
alone); the choice on each trial is ``P(c) = softmax(beta * Q)[c]``.

Population: ``alpha ~ Beta(2, 3)`` (mean 0.4); ``log(beta) ~ Normal(log 5 - 0.01 * (age - 45),
0.4)``. The small age effect on the inverse temperature (older = noisier) is planted on purpose:
it gives persona conditions a real, known relation between demographics and behaviour.

Task: one arm pays 1 point with probability 0.75, the other with 0.25; which arm is better is
random per participant and reverses after half of the trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from psych201.simulate.core import (
    Demographics,
    SimulatedSession,
    rounded,
)
from psych201.simulate.play import (
    ChoicePoint,
    Outcome,
    TwoOptionTask,
    play_session,
    softmax_logprobs,
)

EXPERIMENT = "simulated two-armed bandit (Q-learning, softmax choice)"
DEFAULT_TRIALS = 30
P_GOOD, P_BAD = 0.75, 0.25
Q_INIT = 0.5

_INSTRUCTIONS = (
    "In this task, you will repeatedly choose between two slot machines, labelled {a} and {b}.\n"
    "Each time you choose a machine, it pays out 1 point or nothing. One machine pays out more "
    "often than the other, and this may change during the task.\n"
    "Your goal is to win as many points as possible.\n\n"
)


class BanditEnvironment(TwoOptionTask):
    """Two arms (0.75 vs 0.25 payout) that swap after half of the trials.

    The choice point's state is the index of the better arm on that trial.
    """

    template = _INSTRUCTIONS

    def __init__(self, rng: np.random.Generator, n_trials: int) -> None:
        super().__init__(rng, n_trials)
        self._good = int(rng.integers(2))  # arm that pays P_GOOD in the first half
        self._better = self._good

    def next_choice(self) -> ChoicePoint | None:
        if self._t >= self._n:
            return None
        self._better = self._good if self._t < self._n // 2 else 1 - self._good
        return ChoicePoint(f"Trial {self._t + 1}: You chose machine ", self.letters, self._better)

    def respond(self, choice: int) -> Outcome:
        p_reward = P_GOOD if choice == self._better else P_BAD
        reward = int(float(self._rng.random()) < p_reward)
        self._t += 1
        outcome = "won 1 point" if reward else "won nothing"
        return Outcome(f" and {outcome}.\n", float(reward))


class QLearner:
    """Q-learning over the offered options with softmax choice (``alpha``, ``beta``)."""

    def __init__(self, alpha: float, beta: float, n_options: int = 2, q_init: float = Q_INIT):
        self.alpha, self.beta = alpha, beta
        self.q = [q_init] * n_options

    @property
    def params(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta}

    def option_logprobs(self, point: ChoicePoint) -> Sequence[float]:
        return softmax_logprobs(self.q, self.beta)

    def observe(self, point: ChoicePoint, choice: int, outcome: Outcome) -> None:
        reward = 0.0 if outcome.reward is None else outcome.reward
        self.q[choice] += self.alpha * (reward - self.q[choice])


def draw_agent(rng: np.random.Generator, demographics: Demographics) -> QLearner:
    alpha = rounded(rng.beta(2.0, 3.0))
    beta = rounded(math.exp(rng.normal(math.log(5.0) - 0.01 * (demographics.age - 45), 0.4)))
    return QLearner(alpha, beta)


def simulate(
    rng: np.random.Generator, demographics: Demographics, n_trials: int
) -> SimulatedSession:
    agent = draw_agent(rng, demographics)
    return play_session(BanditEnvironment(rng, n_trials), agent, rng)
