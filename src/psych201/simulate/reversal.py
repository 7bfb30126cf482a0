"""Probability learning with reversals; choices from Q-learning with choice perseveration.

Task: two options; one is correct with probability 0.8 on each trial (the other 0.2), and which
one is better reverses every ``BLOCK`` trials (first one random per participant). Feedback says
whether the choice was correct (1 point) or not.

Model (per participant): ``Q`` starts at 0.5; the chosen option's value moves toward the reward,
``Q[c] += alpha * (r - Q[c])``; the choice is ``softmax(beta * Q + kappa * [c == previous c])``
(``kappa > 0``: a tendency to repeat, whatever the outcome).

Population: ``alpha ~ Beta(3, 4)``, ``log(beta) ~ Normal(log 6, 0.4)``, ``kappa ~ Normal(0.5,
0.4)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from psych201.simulate.bandit import QLearner
from psych201.simulate.core import Demographics, SimulatedSession, rounded
from psych201.simulate.play import (
    ChoicePoint,
    Outcome,
    TwoOptionTask,
    play_session,
    softmax_logprobs,
)

EXPERIMENT = "simulated probability learning with reversals (Q-learning, perseveration)"
DEFAULT_TRIALS = 80
P_CORRECT = 0.8
BLOCK = 20

_INSTRUCTIONS = (
    "In this task, you will repeatedly choose one of two cards, {a} or {b}.\n"
    "After each choice you learn whether it was correct. One card is correct more often than "
    "the other, but which one can change from time to time.\n"
    "Try to make as many correct choices as possible.\n\n"
)


class ReversalEnvironment(TwoOptionTask):
    """Two options; the better one (P_CORRECT) swaps every BLOCK trials. State: better index."""

    template = _INSTRUCTIONS

    def __init__(self, rng: np.random.Generator, n_trials: int) -> None:
        super().__init__(rng, n_trials)
        self._first = int(rng.integers(2))
        self._better = self._first

    def next_choice(self) -> ChoicePoint | None:
        if self._t >= self._n:
            return None
        self._better = self._first if (self._t // BLOCK) % 2 == 0 else 1 - self._first
        return ChoicePoint(f"Trial {self._t + 1}: You choose card ", self.letters, self._better)

    def respond(self, choice: int) -> Outcome:
        p = P_CORRECT if choice == self._better else 1 - P_CORRECT
        reward = int(float(self._rng.random()) < p)
        self._t += 1
        return Outcome(" and it is correct (1 point).\n" if reward else " and it is wrong.\n",
                       float(reward))


class StickyQLearner(QLearner):
    """:class:`QLearner` plus a bonus ``kappa`` for repeating the previous choice."""

    def __init__(self, alpha: float, beta: float, kappa: float) -> None:
        super().__init__(alpha, beta)
        self.kappa = kappa
        self._last: int | None = None

    @property
    def params(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "kappa": self.kappa}

    def option_logprobs(self, point: ChoicePoint) -> Sequence[float]:
        bonus = [self.kappa / self.beta if i == self._last else 0.0 for i in range(len(self.q))]
        return softmax_logprobs([q + b for q, b in zip(self.q, bonus, strict=True)], self.beta)

    def observe(self, point: ChoicePoint, choice: int, outcome: Outcome) -> None:
        super().observe(point, choice, outcome)
        self._last = choice


def draw_agent(rng: np.random.Generator, demographics: Demographics) -> StickyQLearner:
    del demographics
    return StickyQLearner(
        alpha=rounded(rng.beta(3.0, 4.0)),
        beta=rounded(math.exp(rng.normal(math.log(6.0), 0.4))),
        kappa=rounded(rng.normal(0.5, 0.4)),
    )


def simulate(
    rng: np.random.Generator, demographics: Demographics, n_trials: int
) -> SimulatedSession:
    agent = draw_agent(rng, demographics)
    return play_session(ReversalEnvironment(rng, n_trials), agent, rng)
