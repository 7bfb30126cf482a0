"""Persona preambles built from harmonised metadata, and the shuffled-persona pairing.

``interview`` is the paper's preamble byte for byte: the authors' ``0_analyses/eval_meta.py``
(``META_FIELDS``) asks, for each non-N/A field in ``META_FIELDS`` order, one question and prints
``Interviewer: <question>\\nInterviewee: <value>\\n\\n`` before the unchanged transcript. Its
questions are "What is your age?", "What is your gender?", "What is your nationality?", "What is
your highest level of education?", "Do you have any clinical diagnoses?" and "What is your <X>
score?" for every questionnaire.

The other modes follow the persona formats of OpinionQA/SubPOP, over the same fields,
in the same order, with the values verbatim:

* ``qa`` — the same questions as ``Question: …\\nAnswer: …\\n\\n`` exchanges;
* ``bio`` — a first-person description, introduced as in OpinionQA's BIO format;
* ``portray`` — one instruction, "Answer the following as if you were a person who …".

Values are never reworded (``34.0`` stays ``34.0``), so the modes differ only in framing.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Literal

from psych201.data.fields import (
    DEMOGRAPHIC_FIELDS,
    HARMONISED_FIELDS,
    NA,
    QUESTIONNAIRE_FIELDS,
)
from psych201.data.records import Session, SessionKey

PersonaMode = Literal["interview", "qa", "bio", "portray"]
PERSONA_MODES: tuple[PersonaMode, ...] = ("interview", "qa", "bio", "portray")

#: Bump when any wording below changes: it is part of every persona condition's spec (run hash).
PERSONA_WORDING_VERSION = 1

#: The paper's questions (``eval_meta.py``), keyed by harmonised field name.
QUESTIONS: dict[str, str] = {
    "age": "What is your age?",
    "gender": "What is your gender?",
    "nationality": "What is your nationality?",
    "education": "What is your highest level of education?",
    "diagnosis": "Do you have any clinical diagnoses?",
    **{q: f"What is your {q} score?" for q in QUESTIONNAIRE_FIELDS},
}

# First-person sentences (bio) and relative clauses (portray); {v} is the value verbatim.
_BIO_SENTENCES: dict[str, str] = {
    "age": "I am {v} years old.",
    "gender": "My gender is {v}.",
    "nationality": "My nationality is {v}.",
    "education": "My highest level of education is {v}.",
    "diagnosis": "I have been diagnosed with {v}.",
    **{q: f"My {q} score is {{v}}." for q in QUESTIONNAIRE_FIELDS},
}
_PORTRAY_CLAUSES: dict[str, str] = {
    "age": "who is {v} years old",
    "gender": "whose gender is {v}",
    "nationality": "whose nationality is {v}",
    "education": "whose highest level of education is {v}",
    "diagnosis": "who has been diagnosed with {v}",
    **{q: f"whose {q} score is {{v}}" for q in QUESTIONNAIRE_FIELDS},
}
_BIO_INTRO = (
    "Below you will be asked to provide a short description of yourself and then take part "
    "in an experiment.\nDescription: "
)

assert tuple(QUESTIONS) == HARMONISED_FIELDS == DEMOGRAPHIC_FIELDS + QUESTIONNAIRE_FIELDS


def persona_fields(harmonised: Mapping[str, str], *,
                   blank_present: bool = False) -> list[tuple[str, str]]:
    """The available ``(field, value)`` pairs in the paper's order (N/A, blank, absent skipped).

    ``blank_present=True`` (paper mode) keeps a blank string: the authors' filter only skips
    ``N/A``, so an empty metadata value counts as present for them.
    """
    fields: list[tuple[str, str]] = []
    for name in HARMONISED_FIELDS:
        value = harmonised.get(name, NA)
        if isinstance(value, str) and (value.strip() or blank_present) and value != NA:
            fields.append((name, value))
    return fields


def has_persona(session: Session, *, blank_present: bool = False) -> bool:
    """True when the session has at least one non-N/A harmonised field (the paper's filter)."""
    return bool(persona_fields(session.harmonised, blank_present=blank_present))


def persona_preamble(harmonised: Mapping[str, str], mode: PersonaMode = "interview", *,
                     blank_present: bool = False) -> str:
    """The text placed before the transcript; ends with a blank line. Empty without metadata."""
    fields = persona_fields(harmonised, blank_present=blank_present)
    if not fields:
        return ""
    if mode == "interview":
        return "".join(f"Interviewer: {QUESTIONS[f]}\nInterviewee: {v}\n\n" for f, v in fields)
    if mode == "qa":
        return "".join(f"Question: {QUESTIONS[f]}\nAnswer: {v}\n\n" for f, v in fields)
    if mode == "bio":
        return _BIO_INTRO + " ".join(_BIO_SENTENCES[f].format(v=v) for f, v in fields) + "\n\n"
    if mode == "portray":
        clauses = [_PORTRAY_CLAUSES[f].format(v=v) for f, v in fields]
        return f"Answer the following as if you were a person {_join_clauses(clauses)}.\n\n"
    raise ValueError(f"unknown persona mode {mode!r}; choose one of {', '.join(PERSONA_MODES)}")


def _join_clauses(clauses: Sequence[str]) -> str:
    if len(clauses) == 1:
        return clauses[0]
    if len(clauses) == 2:
        return f"{clauses[0]} and {clauses[1]}"
    return ", ".join(clauses[:-1]) + f", and {clauses[-1]}"


def derangement(n: int, rng: random.Random) -> list[int]:
    """A uniformly random permutation of ``range(n)`` with no fixed point (``n >= 2``).

    Rejection sampling: a shuffle is a derangement with probability ≈ 1/e, so about 2.7 draws
    are needed on average, and every derangement is equally likely.
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}")
    order = list(range(n))
    while True:
        rng.shuffle(order)
        if all(i != j for i, j in enumerate(order)):
            return order


def shuffled_donors(sessions: Sequence[Session], seed: int = 0) -> dict[SessionKey, SessionKey]:
    """For each session, the session of the *same study* whose metadata it borrows.

    Within each study the sessions are put in key order (so the pairing does not depend on the
    order they arrive in) and permuted by a seeded derangement: nobody gets their own metadata,
    and the same sessions with the same seed always give the same pairing on any machine
    (``random.Random`` seeded with a string is stable across platforms and Python versions).
    A study with a single session has no donor for it: it is absent from the result.
    """
    by_study: dict[str, list[Session]] = {}
    for session in sessions:
        by_study.setdefault(session.study, []).append(session)
    donors: dict[SessionKey, SessionKey] = {}
    for study, members in sorted(by_study.items()):
        keys = sorted({s.key for s in members}, key=_key_order)
        if len(keys) < 2:
            continue
        rng = random.Random(f"psych201/persona-shuffled/{seed}/{study}")
        order = derangement(len(keys), rng)
        donors.update({keys[i]: keys[j] for i, j in enumerate(order)})
    return donors


def _key_order(key: SessionKey) -> tuple[str, str, str, int]:
    return (key.study, key.experiment, key.participant, key.line)
