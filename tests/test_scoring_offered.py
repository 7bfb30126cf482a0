"""Accuracy among the offered options: candidate log-probs, option tokens, the columns, analysis.

The reference for every number is an independent computation: the model's own full-vocabulary
``forward`` logits, and option tokens found by re-tokenizing the transcript with the response
swapped for each option.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from paths import DATA, needs_data
from psych201.analysis import paper
from psych201.analysis.an_accuracy import AccuracyResult
from psych201.analysis.plugin import AnalysisOptions
from psych201.analysis.registry import load_registry
from psych201.analysis.summary import summarize
from psych201.analysis.synthetic import SyntheticDesign, synthetic_responses
from psych201.analysis.tables import results_from_frame, validate_responses
from psych201.data.readers import iter_sessions
from psych201.data.records import ResponseSpan
from psych201.prompts.conditions import make_condition
from psych201.prompts.records import Prompt
from psych201.results.io import read_table
from psych201.results.schema import ADDED_COLUMNS, RESPONSE_SCHEMA
from psych201.results.writer import ResultsError, read_parts
from psych201.scoring.align import align
from psych201.scoring.engine import ScoringRequest
from psych201.scoring.hf import HFEngine
from psych201.scoring.scorer import SessionScorer, option_candidates
from tiny_models import (
    byte_bpe_tokenizer,
    merging_bpe_tokenizer,
    sentencepiece_tokenizer,
    smollm2_tokenizer_or_skip,
    tiny_llama,
)

#: Discrete studies with short sessions whose options the transcript states.
STUDIES = ("franke2024bayesian", "guenther2020LDT", "frey2017lotteries", "spektor2024lossaversion",
           "thoma2025problearn")


def full_logprobs(model: Any, ids: np.ndarray) -> np.ndarray:
    """log P(next token) at every position, from the model's own forward (reference)."""
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(ids)[None]).logits[0].float()
    return torch.log_softmax(logits, dim=-1).double().numpy()


def logprobs_at(model: Any, ids: np.ndarray, rows: list[int]) -> dict[int, np.ndarray]:
    """:func:`full_logprobs` at ``rows`` only (``logits_to_keep``: long real sessions would
    otherwise materialise sequence × vocabulary logits)."""
    keep = sorted(set(rows))
    if not keep:
        return {}
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(ids)[None],
                       logits_to_keep=torch.as_tensor(keep)).logits[0].float()
    values = torch.log_softmax(logits, dim=-1).double().numpy()
    return dict(zip(keep, values, strict=True))


def test_hf_candidate_logprobs_equal_the_full_distribution() -> None:
    tokenizer = byte_bpe_tokenizer()
    model = tiny_llama(tokenizer)
    engine = HFEngine(model, head_chunk_elems=3 * len(tokenizer))  # several head chunks
    ids = np.asarray(tokenizer("You press <<A>>. You press <<B>>. You chose <<C>>.")["input_ids"])
    targets = np.arange(1, ids.size, dtype=np.int64)
    rng = np.random.default_rng(0)
    candidates = {
        j: rng.choice(len(tokenizer), size=4, replace=False).astype(np.int64)
        for j in (0, 3, targets.size - 1)
    }
    (scores,) = engine.score([ScoringRequest("r", ids, targets, candidates)])
    reference = full_logprobs(model, ids)
    assert scores.candidate_logprobs is not None
    assert set(scores.candidate_logprobs) == set(candidates)
    for j, cand in candidates.items():
        want = reference[targets[j] - 1, cand]
        np.testing.assert_allclose(scores.candidate_logprobs[j], want, atol=1e-5)
    # A request without candidates reports none (engines without the full distribution alike).
    (plain,) = engine.score([ScoringRequest("p", ids, targets)])
    assert plain.candidate_logprobs is None


