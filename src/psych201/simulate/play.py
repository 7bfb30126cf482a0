"""Tasks as environments, participants as agents, and the loop that lets one play the other.

An :class:`Environment` is one participant's copy of a task: the instructions, then a sequence
of :class:`ChoicePoint` s (the text read before a response, the options offered, and the hidden
task state a cognitive model may use), and the :class:`Outcome` of each choice (the text after
the response, and the reward if there is one). An :class:`Agent` gives the log-probability of
each offered option; the loop samples the choice (or takes the best one), tells the environment
and the agent, and writes the transcript as Psych-201 text: ``point.text + "<<" + option + ">>"
+ outcome.text``.

Everything draws from one seeded stream per participant, in a fixed order: the agent's
parameters first, then the environment's set-up, then per choice point whatever the environment
draws for it, the choice, and whatever the outcome draws. That is the order the cognitive-model
generators always used, so a cognitive-model agent played here writes byte-identical transcripts
to ``psych201 simulate`` (a test holds the two together).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from psych201.simulate.core import (
    Demographics,
    SimulatedSession,
    choose_binary,
    log_sigmoid,
    option_letters,
)


@dataclass(frozen=True)
class ChoicePoint:
    """One response a participant gives: what they read first, and what they may answer.

    ``state`` is what the task knows about this trial (a lottery pair, the item, the stage):
    a cognitive model reads it, a language model only ever sees the text.
    """

    text: str
    options: tuple[str, ...]
    state: Any = None


@dataclass(frozen=True)
class Outcome:
    """What follows a response: the text after ``>>`` and the reward (``None`` without one)."""

    text: str
    reward: float | None = None


class Environment(Protocol):
    """One participant's copy of a task (seeded when it is made)."""

    @property
    def instructions(self) -> str: ...

    def next_choice(self) -> ChoicePoint | None:
        """The next response to give, or ``None`` when the session is over."""

    def respond(self, choice: int) -> Outcome:
        """The consequence of choosing option ``choice`` of the last choice point."""


class Agent(Protocol):
    """A participant: log-probabilities over the offered options, and learning from outcomes."""

    @property
    def params(self) -> dict[str, float]: ...

    def option_logprobs(self, point: ChoicePoint) -> Sequence[float]: ...

    def observe(self, point: ChoicePoint, choice: int, outcome: Outcome) -> None: ...


class TwoOptionTask:
    """What most tasks' environments share: two option letters drawn per participant, named in
    the instructions as ``{a}`` and ``{b}``, and a trial counter."""

    template = "{a} {b}"

    def __init__(self, rng: np.random.Generator, n_trials: int) -> None:
        self._rng = rng
        self.letters = option_letters(rng)
        self._n, self._t = n_trials, 0

    @property
    def instructions(self) -> str:
        return self.template.format(a=self.letters[0], b=self.letters[1])


#: Builds one participant's environment from its stream and the number of trials.
EnvironmentFactory = Callable[[np.random.Generator, int], Environment]
#: Draws one participant's agent (its parameters) from its stream and demographics.
AgentFactory = Callable[[np.random.Generator, Demographics], Agent]


def sample_choice(rng: np.random.Generator, logprobs: Sequence[float]) -> tuple[int, float]:
    """Sample an option from its log-probabilities; (index, log-probability of the choice).

    Two options use :func:`choose_binary` (one uniform draw against the first option's
    probability), so the stream is consumed exactly as the generators always did; more options
    take one uniform draw against the cumulative probabilities.
    """
    if len(logprobs) == 2:
        return choose_binary(rng, logprobs[0], logprobs[1])
    p = [math.exp(v) for v in logprobs]
    if abs(sum(p) - 1.0) > 1e-9:
        raise ValueError(f"probabilities do not sum to 1: {logprobs!r}")
    u, acc = float(rng.random()), 0.0
    for i, pi in enumerate(p):
        acc += pi
        if u < acc:
            return i, logprobs[i]
    return len(p) - 1, logprobs[-1]


def greedy_choice(logprobs: Sequence[float]) -> tuple[int, float]:
    """The most probable option (the first on ties) and its log-probability."""
    best = max(range(len(logprobs)), key=lambda i: logprobs[i])
    return best, logprobs[best]


@dataclass
class Transcript:
    """A session being written: text so far, and per response its log-probability and options."""

    text: str
    loglik: list[float]
    n_options: list[int]

    @classmethod
    def start(cls, env: Environment) -> Transcript:
        return cls(env.instructions, [], [])

    def prompt(self, point: ChoicePoint) -> str:
        """What the participant has read when it answers ``point`` (ends with ``<<``)."""
        return self.text + point.text + "<<"

    def add(self, point: ChoicePoint, choice: int, logprob: float, outcome: Outcome) -> None:
        self.text += f"{point.text}<<{point.options[choice]}>>{outcome.text}"
        self.loglik.append(logprob)
        self.n_options.append(len(point.options))


