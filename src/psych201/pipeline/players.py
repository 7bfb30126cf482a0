"""Language-model players of closed-loop play: the option tokens of a prompt, a choice from the
option log-probs an engine (or a kept key/value cache) gives, or a generated answer parsed.
:func:`psych201.pipeline.play.language_model_players` builds them for a play spec."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from psych201.errors import UsageError
from psych201.scoring.engine import Engine, ScoringRequest
from psych201.simulate.core import Demographics
from psych201.simulate.play import ChoicePoint, Outcome, Players


@dataclass(frozen=True)
class OptionTokens:
    """How a choice point's options are scored: a context and one candidate token per option."""

    context: tuple[int, ...]
    candidates: tuple[int, ...]


def option_tokens(tokenizer: Any, prompt: str, options: Sequence[str]) -> OptionTokens:
    """The shared token prefix of ``prompt + option`` over the options, and each option's one
    token after it (tokenizers that merge ``<<`` with the letter give e.g. ``<<A`` vs ``<<B``).

    UsageError when an option is more than one token there: its probability would need one
    request per token, which the closed loop does not do.
    """
    encoded = [tuple(tokenizer(prompt + o, add_special_tokens=True)["input_ids"]) for o in options]
    shared = 0
    shortest = min(len(e) for e in encoded)
    while shared < shortest and len({e[shared] for e in encoded}) == 1:
        shared += 1
    tails = [e[shared:] for e in encoded]
    if shared == 0 or any(len(t) != 1 for t in tails):
        raise UsageError(
            f"the options {', '.join(options)} are not one token each after the transcript "
            "with this tokenizer; closed-loop play needs one-token options"
        )
    return OptionTokens(encoded[0][:shared], tuple(t[0] for t in tails))


class OptionScorer(Protocol):
    """Log-probs of candidate tokens after a context, for a batch of participants (``key``)."""

    def score_options(
        self, items: Sequence[tuple[str, Sequence[int], Sequence[int]]]
    ) -> list[npt.NDArray[np.float64]]: ...


class EngineOptions:
    """Any engine with candidate log-probs: one stateless request per participant, all of them
    in one :meth:`Engine.score` call (which batches them)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def score_options(
        self, items: Sequence[tuple[str, Sequence[int], Sequence[int]]]
    ) -> list[npt.NDArray[np.float64]]:
        requests = [
            ScoringRequest(
                key=key,
                token_ids=np.asarray([*context, candidates[0]], dtype=np.int64),
                target_positions=np.asarray([len(context)], dtype=np.int64),
                candidates={0: np.asarray(candidates, dtype=np.int64)},
            )
            for key, context, candidates in items
        ]
        out = []
        for scored in self.engine.score(requests):
            if scored.candidate_logprobs is None or 0 not in scored.candidate_logprobs:
                raise UsageError(f"engine {self.engine.info.name} returned no option log-probs")
            out.append(np.asarray(scored.candidate_logprobs[0], dtype=np.float64))
        return out


class LanguageModelPlayers:
    """One language model for every participant: option log-probs for all of them per call.

    ``option_mass`` of each scored point (the log of the probability the model put on the
    offered options before renormalising) is kept for the choice table.
    """

    def __init__(self, scorer: OptionScorer, tokenizer: Any) -> None:
        self._scorer, self.tokenizer = scorer, tokenizer
        self.option_mass: dict[tuple[int, int], float] = {}
        self._answered: dict[int, int] = {}

    def seat(self, rng: np.random.Generator, demographics: Demographics) -> None:
        pass  # a language model draws no parameters

    def option_logprobs(
        self, seats: Sequence[int], prompts: Sequence[str], points: Sequence[ChoicePoint]
    ) -> list[Sequence[float]]:
        tokens = [option_tokens(self.tokenizer, p, pt.options)
                  for p, pt in zip(prompts, points, strict=True)]
        raw_all = self._scorer.score_options(
            [(str(seat), t.context, t.candidates) for seat, t in zip(seats, tokens, strict=True)]
        )
        out: list[Sequence[float]] = []
        for seat, raw in zip(seats, raw_all, strict=True):
            mass = float(np.logaddexp.reduce(raw))
            self.option_mass[(seat, self._answered.get(seat, 0))] = mass
            out.append([float(v) for v in raw - mass])
        return out

    def observe(self, seat: int, point: ChoicePoint, choice: int, outcome: Outcome) -> None:
        self._answered[seat] = self._answered.get(seat, 0) + 1

    def params(self, seat: int) -> dict[str, float]:
        return {}


class GeneratingPlayers:
    """The model writes its answer (:class:`~psych201.scoring.hf_generate.Generator`); the
    answer's option is chosen with probability 1. An answer naming no offered option is a parse
    failure: counted, named through ``on_failure``, and replaced by a uniform random choice."""

    def __init__(self, generator: Any, on_failure: Callable[[str], None] | None = None) -> None:
        self._generator = generator
        self._answered: dict[int, int] = {}
        self._on_failure = on_failure
        self.generated: dict[tuple[int, int], str] = {}
        self.failures = 0

    def option_logprobs(
        self, seats: Sequence[int], prompts: Sequence[str], points: Sequence[ChoicePoint]
    ) -> list[Sequence[float]]:
        from psych201.scoring.hf_generate import parse_answer

        out: list[Sequence[float]] = []
        for seat, prompt, point in zip(seats, prompts, points, strict=True):
            answer = self._generator.answer(prompt, point.options)
            response = self._answered.get(seat, 0)
            self.generated[(seat, response)] = answer
            picked = parse_answer(answer, point.options)
            k = len(point.options)
            if picked is None:
                self.failures += 1
                if self._on_failure is not None:
                    self._on_failure(f"participant seat {seat}, response {response}: "
                                     f"{answer!r} names none of {', '.join(point.options)}")
                out.append([-math.log(k)] * k)
            else:
                out.append([0.0 if i == picked else -math.inf for i in range(k)])
        return out

    def seat(self, rng: np.random.Generator, demographics: Demographics) -> None:
        pass  # a language model draws no parameters

    def observe(self, seat: int, point: ChoicePoint, choice: int, outcome: Outcome) -> None:
        self._answered[seat] = self._answered.get(seat, 0) + 1

    def params(self, seat: int) -> dict[str, float]:
        return {}


#: How a language model's option log-probs are computed: ``cache`` keeps each participant's
#: key/value cache and runs only the new tokens (hf only); ``batch`` sends every participant's
#: whole transcript to the engine in one batched call per choice point (any listed engine).
MODES: tuple[str, ...] = ("cache", "batch")


@dataclass(frozen=True)
class LoadedModelPlayers:
    """A language model loaded once: fresh players per chunk, and what the manifest records."""

    make_players: Callable[[], Players]
    engine_info: dict[str, Any]
    model_info: dict[str, Any]
    close: Callable[[], None]


