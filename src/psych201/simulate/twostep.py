"""Two-step task (Daw et al. 2011); choices from a hybrid model-based / model-free learner.

Task: on each trial a first-stage choice between two spaceships leads to one of two planets,
each spaceship to "its" planet with probability 0.7 (a common transition) and to the other with
0.3 (rare). On the planet a second-stage choice between two aliens pays 1 coin with a
probability that drifts independently per alien (Gaussian random walk, sd 0.025, reflected
into [0.25, 0.75]). Two responses per trial, each between two letters.

Model (per participant; Daw et al. 2011 with eligibility ``lambda = 1`` and one inverse
temperature for both stages): second-stage values ``Q2[s, b] += alpha * (r - Q2[s, b])``;
model-free first-stage values ``Q1[a] += alpha * (r - Q1[a])`` (with ``lambda = 1`` the reward
reaches the first stage directly); model-based values ``Q_MB[a] = 0.7 max Q2[common(a)] + 0.3
max Q2[rare(a)]``; the first-stage choice is ``softmax(beta * (w Q_MB + (1 - w) Q1) + pers *
[a == previous a])``, the second ``softmax(beta * Q2[s])``.

Population: ``alpha ~ Beta(3, 3)``, ``log(beta) ~ Normal(log 4, 0.3)``, ``w ~ Beta(2, 2)``,
``pers ~ Normal(0.3, 0.2)``. The signature: a model-free learner repeats a rewarded first
choice whatever the transition (a main effect of reward on staying); a model-based one repeats
it after a rewarded common or an unrewarded rare transition (a reward × transition interaction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from psych201.simulate.core import Demographics, SimulatedSession, option_letters, rounded
from psych201.simulate.play import ChoicePoint, Outcome, play_session, softmax_logprobs

EXPERIMENT = "simulated two-step task (hybrid model-based/model-free learning)"
DEFAULT_TRIALS = 60
P_COMMON = 0.7
DRIFT_SD, P_MIN, P_MAX = 0.025, 0.25, 0.75
PLANETS = ("red", "blue")

_INSTRUCTIONS = (
    "In this task, you travel to two planets to trade with aliens for space treasure.\n"
    "On each trial you first choose a spaceship, {a} or {b}. Each spaceship usually flies to one "
    "planet and sometimes to the other.\n"
    "On the red planet you can ask alien {c} or {d}, on the blue planet alien {e} or {f}. Each "
    "alien gives treasure (1 coin) with a chance that changes slowly over time.\n"
    "Your goal is to win as many coins as possible.\n\n"
)


class TwoStepEnvironment:
    """One participant's two-step task; choice-point state is ``(stage, planet or None)``.

    Spaceship ``a`` goes commonly to planet ``a``. Outcomes of the first stage carry no reward
    (``None``); the second stage's carry the coin (0 or 1).
    """

    def __init__(self, rng: np.random.Generator, n_trials: int) -> None:
        self._rng = rng
        letters = option_letters(rng, 6)
        self.ships = letters[:2]
        self.aliens = (letters[2:4], letters[4:6])
        self.p_reward = [[float(p) for p in rng.uniform(P_MIN, P_MAX, size=2)] for _ in range(2)]
        self._n, self._t = n_trials, 0
        self._stage, self._planet = 1, 0

    @property
    def instructions(self) -> str:
        (c, d), (e, f) = self.aliens
        return _INSTRUCTIONS.format(a=self.ships[0], b=self.ships[1], c=c, d=d, e=e, f=f)

    def next_choice(self) -> ChoicePoint | None:
        if self._t >= self._n:
            return None
        if self._stage == 1:
            return ChoicePoint(f"Trial {self._t + 1}: You board spaceship ", self.ships, (1, None))
        name = PLANETS[self._planet]
        return ChoicePoint(f"On the {name} planet you ask alien ", self.aliens[self._planet],
                           (2, self._planet))

    def respond(self, choice: int) -> Outcome:
        if self._stage == 1:
            common = float(self._rng.random()) < P_COMMON
            self._planet = choice if common else 1 - choice
            self._stage = 2
            return Outcome(f" and fly to the {PLANETS[self._planet]} planet. ")
        reward = int(float(self._rng.random()) < self.p_reward[self._planet][choice])
        self._drift()
        self._stage, self._t = 1, self._t + 1
        return Outcome(" and get 1 coin.\n" if reward else " and get nothing.\n", float(reward))

    def _drift(self) -> None:
        for planet in self.p_reward:
            for b in range(2):
                p = planet[b] + DRIFT_SD * float(self._rng.standard_normal())
                # reflect at the bounds (a step never crosses more than one of them)
                p = 2 * P_MAX - p if p > P_MAX else (2 * P_MIN - p if p < P_MIN else p)
                planet[b] = p


class HybridAgent:
    """Daw et al.'s hybrid learner: ``w`` weighs model-based against model-free values."""

    def __init__(self, alpha: float, beta: float, w: float, pers: float) -> None:
        self.alpha, self.beta, self.w, self.pers = alpha, beta, w, pers
        self.q1 = [0.5, 0.5]
        self.q2 = [[0.5, 0.5], [0.5, 0.5]]
        self._last_ship: int | None = None
        self._ship = 0

    @property
    def params(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "w": self.w, "pers": self.pers}

    def option_logprobs(self, point: ChoicePoint) -> Sequence[float]:
        stage, planet = point.state
        if stage == 2:
            return softmax_logprobs(self.q2[planet], self.beta)
        mb = [P_COMMON * max(self.q2[a]) + (1 - P_COMMON) * max(self.q2[1 - a]) for a in (0, 1)]
        net = [self.w * mb[a] + (1 - self.w) * self.q1[a] for a in (0, 1)]
        sticky = [self.pers if a == self._last_ship else 0.0 for a in (0, 1)]
        # softmax(beta * net + sticky) = softmax over (net + sticky / beta) at beta
        return softmax_logprobs([net[a] + sticky[a] / self.beta for a in (0, 1)], self.beta)

    def observe(self, point: ChoicePoint, choice: int, outcome: Outcome) -> None:
        stage, planet = point.state
        if stage == 1:
            self._ship = choice
            return
        r = 0.0 if outcome.reward is None else outcome.reward
        self.q2[planet][choice] += self.alpha * (r - self.q2[planet][choice])
        self.q1[self._ship] += self.alpha * (r - self.q1[self._ship])
        self._last_ship = self._ship


def draw_agent(rng: np.random.Generator, demographics: Demographics) -> HybridAgent:
    del demographics
    return HybridAgent(
        alpha=rounded(rng.beta(3.0, 3.0)),
        beta=rounded(math.exp(rng.normal(math.log(4.0), 0.3))),
        w=rounded(rng.beta(2.0, 2.0)),
        pers=rounded(rng.normal(0.3, 0.2)),
    )


def simulate(
    rng: np.random.Generator, demographics: Demographics, n_trials: int
) -> SimulatedSession:
    agent = draw_agent(rng, demographics)
    return play_session(TwoStepEnvironment(rng, n_trials), agent, rng)
