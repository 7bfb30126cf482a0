"""Simulated participants: format, determinism, and stored log-likelihoods recomputed independently.

The recomputations below read everything they need from the record (the transcript and the
``param_*`` fields) and implement each model a second way, so a bug in a generator (wrong value
update, wrong rank-dependent weights, a flipped choice) cannot hide behind shared code.
"""

from __future__ import annotations

import json
import math
import re
import string
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_expit

from psych201.data.markers import parse_responses
from psych201.simulate import KINDS, simulate_study, to_jsonl, write_study
from psych201.simulate.lexical import (
    COMMON_WORDS,
    PSEUDOWORDS,
    RARE_FACTOR,
    RARE_WORDS,
    log_p_upper,
)

PARAMS = {
    "bandit": {"alpha", "beta"},
    "risky": {"alpha", "lambda", "gamma", "theta"},
    "lexical": {"drift_word", "drift_nonword", "boundary", "bias"},
    "twostep": {"alpha", "beta", "w", "pers"},
    "reversal": {"alpha", "beta", "kappa"},
}


#: Tasks with one response per trial between two letters the instructions name as a pair (the
#: two-step task asks two responses per trial among six letters: tests/test_simulate_play.py).
ONE_RESPONSE_KINDS = ("bandit", "risky", "lexical", "reversal")


def test_every_kind_has_a_parameter_list_here() -> None:
    assert set(KINDS) == set(PARAMS)


@pytest.mark.parametrize("kind", ONE_RESPONSE_KINDS)
def test_records_are_psych201_sessions(kind: str) -> None:
    records = simulate_study(kind, n_participants=12, n_trials=25, seed=3)
    assert [r["participant"] for r in records] == [str(i) for i in range(1, 13)]
    letter_pairs = set()
    for r in records:
        assert isinstance(r["text"], str) and r["experiment"] and r["simulator"] == kind
        assert 18 <= r["age"] <= 75 and r["gender"] in {"female", "male", "other"}
        assert {k.removeprefix("param_") for k in r if k.startswith("param_")} == PARAMS[kind]
        spans = parse_responses(r["text"])
        assert len(spans) == len(r["loglik"]) == len(r["n_options"]) == 25
        assert all(n == 2 for n in r["n_options"])
        assert all(math.isfinite(v) and v <= 0 for v in r["loglik"])
        # Options: two distinct uppercase letters named in the instructions, and every
        # response is one of them.
        letters = {s.text for s in spans}
        assert letters <= set(string.ascii_uppercase) and len(letters) <= 2
        named = _option_letters(r)
        assert letters <= set(named) and len(set(named)) == 2
        letter_pairs.add(frozenset(named))
    assert len(letter_pairs) > 3  # random per participant, as in the real data


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_bytes_and_participants_do_not_depend_on_study_size(kind: str) -> None:
    a = simulate_study(kind, n_participants=5, seed=11)
    assert to_jsonl(a) == to_jsonl(simulate_study(kind, n_participants=5, seed=11))
    assert simulate_study(kind, n_participants=8, seed=11)[:5] == a
    assert to_jsonl(simulate_study(kind, n_participants=5, seed=12)) != to_jsonl(a)
    # Longer sessions extend the same participant: parameters and demographics do not move.
    longer = simulate_study(kind, n_participants=5, n_trials=60, seed=11)
    for short, long in zip(a, longer, strict=True):
        assert {k: v for k, v in short.items() if k.startswith("param_") or k == "age"} == {
            k: v for k, v in long.items() if k.startswith("param_") or k == "age"
        }


