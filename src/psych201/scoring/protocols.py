"""The scorer contract: prompts in, one :class:`SpanScore` per response span out.

An :class:`~psych201.scoring.engine.Engine` scores token ids; a scorer turns prompts into
response scores (the :class:`~psych201.scoring.scorer.SessionScorer` does it with an engine and
a tokenizer). The pipeline talks only to scorers, through :func:`score_pairs`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from psych201.data.records import Session
from psych201.prompts.records import Prompt
from psych201.scoring.scorer import SpanScore

SpanScores = Sequence[Sequence[SpanScore]]


@runtime_checkable
class PromptScorer(Protocol):
    """Scores prompts: one list of span scores per prompt, one per span, in span order."""

    def score(self, prompts: Sequence[Prompt]) -> SpanScores: ...


@runtime_checkable
class StreamingScorer(PromptScorer, Protocol):
    """A scorer that takes many chunks as one job and yields each chunk's scores in order
    (Ray: engine replicas load once per study instead of once per part)."""

    def score_stream(self, chunks: Iterable[Sequence[Prompt]]) -> Iterator[SpanScores]: ...


@runtime_checkable
class SessionAwareScorer(Protocol):
    """A scorer that reads each prompt's session too (the oracle reads stored likelihoods)."""

    def score_paired(self, prompts: Sequence[Prompt], sessions: Sequence[Session]) -> SpanScores:
        ...


Scorer = PromptScorer | SessionAwareScorer


def score_pairs(scorer: Scorer, pairs: Sequence[tuple[Session, Prompt]]) -> SpanScores:
    """Scores of each ``(session, prompt)`` pair's prompt, in order."""
    prompts = [p for _, p in pairs]
    if isinstance(scorer, SessionAwareScorer):
        return scorer.score_paired(prompts, [s for s, _ in pairs])
    return scorer.score(prompts)
