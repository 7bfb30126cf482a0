"""Tasks as environments, cognitive models as agents: nothing written before changes, and the
lockstep loop that language models play through reproduces ``simulate`` exactly."""

from __future__ import annotations

import hashlib

import pytest

from psych201.simulate import KINDS, TASKS, CognitivePlayers, play_study, simulate_study, to_jsonl

#: sha256 of ``to_jsonl(simulate_study(kind, n_participants=7, seed=11, ...))`` computed with
#: the generators as they were before tasks became environments + agents (commit 07c30e2).
BEFORE_SPLIT = {
    ("bandit", False, None): "24817d90051cc87f85beebd0bfc124efd5fa3681769f9aba03b6aa2d3629d711",
    ("risky", False, None): "a089021be67b761b75ef67b31cdeb1309d4b6dd9be2189b0a84cbb16f0ad9fb0",
    ("risky", True, None): "5136e373286f92d41ae99da08469a99fbdeeb7a0487b298359db7b8317c6ae61",
    ("lexical", False, None): "e50ad008f0403c9914d6dbbb72b276be146ef06016b26c5cdb96776fad594e9d",
    ("bandit", False, 100): "940a43106b9f6b3fb9e1b0145494d8d07eaba41bb9658522b2c7b1a855d0cb16",
}


@pytest.mark.parametrize(("kind", "shared", "trials"), list(BEFORE_SPLIT))
def test_cognitive_agents_write_the_bytes_the_generators_always_wrote(
    kind: str, shared: bool, trials: int | None
) -> None:
    records = simulate_study(kind, n_participants=7, seed=11, shared_trials=shared,
                             n_trials=trials)
    assert hashlib.sha256(to_jsonl(records)).hexdigest() == BEFORE_SPLIT[(kind, shared, trials)]


@pytest.mark.parametrize("kind", KINDS)
def test_playing_in_lockstep_reproduces_simulate(kind: str) -> None:
    shared = kind == "risky"
    expected = simulate_study(kind, n_participants=9, n_trials=12, seed=4, shared_trials=shared)
    played, rows = play_study(kind, CognitivePlayers(TASKS[kind].agent), n_participants=6,
                              n_trials=12, seed=4, shared_trials=shared, first=3)
    assert to_jsonl(played) == to_jsonl(expected[3:])
    per_trial = TASKS[kind].responses_per_trial
    assert len(rows) == 6 * 12 * per_trial
    # the table's choice and log-prob are the transcript's
    first = [r for r in rows if r.seat == 0]
    assert [r.logprobs[r.choice] for r in first] == expected[3]["loglik"]


def test_unknown_task_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="twostep"):
        play_study("maze", CognitivePlayers(TASKS["bandit"].agent), n_participants=1, seed=0)
