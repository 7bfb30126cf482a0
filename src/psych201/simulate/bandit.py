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

import numpy as np

from psych201.simulate.core import (
    Demographics,
    SimulatedSession,
    choose_binary,
    log_sigmoid,
    option_letters,
    rounded,
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


def simulate(
    rng: np.random.Generator, demographics: Demographics, n_trials: int
) -> SimulatedSession:
    alpha = rounded(rng.beta(2.0, 3.0))
    beta = rounded(math.exp(rng.normal(math.log(5.0) - 0.01 * (demographics.age - 45), 0.4)))
    letters = option_letters(rng)
    good = int(rng.integers(2))  # arm that pays P_GOOD in the first half

    lines = [_INSTRUCTIONS.format(a=letters[0], b=letters[1])]
    q = [Q_INIT, Q_INIT]
    loglik: list[float] = []
    reversal = n_trials // 2
    for t in range(n_trials):
        better = good if t < reversal else 1 - good
        x = beta * (q[0] - q[1])  # softmax over two arms = sigmoid of the value difference
        choice, lp = choose_binary(rng, log_sigmoid(x), log_sigmoid(-x))
        p_reward = P_GOOD if choice == better else P_BAD
        reward = int(float(rng.random()) < p_reward)
        q[choice] += alpha * (reward - q[choice])
        loglik.append(lp)
        outcome = "won 1 point" if reward else "won nothing"
        lines.append(f"Trial {t + 1}: You chose machine <<{letters[choice]}>> and {outcome}.\n")
    return SimulatedSession(
        text="".join(lines),
        params={"alpha": alpha, "beta": beta},
        loglik=tuple(loglik),
        n_options=(2,) * n_trials,
    )
