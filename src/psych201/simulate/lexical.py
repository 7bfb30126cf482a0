"""Lexical decision (word or not?); choices from a drift-diffusion model's choice probabilities.

Model (per participant): evidence drifts from a starting point ``bias * boundary`` between 0
("not a word") and ``boundary`` ("word"), with unit diffusion. Drift is ``+drift_word`` for a
common word, ``+RARE_FACTOR * drift_word`` for a rare word and ``-drift_nonword`` for a
pseudoword. The probability of hitting the "word" boundary first is the classic
``(1 - exp(-2 v a z)) / (1 - exp(-2 v a))`` (``v`` drift, ``a`` boundary, ``z`` bias).
Only choices are simulated (no response times), so the choices identify ``drift * boundary``
and ``bias`` but not drift and boundary separately (and even those only weakly: three item
classes give three choice probabilities); all four true values are stored.

Population: ``log(drift_word) ~ Normal(log 2, 0.3)``, ``log(drift_nonword) ~ Normal(log 1.5,
0.3)``, ``log(boundary) ~ Normal(log 1.2, 0.2)``, ``bias ~ Beta(12, 12)``.

Task: letter strings from a pool of 30 common words, 30 rare words and 60 pseudowords, in random
order without repetition until the pool is used up (then a fresh random pass); no feedback.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from psych201.simulate.core import (
    Demographics,
    SimulatedSession,
    option_letters,
    rounded,
)
from psych201.simulate.play import ChoicePoint, Outcome, play_session

EXPERIMENT = "simulated lexical decision (drift-diffusion choice probabilities)"
DEFAULT_TRIALS = 40
RARE_FACTOR = 0.4  # rare words give weaker evidence for "word" than common ones

COMMON_WORDS: tuple[str, ...] = (
    "house", "water", "garden", "window", "money", "friend", "table", "morning", "river",
    "doctor", "paper", "bread", "music", "summer", "school", "animal", "letter", "market",
    "winter", "family", "kitchen", "mountain", "picture", "teacher", "forest", "island",
    "number", "village", "orange", "pocket",
)  # fmt: skip
RARE_WORDS: tuple[str, ...] = (
    "sallow", "quixotic", "limpid", "fulcrum", "cudgel", "wimple", "bailiwick", "gimlet",
    "tureen", "sinecure", "ferrule", "plinth", "galoshes", "nacre", "cairn", "rubric",
    "wainscot", "dirge", "jerkin", "flagon", "lectern", "poultice", "spindrift", "hawser",
    "mullion", "gewgaw", "scupper", "tocsin", "pinion", "dewlap",
)  # fmt: skip
PSEUDOWORDS: tuple[str, ...] = (
    "blonter", "fraspen", "gloxit", "snarbel", "pludge", "vostrin", "cremble", "dwindor",
    "flurket", "grastom", "humbrel", "kelpid", "mirtol", "orbick", "pranzel", "quendle",
    "ristow", "scalpen", "thornip", "ulbrane", "vardle", "wispen", "yorkle", "zembly",
    "brindow", "chastel", "drombit", "fengle", "glorpen", "hastric", "inkrel", "jandow",
    "klister", "lorbin", "mendrick", "narpel", "ospret", "plimber", "quardon", "rentick",
    "sporble", "traspel", "umbric", "velkin", "wadrel", "yestor", "zorpil", "bastrel",
    "crundle", "dimpok", "estrow", "flendor", "grobbin", "hulper", "istran", "jorvel",
    "kremble", "lusket", "morpen", "nistral",
)  # fmt: skip

_INSTRUCTIONS = (
    "In this study, you will see letter strings one after another. For each one, decide whether "
    "it is an existing English word.\n"
    "If the string is a word, press the {word} key. If it is not a word, press the {nonword} "
    "key.\n"
    "Please respond as fast, but most importantly as accurately as possible.\n\n"
)


def log_p_upper(v: float, a: float, z: float) -> float:
    """log P(a diffusion with drift v, boundary a, start z*a ends at the upper boundary).

    Written in terms of ``expm1`` for both signs of ``v`` so that neither branch overflows or
    cancels; near ``v == 0`` it uses the first-order expansion around the limit ``z``.
    """
    if abs(v * a) < 1e-9:
        # Near zero drift expm1 underflows; first order in v*a the probability is
        # z * (1 + v a (1 - z)), exact to ~1e-18 here.
        return math.log(z) + v * a * (1 - z)
    if v > 0:
        return math.log(-math.expm1(-2 * v * a * z)) - math.log(-math.expm1(-2 * v * a))
    u = -v  # (exp(2ua z) - 1) / (exp(2ua) - 1), factored to keep every exponent negative
    return (
        2 * u * a * (z - 1)
        + math.log(-math.expm1(-2 * u * a * z))
        - math.log(-math.expm1(-2 * u * a))
    )


def drift(item: str, drift_word: float, drift_nonword: float) -> float:
    if item in COMMON_WORDS:
        return drift_word
    if item in RARE_WORDS:
        return RARE_FACTOR * drift_word
    if item in PSEUDOWORDS:
        return -drift_nonword
    raise KeyError(f"{item!r} is not in the lexical decision item pool")


class LexicalEnvironment:
    """Letter strings from the pool, no feedback; the choice point's state is the item."""

    def __init__(self, rng: np.random.Generator, n_trials: int) -> None:
        self.keys = option_letters(rng)  # (word, nonword)
        pool = COMMON_WORDS + RARE_WORDS + PSEUDOWORDS
        order: list[int] = []
        while len(order) < n_trials:  # a fresh random pass over the pool each time it runs out
            order.extend(int(i) for i in rng.permutation(len(pool)))
        self._items = [pool[i] for i in order[:n_trials]]
        self._t = 0

    @property
    def instructions(self) -> str:
        return _INSTRUCTIONS.format(word=self.keys[0], nonword=self.keys[1])

    def next_choice(self) -> ChoicePoint | None:
        if self._t >= len(self._items):
            return None
        item = self._items[self._t]
        return ChoicePoint(f"{item}. You press ", self.keys, item)

    def respond(self, choice: int) -> Outcome:
        self._t += 1
        return Outcome(".\n")


