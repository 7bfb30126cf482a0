"""The registry of simulated tasks and :func:`simulate_study`, which runs one of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from psych201.simulate import bandit, lexical, risky
from psych201.simulate.core import (
    Demographics,
    SimulatedSession,
    draw_demographics,
    make_record,
    participant_rng,
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
    #: A generator whose participants share one problem set (drawn from the stream given), for
    #: tasks that have fixed problems; ``None``: every participant's trials are their own.
    shared: Callable[[np.random.Generator, int], Generator] | None = None


TASKS: dict[str, SimulatedTask] = {
    task.kind: task
    for task in (
        SimulatedTask(
            "bandit",
            bandit.EXPERIMENT,
            bandit.DEFAULT_TRIALS,
            bandit.simulate,
            "two-armed bandit with a reversal; Q-learning + softmax (alpha, beta)",
        ),
        SimulatedTask(
            "risky",
            risky.EXPERIMENT,
            risky.DEFAULT_TRIALS,
            risky.simulate,
            "lotteries; cumulative prospect theory + logit (alpha, lambda, gamma, theta)",
            risky.shared_problems,
        ),
        SimulatedTask(
            "lexical",
            lexical.EXPERIMENT,
            lexical.DEFAULT_TRIALS,
            lexical.simulate,
            "lexical decision; drift-diffusion choice probabilities (drifts, boundary, bias)",
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
    task = TASKS.get(kind)
    if task is None:
        raise ValueError(f"unknown simulated task {kind!r}; choose one of {', '.join(KINDS)}")
    if n_participants < 1:
        raise ValueError(f"n_participants must be at least 1, got {n_participants}")
    trials = task.default_trials if n_trials is None else n_trials
    if trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {trials}")
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