def play_session(
    env: Environment, agent: Agent, rng: np.random.Generator, *, greedy: bool = False
) -> SimulatedSession:
    """Let ``agent`` play ``env`` to the end; the transcript, its parameters and log-probs."""
    transcript = Transcript.start(env)
    while (point := env.next_choice()) is not None:
        logprobs = agent.option_logprobs(point)
        choice, lp = greedy_choice(logprobs) if greedy else sample_choice(rng, logprobs)
        outcome = env.respond(choice)
        agent.observe(point, choice, outcome)
        transcript.add(point, choice, lp, outcome)
    return SimulatedSession(
        text=transcript.text,
        params=dict(agent.params),
        loglik=tuple(transcript.loglik),
        n_options=tuple(transcript.n_options),
    )


def softmax_logprobs(values: Sequence[float], beta: float) -> list[float]:
    """``log softmax(beta * values)``; two options as log-sigmoids of the difference (exact in
    both tails, and bit-identical to what the generators always computed)."""
    if len(values) == 2:
        x = beta * (values[0] - values[1])
        return [log_sigmoid(x), log_sigmoid(-x)]
    scaled = [beta * v for v in values]
    top = max(scaled)
    norm = top + math.log(sum(math.exp(s - top) for s in scaled))
    return [s - norm for s in scaled]


# --------------------------------------------------------------------------------------------
# Many participants in lockstep: one batched call per choice point across all of them


class Players(Protocol):
    """Whoever plays a study's participants: a cognitive model per participant, or one language
    model for all of them (its log-probs computed for every participant in one batch)."""

    def seat(self, rng: np.random.Generator, demographics: Demographics) -> None:
        """Add a participant (drawing its parameters from ``rng``, if it has any)."""

    def option_logprobs(
        self, seats: Sequence[int], prompts: Sequence[str], points: Sequence[ChoicePoint]
    ) -> list[Sequence[float]]:
        """Log-probs over each point's options, for the participants ``seats`` (one batch)."""

    def observe(self, seat: int, point: ChoicePoint, choice: int, outcome: Outcome) -> None: ...

    def params(self, seat: int) -> dict[str, float]: ...


class CognitivePlayers:
    """One cognitive-model agent per participant, drawn by the task's agent factory."""

    def __init__(self, factory: AgentFactory) -> None:
        self._factory = factory
        self._agents: list[Agent] = []

    def seat(self, rng: np.random.Generator, demographics: Demographics) -> None:
        self._agents.append(self._factory(rng, demographics))

    def option_logprobs(
        self, seats: Sequence[int], prompts: Sequence[str], points: Sequence[ChoicePoint]
    ) -> list[Sequence[float]]:
        return [self._agents[s].option_logprobs(p) for s, p in zip(seats, points, strict=True)]

    def observe(self, seat: int, point: ChoicePoint, choice: int, outcome: Outcome) -> None:
        self._agents[seat].observe(point, choice, outcome)

    def params(self, seat: int) -> dict[str, float]:
        return dict(self._agents[seat].params)


@dataclass(frozen=True)
class ChoiceRow:
    """One response of a played study: what was offered, with what probability, what came."""

    seat: int
    response: int
    options: tuple[str, ...]
    logprobs: tuple[float, ...]
    choice: int
    reward: float | None


def play_lockstep(
    envs: Sequence[Environment],
    rngs: Sequence[np.random.Generator],
    players: Players,
    *,
    greedy: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> tuple[list[SimulatedSession], list[ChoiceRow]]:
    """Play every environment to its end, all participants advancing together.

    At each step every participant still playing reaches its next choice point and the players
    give log-probs for all of them in one call (one batch for a language model); then each
    participant's choice is drawn from its own stream, so participant *i*'s session does not
    depend on who else plays. Returns the sessions (seat order) and a row per response.
    ``on_step`` is told after each step how many responses it answered.
    """
    transcripts = [Transcript.start(env) for env in envs]
    rows: list[ChoiceRow] = []
    points: dict[int, ChoicePoint] = {}
    for seat, env in enumerate(envs):
        point = env.next_choice()
        if point is not None:
            points[seat] = point
    while points:
        seats = sorted(points)
        prompts = [transcripts[s].prompt(points[s]) for s in seats]
        batch = players.option_logprobs(seats, prompts, [points[s] for s in seats])
        for seat, logprobs in zip(seats, batch, strict=True):
            point = points.pop(seat)
            if greedy:
                choice, lp = greedy_choice(logprobs)
            else:
                choice, lp = sample_choice(rngs[seat], logprobs)
            outcome = envs[seat].respond(choice)
            players.observe(seat, point, choice, outcome)
            rows.append(ChoiceRow(seat, len(transcripts[seat].loglik), point.options,
                                  tuple(float(v) for v in logprobs), choice, outcome.reward))
            transcripts[seat].add(point, choice, lp, outcome)
            following = envs[seat].next_choice()
            if following is not None:
                points[seat] = following
        if on_step is not None:
            on_step(len(seats))
    sessions = [
        SimulatedSession(text=t.text, params=players.params(seat), loglik=tuple(t.loglik),
                         n_options=tuple(t.n_options))
        for seat, t in enumerate(transcripts)
    ]
    return sessions, rows
