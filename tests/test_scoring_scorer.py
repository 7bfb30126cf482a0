"""SessionScorer: span sums, long-session windows, per-span context and truncation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from paths import DATA
from psych201.data.markers import parse_responses
from psych201.data.readers import iter_sessions
from psych201.data.variants import discrete_variant
from psych201.prompts.records import Prompt
from psych201.scoring.align import AlignedPrompt, align
from psych201.scoring.hf import HFEngine
from psych201.scoring.scorer import SessionScorer, SpanScore, WindowConfig, plan_windows
from tiny_models import byte_bpe_tokenizer, tiny_llama


def synthetic(n: int, spans: list[tuple[int, int]], n_prefix: int = 1) -> AlignedPrompt:
    positions = tuple(np.arange(a, b, dtype=np.int64) for a, b in spans)
    return AlignedPrompt(
        token_ids=np.arange(n, dtype=np.int64),
        span_positions=positions,
        span_first=np.asarray([a for a, _ in spans], dtype=np.int64),
        mode="offsets",
        n_prefix=n_prefix,
    )


def test_window_plan_covers_every_target_once_with_overlap() -> None:
    spans = [(s, s + 2) for s in range(5, 995, 10)]
    aligned = synthetic(1000, spans)
    windows = plan_windows(aligned, max_tokens=100, overlap=30)
    seen = np.concatenate([w.targets for w in windows])
    assert sorted(seen.tolist()) == sorted(np.concatenate(aligned.span_positions).tolist())
    assert len(set(seen.tolist())) == seen.size
    for w in windows:
        length = w.end - w.start + (1 if w.start else 0)  # BOS re-added in front
        assert length <= 100
        assert w.start == 0 or w.targets[0] - w.start >= 30
        for a, b in spans:  # no span cut in two
            inside = np.isin(np.arange(a, b), w.targets)
            assert inside.all() or not inside.any()


def test_window_plan_splits_only_an_oversized_span() -> None:
    aligned = synthetic(400, [(10, 12), (50, 300), (310, 311)])
    windows = plan_windows(aligned, max_tokens=64, overlap=8)
    got = np.concatenate([w.targets for w in windows]).tolist()
    assert got == [*range(10, 12), *range(50, 300), 310]
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(aligned, max_tokens=64, overlap=62)


def long_prompt(n_chars: int = 6_000) -> Prompt:
    session = next(iter_sessions(DATA / "dezfouli2019"))
    text = session.text[:n_chars]
    text = text[: text.rfind(">>") + 2]
    return Prompt(text, parse_responses(text), "raw")


def direct_nll(model: Any, ids: np.ndarray, positions: np.ndarray) -> float:
    with torch.no_grad():
        logits = model(torch.from_numpy(ids)[None]).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    return float(-logp[torch.from_numpy(positions - 1), torch.from_numpy(ids[positions])].sum())


def test_windows_on_a_long_real_session_match_direct_computation() -> None:
    tok = byte_bpe_tokenizer()
    model = tiny_llama(tok, max_positions=4096)
    prompt = long_prompt()
    window = WindowConfig(max_tokens=256, overlap=96)
    scorer = SessionScorer(tok, HFEngine(model), window=window)
    aligned = align(prompt, tok)
    assert aligned.token_ids.size > 3 * 256
    scores = scorer.score([prompt])[0]
    assert [s.index for s in scores] == [s.index for s in prompt.spans]
    ids = aligned.token_ids
    truncated = 0
    for score, pos in zip(scores, aligned.span_positions, strict=True):
        assert score.n_tokens == pos.size
        if not score.truncated:
            assert score.context_tokens == pos[0]
            window_ids, window_pos = ids[: pos[-1] + 1], pos
        else:
            truncated += 1
            assert 96 + 1 <= score.context_tokens <= 256  # overlap + BOS at least
            start = int(pos[0]) - (score.context_tokens - 1)
            window_ids = np.concatenate([ids[:1], ids[start : pos[-1] + 1]])
            window_pos = pos - start + 1
            assert window_ids.size <= 256
        assert math.isclose(score.nll, direct_nll(model, window_ids, window_pos), abs_tol=1e-4)
    assert truncated > len(scores) // 2


def test_model_context_caps_windows_and_big_windows_change_nothing() -> None:
    tok = byte_bpe_tokenizer()
    prompt = long_prompt(3_000)
    small = tiny_llama(tok, max_positions=300)
    capped = SessionScorer(tok, HFEngine(small))
    assert capped.max_tokens == 300
    assert any(s.truncated for s in capped.score([prompt])[0])
    model = tiny_llama(tok, max_positions=4096)
    whole = SessionScorer(tok, HFEngine(model)).score([prompt])[0]
    roomy = SessionScorer(tok, HFEngine(model), window=WindowConfig(max_tokens=4096, overlap=10))
    for a, b in zip(whole, roomy.score([prompt])[0], strict=True):
        assert a == b or (math.isnan(a.entropy) and a.n_tokens == b.n_tokens == 0)
        assert not a.truncated


def test_span_score_fields_on_real_sessions() -> None:
    tok = byte_bpe_tokenizer()
    scorer = SessionScorer(tok, HFEngine(tiny_llama(tok)))
    # haridi2024: empty recall responses; the discrete variant keeps the original indices.
    session = next(iter_sessions(DATA / "haridi2024memorySemanticContext"))
    text = session.text[:16_000]
    text = text[: text.rfind(">>") + 2]
    raw = Prompt(text, parse_responses(text), "raw")
    scores = scorer.score([raw])[0]
    empty = [s for s, span in zip(scores, raw.spans, strict=True) if span.text == ""]
    assert empty, "expected empty responses in this prefix"
    for s in empty:
        assert (s.n_tokens, s.nll, s.top1_correct) == (0, 0.0, None)
        assert math.isnan(s.entropy)
    for s in scores:
        if s.n_tokens == 1:
            assert isinstance(s.top1_correct, bool)
        elif s.n_tokens > 1:
            assert s.top1_correct is None and s.nll > 0

    # jansen2021logic: numeric self-estimates first, then letters; only the letters stay.
    js = next(iter_sessions(DATA / "jansen2021logic"))
    variant = discrete_variant(js)
    prompt = Prompt(variant.text, variant.responses, "discrete")
    got = scorer.score([prompt])[0]
    assert [s.index for s in got] == [s.index for s in variant.responses]
    assert got[0].index == 4 and all(s.n_tokens >= 1 for s in got)


def test_unmatched_paper_spans_are_nan_and_unknown_mode_fails() -> None:
    tok = byte_bpe_tokenizer()
    engine = HFEngine(tiny_llama(tok))
    prompt = Prompt(
        "Pick:\n<<A>> then <<B>> end", parse_responses("Pick:\n<<A>> then <<B>> end"), "paper"
    )
    first, second = SessionScorer(tok, engine, alignment="paper").score([prompt])[0]
    assert first.n_tokens == 0 and math.isnan(first.nll)
    assert second.n_tokens >= 1 and second.nll > 0
    with pytest.raises(ValueError, match="alignment"):
        SessionScorer(tok, engine, alignment="fuzzy")
    with pytest.raises(ValueError, match="max_tokens"):
        WindowConfig(max_tokens=2)
    assert SpanScore.__dataclass_params__.frozen  # type: ignore[attr-defined]