@pytest.mark.parametrize(
    "make_tokenizer", [byte_bpe_tokenizer, sentencepiece_tokenizer, merging_bpe_tokenizer]
)
def test_offered_correct_against_full_logits_for_every_tokenizer_family(make_tokenizer) -> None:
    tokenizer = make_tokenizer()
    model = tiny_llama(tokenizer, seed=3)
    text = "Choose A, B or C.\nYou press <<B>>. Then <<A>>.\nNow X or Y: <<X>>. Free <<hello>>."
    spans = []
    for index, response in enumerate(("B", "A", "X", "hello")):
        start = text.index(f"<<{response}>>") + 2
        spans.append(ResponseSpan(index, start, start + len(response), response))
    options = (frozenset("ABC"), frozenset("ABC"), frozenset("XY"), None)
    prompt = Prompt(text, tuple(spans), "discrete", options=options)
    aligned = align(prompt, tokenizer, "offsets")
    offered = option_candidates(prompt, aligned, tokenizer)
    reference = full_logprobs(model, aligned.token_ids)
    (scores,) = SessionScorer(tokenizer, HFEngine(model)).score([prompt])
    assert [s.n_offered for s in scores] == [3, 3, 2, None]
    assert scores[3].offered_correct is None  # no options stated
    checked = 0
    for k, score in enumerate(scores):
        pos = aligned.span_positions[k]
        if pos.size != 1 or int(pos[0]) not in offered:
            assert score.offered_correct is None
            continue
        cand = offered[int(pos[0])]
        # Each candidate is the token the option would be in the response's place.
        span = prompt.spans[k]
        options = prompt.options[k] or frozenset()
        for option, token in zip(sorted(options), cand.token_ids, strict=True):
            assert _swapped_token(tokenizer, prompt, span, option) == int(token)
        assert int(cand.token_ids[cand.response]) == int(aligned.token_ids[pos[0]])
        row = reference[int(pos[0]) - 1]
        assert score.offered_correct == bool(row[cand.token_ids].argmax() == cand.response)
        checked += 1
    assert checked >= 2, "the one-letter responses must be scorable among their options"


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> Any:
    return smollm2_tokenizer_or_skip()


def _swapped_token(tokenizer: Any, prompt: Prompt, span: ResponseSpan, option: str) -> int | None:
    """The option's token found independently: re-tokenize with the response swapped for it."""
    text = prompt.text[: span.start] + option + prompt.text[span.end :]
    swapped = Prompt(text, (ResponseSpan(0, span.start, span.start + len(option), option),), "x")
    aligned = align(swapped, tokenizer, "offsets")
    (pos,) = aligned.span_positions
    return int(aligned.token_ids[pos[0]]) if pos.size == 1 else None


@pytest.mark.slow  # over 40 s on the shared 2-core machine
@needs_data
def test_real_discrete_sessions_with_smollm2_tokenizer(smollm2_tokenizer) -> None:
    tokenizer = smollm2_tokenizer
    model = tiny_llama(tokenizer, seed=1, max_positions=1 << 16)  # no windows: one pass
    scorer = SessionScorer(tokenizer, HFEngine(model))
    condition = make_condition("discrete")
    for study in STUDIES:
        sessions = list(itertools.islice(iter_sessions(DATA / study), 2))
        prompts = condition.render_study(sessions)
        scored = scorer.score(prompts)
        total = covered = 0
        for prompt, scores in zip(prompts, scored, strict=True):
            aligned = align(prompt, tokenizer, "offsets")
            offered = option_candidates(prompt, aligned, tokenizer)
            reference = logprobs_at(model, aligned.token_ids, [p - 1 for p in offered])
            for k, (span, score) in enumerate(zip(prompt.spans, scores, strict=True)):
                total += 1
                options = prompt.options[k]
                assert score.n_offered == (None if options is None else len(options))
                if score.offered_correct is None:
                    continue
                covered += 1
                pos = int(aligned.span_positions[k][0])
                cand = offered[pos]
                if covered <= 12:  # re-tokenizing the whole text per option is slow
                    for option, token in zip(sorted(options or ()), cand.token_ids, strict=True):
                        assert _swapped_token(tokenizer, prompt, span, option) == int(token), (
                            study, span.text, option)
                assert not score.truncated
                row = reference[pos - 1]
                assert score.offered_correct == bool(row[cand.token_ids].argmax() == cand.response)
        assert total > 0
        # Every discrete response of these studies has its options stated and one token each.
        assert covered / total > 0.95, (study, covered, total)


