"""Persona preambles (golden wording), the shuffled pairing and the persona conditions."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paths import DATA, needs_data
from psych201.data.fields import HARMONISED_FIELDS, NA
from psych201.data.markers import parse_responses
from psych201.data.readers import iter_sessions
from psych201.data.records import Session
from psych201.prompts.conditions import IneligibleSessionError, make_condition
from psych201.prompts.persona import (
    PERSONA_MODES,
    QUESTIONS,
    derangement,
    has_persona,
    persona_preamble,
    shuffled_donors,
)

FULL = {name: NA for name in HARMONISED_FIELDS}
FULL.update(
    {
        "age": "34.0",
        "gender": "female",
        "nationality": "United Kingdom",
        "education": "Bachelor's Degree",
        "diagnosis": "depression",
        "PHQ-9": "12.0",
        "BIS-11": "60.0",
    }
)


def _session(participant: str, harmonised: dict[str, str], study: str = "s") -> Session:
    text = f"Trial for {participant}: you press <<A>> then <<B>>."
    return Session(
        study=study,
        experiment="e",
        participant=participant,
        line=int(participant) if participant.isdigit() else 1,
        text=text,
        responses=parse_responses(text),
        harmonised=harmonised,
    )


# --- golden wording -------------------------------------------------------------------------


def test_interview_is_the_papers_preamble_exactly() -> None:
    # eval_meta.py: "Interviewer: {question}\nInterviewee: {value}\n\n" per non-N/A field.
    assert persona_preamble(FULL, "interview") == (
        "Interviewer: What is your age?\nInterviewee: 34.0\n\n"
        "Interviewer: What is your gender?\nInterviewee: female\n\n"
        "Interviewer: What is your nationality?\nInterviewee: United Kingdom\n\n"
        "Interviewer: What is your highest level of education?\nInterviewee: Bachelor's Degree\n\n"
        "Interviewer: Do you have any clinical diagnoses?\nInterviewee: depression\n\n"
        "Interviewer: What is your PHQ-9 score?\nInterviewee: 12.0\n\n"
        "Interviewer: What is your BIS-11 score?\nInterviewee: 60.0\n\n"
    )


def test_interview_with_age_only_matches_protocol_example() -> None:
    assert persona_preamble({"age": "34.0", "gender": NA}) == (
        "Interviewer: What is your age?\nInterviewee: 34.0\n\n"
    )


def test_qa_bio_portray_wording() -> None:
    small = {"age": "34.0", "gender": "female", "STAI-T": "41.0"}
    assert persona_preamble(small, "qa") == (
        "Question: What is your age?\nAnswer: 34.0\n\n"
        "Question: What is your gender?\nAnswer: female\n\n"
        "Question: What is your STAI-T score?\nAnswer: 41.0\n\n"
    )
    assert persona_preamble(small, "bio") == (
        "Below you will be asked to provide a short description of yourself and then take part "
        "in an experiment.\nDescription: I am 34.0 years old. My gender is female. "
        "My STAI-T score is 41.0.\n\n"
    )
    assert persona_preamble(small, "portray") == (
        "Answer the following as if you were a person who is 34.0 years old, whose gender is "
        "female, and whose STAI-T score is 41.0.\n\n"
    )
    assert persona_preamble({"diagnosis": "ADHD", "nationality": "Germany"}, "portray") == (
        "Answer the following as if you were a person whose nationality is Germany and who has "
        "been diagnosed with ADHD.\n\n"
    )
    assert persona_preamble({"education": "High School"}, "bio").endswith(
        "Description: My highest level of education is High School.\n\n"
    )


def test_field_order_is_the_papers_not_the_mappings() -> None:
    shuffled_dict = {"BIS-10": "1", "age": "2", "PHQ-8": "3", "gender": "male"}
    lines = [ln for ln in persona_preamble(shuffled_dict).splitlines() if ln.startswith("Inter")]
    assert lines[0::2] == [
        "Interviewer: What is your age?",
        "Interviewer: What is your gender?",
        "Interviewer: What is your PHQ-8 score?",
        "Interviewer: What is your BIS-10 score?",
    ]
    assert list(QUESTIONS) == list(HARMONISED_FIELDS)


def test_missing_blank_and_na_fields_give_no_preamble() -> None:
    for mode in PERSONA_MODES:
        assert persona_preamble({"age": NA, "gender": "  ", "IUS": NA}, mode) == ""
    assert not has_persona(_session("1", {"age": NA}))
    assert has_persona(_session("1", {"OCI": "7.0"}))
    with pytest.raises(ValueError, match="unknown persona mode"):
        persona_preamble(FULL, "essay")  # type: ignore[arg-type]


# --- derangement ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=2, max_value=60), seed=st.integers(min_value=0, max_value=10**6))
def test_derangement_has_no_fixed_point_and_is_seed_stable(n: int, seed: int) -> None:
    order = derangement(n, random.Random(seed))
    assert sorted(order) == list(range(n))
    assert all(i != j for i, j in enumerate(order))
    assert derangement(n, random.Random(seed)) == order


def test_derangement_is_uniform_enough_for_three() -> None:
    # The two derangements of 3 elements should both occur about equally often.
    rng = random.Random(7)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(2000):
        key = tuple(derangement(3, rng))
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == {(1, 2, 0), (2, 0, 1)}
    assert min(counts.values()) > 850


def test_derangement_needs_two() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, random.Random(0))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=2, max_value=25), seed=st.integers(min_value=0, max_value=999))
def test_shuffled_donors_properties(n: int, seed: int) -> None:
    sessions = [_session(str(i), {"age": f"{20 + i}.0"}) for i in range(n)]
    donors = shuffled_donors(sessions, seed)
    keys = [s.key for s in sessions]
    assert set(donors) == set(keys)
    assert sorted(donors.values(), key=str) == sorted(keys, key=str)  # a permutation
    assert all(donor != key for key, donor in donors.items())  # nobody gets their own
    assert shuffled_donors(list(reversed(sessions)), seed) == donors  # order-independent
    assert shuffled_donors(sessions, seed) == donors  # seed-stable


def test_shuffled_donors_differ_between_seeds_and_stay_within_study() -> None:
    a = [_session(str(i), {"age": "1.0"}, study="a") for i in range(8)]
    b = [_session(str(i), {"age": "1.0"}, study="b") for i in range(8)]
    donors = shuffled_donors(a + b, seed=0)
    assert all(key.study == donor.study for key, donor in donors.items())
    # Each study is paired on its own: other studies' sessions do not change its pairing.
    assert {k: v for k, v in donors.items() if k.study == "a"} == shuffled_donors(a, seed=0)
    assert any(shuffled_donors(a, seed=s) != shuffled_donors(a, seed=0) for s in range(1, 6))


def test_shuffled_donors_golden_pairing() -> None:
    # Pins the seeded stream: if this changes, every persona-shuffled result changes with it
    # (bump PERSONA_WORDING_VERSION or the spec so old runs are not resumed into new ones).
    sessions = [_session(str(i), {"age": "1.0"}, study="golden") for i in range(1, 6)]
    donors = shuffled_donors(sessions, seed=0)
    assert [donors[s.key].participant for s in sessions] == GOLDEN_PAIRING


GOLDEN_PAIRING = ["5", "1", "4", "3", "2"]


# --- persona conditions ---------------------------------------------------------------------


def test_persona_prompt_is_preamble_then_transcript_with_shifted_spans() -> None:
    session = _session("1", {"age": "34.0"})
    (prompt,) = make_condition("persona").render_study([session])
    preamble = "Interviewer: What is your age?\nInterviewee: 34.0\n\n"
    assert prompt.text == preamble + session.text
    assert [s.text for s in prompt.spans] == ["A", "B"]
    assert [s.start - len(preamble) for s in prompt.spans] == [r.start for r in session.responses]
    assert prompt.condition == "persona" and prompt.marker_aligned and prompt.n_dropped == 0


def test_shuffled_persona_uses_another_participants_metadata() -> None:
    sessions = [_session(str(i), {"age": f"{20 + i}.0"}) for i in range(1, 5)]
    prompts = make_condition("persona-shuffled", seed=3).render_study(sessions)
    donors = shuffled_donors(sessions, seed=3)
    by_key = {s.key: s for s in sessions}
    for session, prompt in zip(sessions, prompts, strict=True):
        donor = by_key[donors[session.key]]
        assert prompt.text == persona_preamble(donor.harmonised) + session.text
        assert persona_preamble(session.harmonised) not in prompt.text
        assert [s.text for s in prompt.spans] == ["A", "B"]
    assert prompts == make_condition("persona-shuffled", seed=3).render_study(sessions)


def test_shuffled_persona_alone_in_its_study_scores_nothing() -> None:
    session = _session("1", {"age": "30.0"})
    (prompt,) = make_condition("persona-shuffled").render_study([session])
    assert prompt.spans == () and prompt.n_dropped == 2 and prompt.text == session.text


def test_persona_conditions_refuse_sessions_without_metadata() -> None:
    bare = _session("1", {"age": NA})
    for name in ("persona", "persona-shuffled", "no-persona"):
        condition = make_condition(name)
        assert not condition.eligible(bare)
        with pytest.raises(IneligibleSessionError, match="eligible"):
            condition.render_study([bare])


def test_persona_paper_mode_truncates_after_the_preamble() -> None:
    session = _session("1", {"age": "34.0"})
    preamble = persona_preamble(session.harmonised)
    cut = len(preamble) + session.text.index("<<B>>") + 3  # inside the second response
    (prompt,) = make_condition("persona", paper=True, max_chars=cut).render_study([session])
    assert prompt.condition == "persona-paper"
    assert prompt.text.startswith(preamble) and [s.text for s in prompt.spans] == ["A"]
    assert prompt.n_dropped == 1


@needs_data
def test_persona_no_persona_and_shuffled_cover_the_same_real_participants() -> None:
    # frey2017lotteries: age, sex and location on every line; thoma2025problearn: age, gender.
    for study in ("frey2017lotteries", "thoma2025problearn"):
        sessions = []
        for session in iter_sessions(DATA / study):
            sessions.append(session)
            if len(sessions) == 12:
                break
        names = ("no-persona", "persona", "persona-shuffled")
        conditions = [make_condition(n) for n in names]
        eligible = [[s.key for s in sessions if c.eligible(s)] for c in conditions]
        assert eligible[0] == eligible[1] == eligible[2] and len(eligible[0]) >= 2
        chosen = [s for s in sessions if conditions[0].eligible(s)]
        scored = [
            [(p.spans[0].index, len(p.spans)) for p in c.render_study(chosen)] for c in conditions
        ]
        assert scored[0] == scored[1] == scored[2]
        donors = shuffled_donors(chosen, seed=0)
        by_key = {s.key: s for s in chosen}
        own = conditions[1].render_study(chosen)
        shuffled = conditions[2].render_study(chosen)
        for session, own_prompt, other_prompt in zip(chosen, own, shuffled, strict=True):
            donor = by_key[donors[session.key]]
            assert donor.key != session.key
            assert own_prompt.text == persona_preamble(session.harmonised) + session.text
            assert other_prompt.text == persona_preamble(donor.harmonised) + session.text
