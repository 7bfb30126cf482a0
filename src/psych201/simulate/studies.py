"""The registry of simulated tasks and :func:`simulate_study`, which runs one of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from psych201.simulate import bandit, lexical, reversal, risky, twostep
from psych201.simulate.core import (
    Demographics,
    SimulatedSession,
    draw_demographics,
    make_record,
    participant_rng,
)
from psych201.simulate.play import (
    AgentFactory,
    ChoiceRow,
    EnvironmentFactory,
    Players,
    play_lockstep,
)

Generator = Callable[[np.random.Generator, Demographics, int], SimulatedSession]


@dataclass(frozen=True)
class SimulatedTask:
    """One kind of simulated study: how to generate a participant, and its defaults."""

    kind: str
    experiment: str
    default_trials: int
    generate: Generator
    description: str
    #: One participant's copy of the task, and the cognitive model that plays it
    #: (``generate`` is the two played together: :func:`psych201.simulate.play.play_session`).
    environment: EnvironmentFactory
    agent: AgentFactory
    #: A generator whose participants share one problem set (drawn from the stream given), for
    #: tasks that have fixed problems; ``None``: every participant's trials are their own.
    shared: Callable[[np.random.Generator, int], Generator] | None = None
    #: The environment with a shared problem set (drawn from the stream given), for tasks that
    #: have one: ``(problem stream, n_trials) -> environment factory``.
    shared_environment: Callable[[np.random.Generator, int], EnvironmentFactory] | None = None
    #: Responses per trial (the two-step task asks two).
    responses_per_trial: int = 1


TASKS: dict[str, SimulatedTask] = {
    task.kind: task
    for task in (
        SimulatedTask(
            "bandit",
            bandit.EXPERIMENT,
            bandit.DEFAULT_TRIALS,
            bandit.simulate,
            "two-armed bandit with a reversal; Q-learning + softmax (alpha, beta)",
            bandit.BanditEnvironment,
            bandit.draw_agent,
        ),
        SimulatedTask(
            "risky",
            risky.EXPERIMENT,
            risky.DEFAULT_TRIALS,
            risky.simulate,
            "lotteries; cumulative prospect theory + logit (alpha, lambda, gamma, theta)",
            risky.RiskyEnvironment,
            risky.draw_agent,
            risky.shared_problems,
            risky.shared_environment,
        ),
        SimulatedTask(
            "lexical",
            lexical.EXPERIMENT,
            lexical.DEFAULT_TRIALS,
            lexical.simulate,
            "lexical decision; drift-diffusion choice probabilities (drifts, boundary, bias)",
            lexical.LexicalEnvironment,
            lexical.draw_agent,
        ),
        SimulatedTask(
            "twostep",
            twostep.EXPERIMENT,
            twostep.DEFAULT_TRIALS,
            twostep.simulate,
            "two-step task (Daw 2011); hybrid model-based/model-free (alpha, beta, w, pers)",
            twostep.TwoStepEnvironment,
            twostep.draw_agent,
            responses_per_trial=2,
        ),
        SimulatedTask(
            "reversal",
            reversal.EXPERIMENT,
            reversal.DEFAULT_TRIALS,
            reversal.simulate,
            "probability learning with reversals; Q-learning + perseveration (alpha, beta, kappa)",
            reversal.ReversalEnvironment,
            reversal.draw_agent,
        ),
    )
}

#: The simulated task kinds, in registry order.
KINDS: tuple[str, ...] = tuple(TASKS)


def simulate_study(
    kind: str, *, n_participants: int, n_trials: int | None = None, seed: int,
    shared_trials: bool = False,
) -> list[dict[str, Any]]:
    """Simulate ``n_participants`` sessions of task ``kind`` as Psych-201 JSONL records.

    Each record has ``text`` (responses in ``<<…>>``), ``experiment``, ``participant`` (``"1"``,
    ``"2"``, …), ``age``, ``gender``, ``simulator``, the true parameters as ``param_<name>``,
    ``loglik`` (natural-log probability of each response under the generating model, in order)
    and ``n_options`` (options per response). The output depends only on the arguments;
    participant *i* does not depend on ``n_participants``. With ``shared_trials`` every
    participant meets the same problems in the same order (tasks with a fixed problem set only:
    see :attr:`SimulatedTask.shared`).
    """
    task, trials = _checked(kind, n_participants, n_trials)
    generate = task.generate
    if shared_trials:
        if task.shared is None:
            shareable = ", ".join(k for k, t in TASKS.items() if t.shared is not None)
            raise ValueError(f"task {kind!r} has no shared problem set; {shareable} has")
        # A stream of its own, so the problems do not depend on any participant's.
        generate = task.shared(participant_rng(seed, f"{kind}/problems", 0), trials)
    records = []
    for i in range(n_participants):
        rng = participant_rng(seed, kind, i)
        demographics = draw_demographics(rng)
        session = generate(rng, demographics, trials)
        records.append(
            make_record(
                kind=kind,
                experiment=task.experiment,
                participant=str(i + 1),
                demographics=demographics,
                session=session,
            )
        )
    return records


def task_of(kind: str) -> SimulatedTask:
    """The registered task ``kind``; ValueError naming the tasks there are."""
    task = TASKS.get(kind)
    if task is None:
        raise ValueError(f"unknown simulated task {kind!r}; choose one of {', '.join(KINDS)}")
    return task


def _checked(kind: str, n_participants: int, n_trials: int | None) -> tuple[SimulatedTask, int]:
    task = task_of(kind)
    if n_participants < 1:
        raise ValueError(f"n_participants must be at least 1, got {n_participants}")
    trials = task.default_trials if n_trials is None else n_trials
    if trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {trials}")
    return task, trials


def play_study(
    kind: str, players: Players, *, n_participants: int, n_trials: int | None = None,
    seed: int, shared_trials: bool = False, first: int = 0, greedy: bool = False,
    experiment: str | None = None, on_step: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, Any]], list[ChoiceRow]]:
    """Participants ``first .. first + n_participants - 1`` of task ``kind`` played by
    ``players``, all in lockstep: the JSONL records (as :func:`simulate_study` writes them) and
    a row per response (seats count from 0 within this call).

    Participant *i* has the same stream, demographics and environment as in
    :func:`simulate_study` with the same seed, so cognitive-model players reproduce it exactly.
    """
    task, trials = _checked(kind, n_participants, n_trials)
    make_env: EnvironmentFactory = task.environment
    if shared_trials:
        if task.shared_environment is None:
            raise ValueError(f"task {kind!r} has no shared problem set")
        make_env = task.shared_environment(participant_rng(seed, f"{kind}/problems", 0), trials)
    rngs, people, envs = [], [], []
    for i in range(first, first + n_participants):
        rng = participant_rng(seed, kind, i)
        demographics = draw_demographics(rng)
        players.seat(rng, demographics)  # the agent's parameters come first in the stream
        envs.append(make_env(rng, trials))
        rngs.append(rng)
        people.append(demographics)
    sessions, rows = play_lockstep(envs, rngs, players, greedy=greedy, on_step=on_step)
    records = [
        make_record(kind=kind, experiment=experiment or task.experiment, participant=str(i + 1),
                    demographics=d, session=s)
        for i, d, s in zip(range(first, first + n_participants), people, sessions, strict=True)
    ]
    return records, rows