@dataclass(frozen=True)
class DiffusionAgent:
    """Choice probabilities of a drift-diffusion process (options: word, nonword)."""

    drift_word: float
    drift_nonword: float
    boundary: float
    bias: float

    @property
    def params(self) -> dict[str, float]:
        return {"drift_word": self.drift_word, "drift_nonword": self.drift_nonword,
                "boundary": self.boundary, "bias": self.bias}

    def option_logprobs(self, point: ChoicePoint) -> Sequence[float]:
        v = drift(point.state, self.drift_word, self.drift_nonword)
        # P("not a word") is the upper-boundary probability of the mirrored process.
        a, z = self.boundary, self.bias
        return (log_p_upper(v, a, z), log_p_upper(-v, a, 1 - z))

    def observe(self, point: ChoicePoint, choice: int, outcome: Outcome) -> None:
        pass  # no feedback


def draw_agent(rng: np.random.Generator, demographics: Demographics) -> DiffusionAgent:
    del demographics  # no planted demographic effect in this task
    return DiffusionAgent(
        drift_word=rounded(math.exp(rng.normal(math.log(2.0), 0.3))),
        drift_nonword=rounded(math.exp(rng.normal(math.log(1.5), 0.3))),
        boundary=rounded(math.exp(rng.normal(math.log(1.2), 0.2))),
        bias=rounded(rng.beta(12.0, 12.0)),
    )


def simulate(
    rng: np.random.Generator, demographics: Demographics, n_trials: int
) -> SimulatedSession:
    agent = draw_agent(rng, demographics)
    return play_session(LexicalEnvironment(rng, n_trials), agent, rng)
