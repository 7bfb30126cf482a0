"""Preference pairs for the preference recipe: the normative answer preferred to the human one.

For a session of a task whose normative answer is computable (lotteries: the higher expected
value, :mod:`psych201.lab.normative`), the *chosen* sequence is the transcript with every
response replaced by the normative answer and the *rejected* one is the transcript as the
participant wrote it. Only the responses where the two differ are scored in the DPO loss: the
pair says "at these decisions, answer normatively rather than as this person did". Lottery tasks
give no feedback, so replacing a choice changes nothing else in the transcript.

Sessions come either from a Psych-201 dataset (training split only) or from F's simulated
risky-choice participants (:func:`psych201.simulate.simulate_study`); simulated training
participants use their own seed, distinct from any evaluation seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from psych201.data.markers import parse_responses
from psych201.data.records import ResponseSpan, Session
from psych201.data.split import iter_split
from psych201.lab.examples import (
    PreferencePair,
    TrainingData,
    example_from_spans,
    select_studies,
    session_key_str,
)
from psych201.lab.normative import normative_responses
from psych201.lab.settings import LabError

#: The simulated task the preference recipe draws on when no dataset is given.
SIMULATED_KIND = "risky"


def normative_session(session: Session) -> tuple[str, tuple[ResponseSpan, ...], list[int]]:
    """The transcript with normative answers, its spans, and the indices of changed responses."""
    answers = normative_responses(session.text, session.responses)
    pieces: list[str] = []
    spans: list[ResponseSpan] = []
    changed: list[int] = []
    pos = 0
    shift = 0
    for span, answer in zip(session.responses, answers, strict=True):
        content = span.text if answer is None else answer
        if content != span.text:
            changed.append(span.index)
        pieces.append(session.text[pos : span.start])
        pieces.append(content)
        start = span.start + shift
        spans.append(ResponseSpan(span.index, start, start + len(content), content))
        shift += len(content) - len(span.text)
        pos = span.end
    pieces.append(session.text[pos:])
    return "".join(pieces), tuple(spans), changed


def pair_from_session(
    session: Session, tokenizer: Any, *, max_tokens: int, alignment: str = "offsets"
) -> PreferencePair | None:
    """The session's pair, or None when no response differs from its normative answer within
    the token budget."""
    text, spans, changed = normative_session(session)
    if not changed:
        return None
    wanted = set(changed)
    key = session_key_str(session.key)
    chosen = example_from_spans(
        text, [s for s in spans if s.index in wanted], tokenizer, key=key,
        max_tokens=max_tokens, alignment=alignment, study=session.study, session=session.key,
    )
    rejected = example_from_spans(
        session.text, [s for s in session.responses if s.index in wanted], tokenizer, key=key,
        max_tokens=max_tokens, alignment=alignment, study=session.study, session=session.key,
    )
    if chosen.n_targets == 0 or rejected.n_targets == 0 or chosen.n_spans != rejected.n_spans:
        return None
    return PreferencePair(key, chosen, rejected, study=session.study, session=session.key)


def simulated_sessions(n_participants: int, *, seed: int) -> list[Session]:
    """F's simulated risky-choice participants as sessions (study ``simulated_risky``)."""
    from psych201.simulate import simulate_study

    sessions = []
    for line, record in enumerate(
        simulate_study(SIMULATED_KIND, n_participants=n_participants, seed=seed), start=1
    ):
        text = str(record["text"])
        sessions.append(
            Session(
                study=f"simulated_{SIMULATED_KIND}",
                experiment=str(record["experiment"]),
                participant=str(record["participant"]),
                line=line,
                text=text,
                responses=parse_responses(text),
            )
        )
    return sessions


def preference_data(
    tokenizer: Any,
    *,
    data: str | Path | None = None,
    studies: Iterable[str] = (),
    split_seed: int = 0,
    n_simulated: int = 200,
    simulate_seed: int = 1000,
    max_tokens: int = 1024,
    alignment: str = "offsets",
) -> TrainingData:
    """Pairs from the training split of ``studies`` in ``data``, or (no ``data``) from
    ``n_simulated`` simulated risky-choice participants drawn with ``simulate_seed``."""
    per_study: dict[str, dict[str, int]] = {}
    pairs: list[PreferencePair] = []

    def add(study: str, sessions: Sequence[Session]) -> None:
        built = [pair_from_session(s, tokenizer, max_tokens=max_tokens, alignment=alignment)
                 for s in sessions]
        kept = [p for p in built if p is not None]
        pairs.extend(kept)
        per_study[study] = {
            "sessions": len(sessions),
            "pairs": len(kept),
            "changed_responses": sum(p.chosen.n_spans for p in kept),
        }

    if data is None:
        add(f"simulated_{SIMULATED_KIND}", simulated_sessions(n_simulated, seed=simulate_seed))
        source: dict[str, Any] = {
            "source": f"simulated {SIMULATED_KIND} participants (psych201.simulate)",
            "n_simulated": n_simulated,
            "simulate_seed": simulate_seed,
        }
    else:
        for study in select_studies(data, studies):
            add(study.name, list(iter_split(study, "train", seed=split_seed)))
        source = {
            "source": "training participants of lottery studies",
            "data": str(Path(data)),
            "split": "train",
            "split_seed": split_seed,
        }
    if not pairs:
        raise LabError(
            "preference recipe: no session has a computable normative answer that differs from "
            "the human one (it needs lottery trials: 'Lottery X: N points with P% or ...')"
        )
    description = {
        **source,
        "normative": "highest expected value (psych201.lab.normative)",
        "pairs": "chosen = normative answers, rejected = human answers; loss on changed responses",
        "studies": per_study,
        "max_tokens": max_tokens,
        "alignment": alignment,
    }
    return TrainingData(pairs=tuple(pairs), description=description)