def test_kinds_with_the_same_seed_draw_different_people() -> None:
    ages = {k: [r["age"] for r in simulate_study(k, n_participants=6, seed=0)] for k in KINDS}
    assert len({tuple(v) for v in ages.values()}) == len(KINDS)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown simulated task 'maze'"):
        simulate_study("maze", n_participants=1, seed=0)
    with pytest.raises(ValueError, match="n_participants"):
        simulate_study("bandit", n_participants=0, seed=0)
    with pytest.raises(ValueError, match="n_trials"):
        simulate_study("bandit", n_participants=1, n_trials=0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        simulate_study("bandit", n_participants=1, seed=-1)


def _option_letters(record: dict[str, Any]) -> tuple[str, ...]:
    """The two option letters as the instructions (before the first response) name them."""
    head = record["text"][: parse_responses(record["text"])[0].start]
    if record["simulator"] == "lexical":
        return tuple(re.findall(r"press the ([A-Z]) key", head))
    if record["simulator"] == "reversal":
        return re.search(r"cards, ([A-Z]) or ([A-Z])", head).groups()  # type: ignore[union-attr]
    return re.search(r"labelled ([A-Z]) and ([A-Z])", head).groups()  # type: ignore[union-attr]


# --- independent re-implementations ---------------------------------------------------------


def _choices(record: dict[str, Any]) -> list[str]:
    return [s.text for s in parse_responses(record["text"])]


def _bandit_loglik(record: dict[str, Any]) -> np.ndarray:
    text = record["text"]
    a, b = re.search(r"labelled ([A-Z]) and ([A-Z])", text).groups()  # type: ignore[union-attr]
    trials = re.findall(r"<<([A-Z])>> and won (1 point|nothing)", text)
    alpha, beta = record["param_alpha"], record["param_beta"]
    q = {a: 0.5, b: 0.5}
    out = []
    for choice, outcome in trials:
        other = b if choice == a else a
        out.append(log_expit(beta * (q[choice] - q[other])))
        q[choice] += alpha * ((outcome == "1 point") - q[choice])
    return np.array(out)


def _cpt_value(outcomes: list[tuple[float, float]], alpha: float, lam: float, g: float) -> float:
    """General rank-dependent CPT for any number of outcomes (cumulative decision weights)."""

    def w(p: float) -> float:
        return p**g / (p**g + (1 - p) ** g) ** (1 / g)

    def v(x: float) -> float:
        return x**alpha if x >= 0 else -lam * (-x) ** alpha

    gains = sorted((o for o in outcomes if o[0] >= 0), reverse=True)
    losses = sorted(o for o in outcomes if o[0] < 0)
    total, cum = 0.0, 0.0
    for x, p in gains:  # best first: pi = w(P(X >= x)) - w(P(X > x))
        total += (w(min(cum + p, 1.0)) - w(cum)) * v(x)
        cum += p
    cum = 0.0
    for x, p in losses:  # worst first: pi = w(P(X <= x)) - w(P(X < x))
        total += (w(min(cum + p, 1.0)) - w(cum)) * v(x)
        cum += p
    return total


def _risky_loglik(record: dict[str, Any]) -> np.ndarray:
    text = record["text"]
    letters = re.search(r"labelled ([A-Z]) and ([A-Z])", text).groups()  # type: ignore[union-attr]
    lot = re.compile(r"Lottery ([A-Z]): (-?\d+) points with (\d+)% or (-?\d+) points with (\d+)%\.")
    found = lot.findall(text)
    pars = (record["param_alpha"], record["param_lambda"], record["param_gamma"])
    out = []
    for (la, *a), (lb, *b), choice in zip(found[::2], found[1::2], _choices(record), strict=True):
        assert (la, lb) == letters
        assert int(a[1]) + int(a[3]) == 100 and int(b[1]) + int(b[3]) == 100
        va = _cpt_value([(int(a[0]), int(a[1]) / 100), (int(a[2]), int(a[3]) / 100)], *pars)
        vb = _cpt_value([(int(b[0]), int(b[1]) / 100), (int(b[2]), int(b[3]) / 100)], *pars)
        d = record["param_theta"] * (va - vb)
        out.append(log_expit(d if choice == la else -d))
    return np.array(out)


def _lexical_loglik(record: dict[str, Any]) -> np.ndarray:
    text = record["text"]
    key_word = re.search(r"a word, press the ([A-Z]) key", text).group(1)  # type: ignore[union-attr]
    items = re.findall(r"^([a-z]+)\. You press <<([A-Z])>>", text, flags=re.M)
    a, z = record["param_boundary"], record["param_bias"]
    out = []
    for item, key in items:
        if item in COMMON_WORDS:
            v = record["param_drift_word"]
        elif item in RARE_WORDS:
            v = RARE_FACTOR * record["param_drift_word"]
        else:
            assert item in PSEUDOWORDS
            v = -record["param_drift_nonword"]
        p_word = (1 - np.exp(-2 * v * a * z)) / (1 - np.exp(-2 * v * a))  # textbook form
        out.append(np.log(p_word if key == key_word else 1 - p_word))
    return np.array(out)


RECOMPUTE = {"bandit": _bandit_loglik, "risky": _risky_loglik, "lexical": _lexical_loglik}


@pytest.mark.parametrize("kind", RECOMPUTE)
def test_stored_loglik_is_the_generating_models(kind: str) -> None:
    for record in simulate_study(kind, n_participants=6, n_trials=50, seed=5):
        expected = RECOMPUTE[kind](record)
        assert len(expected) == len(record["loglik"])
        np.testing.assert_allclose(record["loglik"], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_choices_are_sampled_from_the_stored_probabilities(kind: str) -> None:
    # With two options, E[-log p(choice)] equals the entropy of that trial's choice
    # distribution; a generator that sampled from anything else (say, flipped choices) fails.
    lls = np.concatenate(
        [r["loglik"] for r in simulate_study(kind, n_participants=60, n_trials=50, seed=9)]
    )
    p = np.exp(lls)
    q = np.clip(1 - p, 1e-300, None)
    entropy = -(p * np.log(p) + q * np.log(q))
    # Per trial, -log p(choice) has mean H and variance p q (log(p/q))^2.
    var = p * q * np.log(p / q) ** 2
    z = (np.sum(-lls) - np.sum(entropy)) / math.sqrt(np.sum(var))
    assert abs(z) < 4, z


def test_written_files_hold_exactly_the_stored_doubles(tmp_path: Any) -> None:
    records = simulate_study("risky", n_participants=3, seed=1)
    path = write_study(records, tmp_path / "risky.jsonl")
    back = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert back == records
    assert all(a["loglik"] == b["loglik"] for a, b in zip(back, records, strict=True))


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(tuple(RECOMPUTE)),
    seed=st.integers(0, 2**63 - 1),
    n_trials=st.integers(1, 130),  # past the lexical pool's 120 items too
)
def test_any_seed_and_length_gives_a_well_formed_session(
    kind: str, seed: int, n_trials: int
) -> None:
    (record,) = simulate_study(kind, n_participants=1, n_trials=n_trials, seed=seed)
    spans = parse_responses(record["text"])
    assert len(spans) == len(record["loglik"]) == n_trials
    assert set(s.text for s in spans) <= set(_option_letters(record))
    np.testing.assert_allclose(record["loglik"], RECOMPUTE[kind](record), rtol=1e-9, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    v=st.floats(-6, 6, allow_nan=False),
    a=st.floats(0.3, 3),
    z=st.floats(0.05, 0.95),
)
def test_diffusion_choice_probabilities_are_stable_and_complementary(
    v: float, a: float, z: float
) -> None:
    up, down = log_p_upper(v, a, z), log_p_upper(-v, a, 1 - z)
    assert up <= 0 and down <= 0
    assert math.exp(up) + math.exp(down) == pytest.approx(1.0, abs=1e-12)
    if abs(v) > 1e-6:  # the textbook form, where it is numerically safe
        textbook = (1 - math.exp(-2 * v * a * z)) / (1 - math.exp(-2 * v * a))
        assert math.exp(up) == pytest.approx(textbook, rel=1e-9, abs=1e-12)
    else:
        assert math.exp(up) == pytest.approx(z, abs=1e-5)