def test_tables_written_before_the_added_columns_still_read(tmp_path: Path) -> None:
    rows = {name: [] for name in RESPONSE_SCHEMA.names if name not in ADDED_COLUMNS}
    old_schema = pa.schema([f for f in RESPONSE_SCHEMA if f.name not in ADDED_COLUMNS])
    values = {"model": "m", "condition": "raw", "study": "s", "experiment": "e",
              "participant": "1", "line": 1, "response_index": 0, "response_text": "A",
              "n_tokens": 1, "nll": 0.5, "top1_correct": True, "entropy": 1.0,
              "context_tokens": 3, "truncated": False}
    for name in rows:
        rows[name].append(values[name])
    path = tmp_path / "old.parquet"
    pq.write_table(pa.Table.from_pydict(rows, schema=old_schema), path)
    table = read_table(path)
    assert table.schema.equals(RESPONSE_SCHEMA)
    assert table.column("offered_correct").null_count == 1
    frame = validate_responses(table.to_pandas().drop(columns=list(ADDED_COLUMNS)))
    assert frame["offered_correct"].isna().all()
    # An unfinished run's parts read the same way, so a run resumes across the change (its
    # older rows with nulls); any other difference from the schema is still refused.
    parts = tmp_path / "run" / "parts"
    parts.mkdir(parents=True)
    pq.write_table(pa.Table.from_pydict(rows, schema=old_schema),
                   parts / "part-00000000-00000000.parquet")
    combined = read_parts(tmp_path / "run")
    assert combined.schema.equals(RESPONSE_SCHEMA)
    assert combined.column("nll_temperature").null_count == 1
    retyped = old_schema.set(old_schema.get_field_index("line"), pa.field("line", pa.int32()))
    pq.write_table(pa.Table.from_pydict(rows, schema=retyped),
                   parts / "part-00000000-00000000.parquet")
    with pytest.raises(ResultsError, match="columns differ from the response schema"):
        read_parts(tmp_path / "run")


def test_accuracy_among_offered_options_in_the_analysis() -> None:
    registry = load_registry()
    design = SyntheticDesign(n_participants=20, seed=5)
    frame = synthetic_responses([registry["gemma-3-270m"]], design=design,
                                conditions=("raw", "discrete"))
    per_study, per_model = paper.accuracy(frame, condition="discrete", column="offered_correct")
    assert per_model["chance"].iloc[0] == pytest.approx(per_study["chance"].mean(), rel=1e-9)
    known = frame.loc[frame["condition"] == "discrete", "n_offered"].dropna().astype(float)
    assert (1 / known.max()) <= per_model["chance"].iloc[0] <= 1 / known.min()
    summary = summarize(results_from_frame(frame), registry, AnalysisOptions(n_boot=200))
    accuracy = summary.result("accuracy", AccuracyResult)
    assert accuracy is not None
    points = accuracy.points
    assert points is not None and points["condition"].iloc[0] == "discrete"
    row = points.iloc[0]
    # The offered accuracy is the mean of offered_correct per study, then over studies.
    discrete = frame[frame["condition"] == "discrete"].dropna(subset=["offered_correct"])
    expected = discrete.groupby("study")["offered_correct"].apply(
        lambda hits: hits.astype(float).mean()).mean()
    assert row["accuracy_offered"] == pytest.approx(expected, rel=1e-12)
    # Among a few options a model is right more often than over the whole vocabulary.
    assert row["accuracy_offered"] > row["accuracy"]
    assert row["offered_ci_low"] <= row["accuracy_offered"] <= row["offered_ci_high"]
    assert row["chance_offered"] == pytest.approx(per_model["chance"].iloc[0])
    assert int(row["n_offered_responses"]) == int(per_model["n_responses"].iloc[0])


def test_ray_rows_carry_option_sets_and_offered_scores() -> None:
    # Ray workers get prompts as plain columns and send scores back as JSON: nothing is lost.
    import json
    from dataclasses import asdict

    from psych201.scoring.ray_engine import _prompt_from_row, _prompt_row, _span_score
    from psych201.scoring.scorer import SpanScore

    text = "Choose A or B: <<A>>. Free: <<hello>>."
    a, h = text.index("<<A>>") + 2, text.index("<<hello>>") + 2
    spans = (ResponseSpan(0, a, a + 1, "A"), ResponseSpan(1, h, h + 5, "hello"))
    prompt = Prompt(text, spans, "discrete", options=(frozenset("AB"), None))
    row = _prompt_row(3, prompt)
    back = _prompt_from_row(row["text"], row["spans"], row["condition"], row["n_dropped"],
                            row["marker_aligned"], row["options"])
    assert back == prompt
    scores = [SpanScore(0, 1, 0.7, True, 1.2, 5, False, offered_correct=False, n_offered=2),
              SpanScore(1, 2, float("nan"), None, float("nan"), 9, True)]
    decoded = [_span_score(d) for d in json.loads(json.dumps([asdict(s) for s in scores]))]
    assert decoded[0] == scores[0]
    assert decoded[1].offered_correct is None and decoded[1].n_offered is None
    assert decoded[1].top1_correct is None and np.isnan(decoded[1].nll)
