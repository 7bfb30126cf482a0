"""Scoring one chunk of sessions (retrying one by one to name a bad session) and its rows.

A chunk becomes one Parquet part; :func:`scored_chunks` yields each chunk's scores as soon as
they are known, streaming all chunks as one job where the scorer can (Ray).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from psych201.data.records import Session, SessionKey
from psych201.prompts.records import Prompt
from psych201.results.schema import ResponseScore
from psych201.scoring.protocols import Scorer, StreamingScorer, score_pairs
from psych201.scoring.scorer import SpanScore

_ChunkResult = tuple[dict[SessionKey, Sequence[SpanScore]], list[tuple[Session, str]]]


def scored_chunks(
    scorer: Scorer, chunks: Sequence[Sequence[tuple[Session, Prompt | None]]]
) -> Iterator[_ChunkResult]:
    """:func:`_score_chunk` for each chunk, in order, as each finishes.

    A scorer with ``score_stream`` (Ray) gets all chunks as one job, so its engine replicas load
    once per study instead of once per part; each chunk still becomes its own part as soon as it
    is scored. If the stream fails, the failed chunk and the rest go one call per chunk, which
    names the sessions that cannot be scored.
    """
    if not isinstance(scorer, StreamingScorer) or len(chunks) < 2:
        for items in chunks:
            yield _score_chunk(scorer, items)
        return
    works = [[(s, p) for s, p in items if p is not None and p.spans] for items in chunks]
    done = 0
    try:
        scored = scorer.score_stream([[p for _, p in work] for work in works])
        for items, work in zip(chunks, works, strict=True):
            scores = next(scored)
            _check_scores(work, scores)
            results: dict[SessionKey, Sequence[SpanScore]] = {
                s.key: [] for s, p in items if p is None or not p.spans
            }
            results.update({s.key: sc for (s, _), sc in zip(work, scores, strict=True)})
            done += 1
            yield results, []
    except (ValueError, RuntimeError, IndexError, KeyError, StopIteration):
        for items in chunks[done:]:
            yield _score_chunk(scorer, items)


def _score_chunk(
    scorer: Scorer, items: Sequence[tuple[Session, Prompt | None]]
) -> tuple[dict[SessionKey, Sequence[SpanScore]], list[tuple[Session, str]]]:
    """Score the chunk's prompts; on failure retry one by one to keep the good and name the bad.

    Sessions without a prompt (ineligible) or without spans finish with no scores.
    """
    results: dict[SessionKey, Sequence[SpanScore]] = {}
    work = [(s, p) for s, p in items if p is not None and p.spans]
    for session, prompt in items:
        if prompt is None or not prompt.spans:
            results[session.key] = []
    if not work:
        return results, []
    try:
        scores = score_pairs(scorer, work)
        _check_scores(work, scores)
        results.update({s.key: sc for (s, _), sc in zip(work, scores, strict=True)})
        return results, []
    except (ValueError, RuntimeError, IndexError, KeyError) as exc:
        if len(work) == 1:
            return results, [(work[0][0], f"{type(exc).__name__}: {exc}")]
    errors: list[tuple[Session, str]] = []
    for session, prompt in work:
        try:
            one = score_pairs(scorer, [(session, prompt)])
            _check_scores([(session, prompt)], one)
            results[session.key] = one[0]
        except (ValueError, RuntimeError, IndexError, KeyError) as exc:
            errors.append((session, f"{type(exc).__name__}: {exc}"))
    return results, errors


def _check_scores(
    work: Sequence[tuple[Session, Prompt]], scores: Sequence[Sequence[SpanScore]]
) -> None:
    if len(scores) != len(work):
        raise RuntimeError(f"scorer returned {len(scores)} results for {len(work)} prompts")
    for (_, prompt), span_scores in zip(work, scores, strict=True):
        got = [s.index for s in span_scores]
        want = [s.index for s in prompt.spans]
        if got != want:
            raise RuntimeError(f"scorer returned spans {got[:5]}… for spans {want[:5]}…")


def response_rows(
    model: str,
    condition: str,
    session: Session,
    prompt: Prompt | None,
    scores: Sequence[SpanScore],
) -> list[ResponseScore]:
    if prompt is None:
        return []
    return [
        ResponseScore(
            model=model,
            condition=condition,
            study=session.study,
            experiment=session.experiment,
            participant=session.participant,
            line=session.line,
            response_index=span.index,
            response_text=span.text,
            n_tokens=int(score.n_tokens),
            nll=float(score.nll),
            top1_correct=None if score.top1_correct is None else bool(score.top1_correct),
            entropy=float(score.entropy),
            context_tokens=int(score.context_tokens),
            truncated=bool(score.truncated),
            offered_correct=None if score.offered_correct is None else bool(score.offered_correct),
            n_offered=None if score.n_offered is None else int(score.n_offered),
            nll_temperature=_floats(score.nll_temperature),
            offered_options=None if score.offered_options is None else tuple(score.offered_options),
            offered_logprobs=_floats(score.offered_logprobs),
        )
        for span, score in zip(prompt.spans, scores, strict=True)
    ]


def _floats(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)
