"""Risky choice between two-outcome lotteries; choices from cumulative prospect theory.

Model (per participant; Tversky & Kahneman 1992 with one curvature and one weighting parameter):
value ``v(x) = x**alpha`` for gains and ``-lam * (-x)**alpha`` for losses; probability weighting
``w(p) = p**gamma / (p**gamma + (1 - p)**gamma)**(1 / gamma)``, applied rank-dependently (for two
gains the better outcome gets ``w(p)`` and the other ``1 - w(p)``; mirrored for two losses; in a
mixed lottery each outcome gets ``w`` of its own probability); choice
``P(A) = 1 / (1 + exp(-theta * (V(A) - V(B))))``.

Population: ``alpha ~ 0.3 + 0.7 * Beta(6, 2)``, ``log(lam) ~ Normal(log 1.8, 0.35)``,
``gamma ~ 0.3 + 0.7 * Beta(5, 2)``, ``log(theta) ~ Normal(log 0.12, 0.5)``.

Task: on each problem, two lotteries drawn at random from the gain, loss or mixed domain
(outcomes multiples of 5 up to 100 points, probabilities multiples of 5 %), no feedback. With a
shared problem set (:func:`shared_problems`) every participant meets the same problems in the same
order — only the option letters differ — so the trials recur across participants, as population-
level analyses need.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from psych201.simulate.core import (
    Demographics,
    SimulatedSession,
    log_sigmoid,
    rounded,
)
from psych201.simulate.play import ChoicePoint, Outcome, TwoOptionTask, play_session

EXPERIMENT = "simulated risky choice (cumulative prospect theory, logit choice)"
DEFAULT_TRIALS = 30

_INSTRUCTIONS = (
    "In this experiment, you will make a series of choices between two lotteries, labelled "
    "{a} and {b}.\n"
    "Each lottery has two possible outcomes, in points, each with a given chance. Points can be "
    "won or lost.\n"
    "There is no feedback. At the end, one of your choices will be played out for a bonus, so "
    "choose the lottery you prefer.\n\n"
)


@dataclass(frozen=True)
class Lottery:
    """Outcome ``x1`` with probability ``pct1`` %, otherwise ``x2``.

    Probabilities are whole percentages, so the text states exactly what the model used.
    """

    x1: int
    pct1: int
    x2: int

    @property
    def p1(self) -> float:
        return self.pct1 / 100

    @property
    def p2(self) -> float:
        return (100 - self.pct1) / 100

    def describe(self) -> str:
        return f"{self.x1} points with {self.pct1}% or {self.x2} points with {100 - self.pct1}%"


@dataclass(frozen=True)
class ProspectTheory:
    alpha: float
    lam: float
    gamma: float

    def value(self, x: float) -> float:
        return x**self.alpha if x >= 0 else -self.lam * (-x) ** self.alpha

    def weight(self, p: float) -> float:
        g = self.gamma
        return p**g / (p**g + (1.0 - p) ** g) ** (1.0 / g)

    def utility(self, lot: Lottery) -> float:
        (x_lo, p_lo), (x_hi, p_hi) = sorted(((lot.x1, lot.p1), (lot.x2, lot.p2)))
        if x_lo >= 0:  # two gains: decision weight of the better outcome is w(its p)
            w_hi = self.weight(p_hi)
            return w_hi * self.value(x_hi) + (1.0 - w_hi) * self.value(x_lo)
        if x_hi <= 0:  # two losses: the worse outcome is ranked first
            w_lo = self.weight(p_lo)
            return w_lo * self.value(x_lo) + (1.0 - w_lo) * self.value(x_hi)
        return self.weight(p_hi) * self.value(x_hi) + self.weight(p_lo) * self.value(x_lo)


def _draw_lottery(rng: np.random.Generator, domain: str) -> Lottery:
    pct1 = int(rng.integers(1, 20)) * 5  # 5 % .. 95 %
    a, b = (int(v) * 5 for v in rng.integers(0, 21, size=2))  # 0 .. 100 points
    if domain == "gain":
        x1, x2 = a, b
    elif domain == "loss":
        x1, x2 = -a, -b
    else:  # mixed: one gain and one loss, in random order
        x1, x2 = (max(a, 5), -max(b, 5)) if rng.random() < 0.5 else (-max(a, 5), max(b, 5))
    return Lottery(x1=x1, pct1=pct1, x2=x2)


def _draw_problem(rng: np.random.Generator) -> tuple[Lottery, Lottery]:
    domain = ("gain", "loss", "mixed")[int(rng.integers(3))]
    return _draw_lottery(rng, domain), _draw_lottery(rng, domain)


def shared_problems(
    rng: np.random.Generator, n_trials: int
) -> Callable[[np.random.Generator, Demographics, int], SimulatedSession]:
    """A generator whose participants all meet the same ``n_trials`` problems (drawn from
    ``rng``), in the same order; each still draws its own parameters, letters and choices."""
    problems = tuple(_draw_problem(rng) for _ in range(n_trials))

    def generate(
        rng: np.random.Generator, demographics: Demographics, n: int
    ) -> SimulatedSession:
        return simulate(rng, demographics, n, problems=problems)

    return generate


def shared_environment(
    rng: np.random.Generator, n_trials: int
) -> Callable[[np.random.Generator, int], RiskyEnvironment]:
    """An environment factory whose participants all meet the same ``n_trials`` problems."""
    problems = tuple(_draw_problem(rng) for _ in range(n_trials))

    def make(rng: np.random.Generator, n: int) -> RiskyEnvironment:
        return RiskyEnvironment(rng, n, problems)

    return make


class RiskyEnvironment(TwoOptionTask):
    """Lottery pairs without feedback; the choice point's state is ``(lottery A, lottery B)``."""

    template = _INSTRUCTIONS

    def __init__(
        self, rng: np.random.Generator, n_trials: int,
        problems: Sequence[tuple[Lottery, Lottery]] | None = None,
    ) -> None:
        if problems is not None and len(problems) < n_trials:
            raise ValueError(f"{len(problems)} shared problems for {n_trials} trials")
        super().__init__(rng, n_trials)
        self._problems = problems

    def next_choice(self) -> ChoicePoint | None:
        if self._t >= self._n:
            return None
        t = self._t
        lot_a, lot_b = _draw_problem(self._rng) if self._problems is None else self._problems[t]
        # Problems are separated by a blank line: it leads every problem after the first, so
        # the transcript ends with the last response's line.
        text = (
            f"{chr(10) if t else ''}Problem {t + 1}:\n"
            f"Lottery {self.letters[0]}: {lot_a.describe()}.\n"
            f"Lottery {self.letters[1]}: {lot_b.describe()}.\n"
            "You choose "
        )
        return ChoicePoint(text, self.letters, (lot_a, lot_b))

    def respond(self, choice: int) -> Outcome:
        self._t += 1
        return Outcome(".\n")


@dataclass(frozen=True)
class ProspectTheoryAgent:
    """Cumulative prospect theory with logit choice between the two lotteries."""

    pt: ProspectTheory
    theta: float

    @property
    def params(self) -> dict[str, float]:
        return {"alpha": self.pt.alpha, "lambda": self.pt.lam, "gamma": self.pt.gamma,
                "theta": self.theta}

    def option_logprobs(self, point: ChoicePoint) -> Sequence[float]:
        lot_a, lot_b = point.state
        x = self.theta * (self.pt.utility(lot_a) - self.pt.utility(lot_b))
        return (log_sigmoid(x), log_sigmoid(-x))

    def observe(self, point: ChoicePoint, choice: int, outcome: Outcome) -> None:
        pass  # no feedback, nothing to learn


def draw_agent(rng: np.random.Generator, demographics: Demographics) -> ProspectTheoryAgent:
    del demographics  # no planted demographic effect in this task
    pt = ProspectTheory(
        alpha=rounded(0.3 + 0.7 * rng.beta(6.0, 2.0)),
        lam=rounded(math.exp(rng.normal(math.log(1.8), 0.35))),
        gamma=rounded(0.3 + 0.7 * rng.beta(5.0, 2.0)),
    )
    return ProspectTheoryAgent(pt, rounded(math.exp(rng.normal(math.log(0.12), 0.5))))


def simulate(
    rng: np.random.Generator, demographics: Demographics, n_trials: int,
    problems: Sequence[tuple[Lottery, Lottery]] | None = None,
) -> SimulatedSession:
    """One participant; ``problems`` fixes the lotteries (else drawn per participant)."""
    if problems is not None and len(problems) < n_trials:
        raise ValueError(f"{len(problems)} shared problems for {n_trials} trials")
    agent = draw_agent(rng, demographics)
    return play_session(RiskyEnvironment(rng, n_trials, problems), agent, rng)
