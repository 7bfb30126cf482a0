"""The calibration and population columns: NLL at each softmax temperature, offered options.

References are independent: the model's own ``forward`` logits through ``torch.log_softmax`` in
float64 for every temperature, and the summing of token values per response by hand.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

from paths import DATA, needs_data
from psych201.data.readers import iter_sessions
from psych201.data.records import ResponseSpan
from psych201.pipeline.setup import temperature_record
from psych201.prompts.conditions import make_condition
from psych201.prompts.records import Prompt
from psych201.scoring.align import align
from psych201.scoring.engine import (
    FULL_SOFTMAX,
    TEMPERATURE_GRID,
    TOPK_ONLY_TEMPERATURES,
    EngineInfo,
    ScoringRequest,
    TemperatureSupport,
    TokenScores,
)
from psych201.scoring.hf import HFEngine
from psych201.scoring.hf_head import temperatures_on
from psych201.scoring.scorer import SessionScorer, WindowConfig, option_candidates
from tiny_models import byte_bpe_tokenizer, tiny_gemma3, tiny_llama

GRID = TEMPERATURE_GRID
ONE = GRID.index(1.0)


def reference(model: Any, req: ScoringRequest) -> np.ndarray:
    """``[targets, temperatures]``: log softmax(logits / T)[target] from the model's forward."""
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(req.token_ids)[None]).logits[0].double()
    rows = logits[torch.from_numpy(req.target_positions - 1)]
    target = torch.from_numpy(req.token_ids[req.target_positions])
    out = [torch.log_softmax(rows / t, dim=-1)[torch.arange(len(target)), target] for t in
           req.temperatures]
    return torch.stack(out, dim=1).numpy()


def requests(vocab: int, lengths: Sequence[int], temperatures: tuple[float, ...] = GRID
             ) -> list[ScoringRequest]:
    rng = np.random.default_rng(1)
    out = []
    for i, n in enumerate(lengths):
        ids = rng.integers(0, vocab, size=n).astype(np.int64)
        targets = np.sort(rng.choice(np.arange(1, n), size=min(5, n - 1), replace=False))
        out.append(ScoringRequest(f"r{i}", ids, targets.astype(np.int64),
                                  temperatures=temperatures))
    return out


@pytest.mark.parametrize("packing", ["off", "auto"])
@pytest.mark.parametrize("builder", [tiny_llama, tiny_gemma3])
def test_temperature_logprobs_equal_log_softmax_of_scaled_logits(builder: Any, packing: str
                                                                 ) -> None:
    tokenizer = byte_bpe_tokenizer()
    model = builder(tokenizer)
    # Small head chunks: several chunks per batch, each with its own scratch buffer.
    engine = HFEngine(model, packing=packing, head_chunk_elems=3 * len(tokenizer),
                      temperatures="on")
    assert (engine.packing is None) == (packing == "off")
    reqs = requests(len(tokenizer), [17, 30, 9])
    for req, got in zip(reqs, engine.score(reqs), strict=True):
        assert got.temperature_logprobs is not None
        assert got.temperature_logprobs.shape == (req.target_positions.size, len(GRID))
        np.testing.assert_allclose(got.temperature_logprobs, reference(model, req), atol=2e-5)
        # T = 1 is the plain log-prob itself.
        np.testing.assert_array_equal(got.temperature_logprobs[:, ONE], got.logprobs)
    assert engine.info.temperatures == FULL_SOFTMAX
    assert engine.info.record()["extra"]["temperature_logprobs"] == "full softmax"


def test_requests_ask_for_their_own_temperatures_or_none() -> None:
    tokenizer = byte_bpe_tokenizer()
    model = tiny_llama(tokenizer)
    engine = HFEngine(model, packing="off", temperatures=True)
    plain, few, grid = (requests(len(tokenizer), [12], t)[0] for t in ((), (2.0, 0.5), GRID))
    few = ScoringRequest("few", few.token_ids, few.target_positions, temperatures=(2.0, 0.5))
    got = engine.score([plain, few, grid])
    assert got[0].temperature_logprobs is None
    assert got[1].temperature_logprobs is not None
    np.testing.assert_allclose(got[1].temperature_logprobs, reference(model, few), atol=2e-5)
    with pytest.raises(ValueError, match="positive"):
        engine.score([ScoringRequest("bad", few.token_ids, few.target_positions,
                                     temperatures=(0.0,))])
    off = HFEngine(model, packing="off", temperatures="off")
    assert off.score([grid])[0].temperature_logprobs is None
    support = off.info.temperatures
    assert support is not None and not support.available
    assert support.missing_because is not None and support.missing_because.startswith("off")
    # the manifest keeps its wording, and says there is no grid and why
    assert off.info.record()["extra"]["temperature_logprobs"].startswith("null: off")
    assert temperature_record(off.info) == {"temperature_grid": None,
                                            "temperature_reason": support.missing_because}
    assert [temperatures_on(v) for v in ("on", "off", True, "false")] == [True, False, True, False]
    # auto: on where the softmax over the vocabulary is cheap (CUDA), off on a CPU.
    assert temperatures_on("auto", torch.device("cuda", 0))
    assert not temperatures_on("auto", torch.device("cpu"))
    assert HFEngine(model).score([grid])[0].temperature_logprobs is None  # CPU default
    with pytest.raises(ValueError, match="auto, on, off"):
        temperatures_on("maybe")


class _Recording:
    """Wraps an engine and keeps every request and its scores (the windows the scorer sent)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: list[tuple[ScoringRequest, TokenScores]] = []

    @property
    def info(self) -> EngineInfo:
        return self.inner.info  # type: ignore[no-any-return]

    def score(self, reqs: Sequence[ScoringRequest]) -> list[TokenScores]:
        out = self.inner.score(reqs)
        self.seen += list(zip(reqs, out, strict=True))
        return out  # type: ignore[no-any-return]


def _prompt(tokenizer: Any) -> Prompt:
    long = " ".join(["safe lottery win lose"] * 8)  # longer than a test window
    text = "".join(f"Trial {k}: you press <<{'ABCD'[k % 4]}>> and win {k} points. "
                   for k in range(12)) + f"You recall <<{long}>>."
    spans, at = [], 0
    for i in range(13):
        start = text.index("<<", at) + 2
        end = text.index(">>", start)
        spans.append(ResponseSpan(i, start, end, text[start:end]))
        at = end
    options = tuple(frozenset("ABCD") if i < 12 else None for i in range(13))
    return Prompt(text, tuple(spans), "raw", options=options)


def test_windowed_scores_equal_the_reference_and_sum_per_response() -> None:
    tokenizer = byte_bpe_tokenizer()
    model = tiny_llama(tokenizer)
    engine = _Recording(HFEngine(model, temperatures="on"))
    prompt = _prompt(tokenizer)
    scorer = SessionScorer(tokenizer, engine, window=WindowConfig(max_tokens=24, overlap=6),
                           temperatures=GRID)
    (spans,) = scorer.score([prompt])
    assert len(engine.seen) > 3  # really windowed
    for req, got in engine.seen:
        assert got.temperature_logprobs is not None
        np.testing.assert_allclose(got.temperature_logprobs, reference(model, req), atol=2e-5)
    for span in spans:
        assert span.nll_temperature is not None and len(span.nll_temperature) == len(GRID)
        assert span.nll_temperature[ONE] == pytest.approx(span.nll, abs=1e-9)
    # Per response: the sum over its tokens, also when its tokens span windows.
    per_position: dict[int, np.ndarray] = {}
    a = align(prompt, tokenizer)
    plan = scorer._plan(a)
    for win, (_, got) in zip(plan, engine.seen, strict=True):
        assert got.temperature_logprobs is not None
        for j, t in enumerate(win.targets.tolist()):
            per_position[t] = got.temperature_logprobs[j]
    last = set(a.span_positions[-1].tolist())
    assert sum(bool(set(w.targets.tolist()) & last) for w in plan) > 1  # split over windows
    for span, pos in zip(spans, a.span_positions, strict=True):
        expected = -np.sum([per_position[int(p)] for p in pos], axis=0)
        np.testing.assert_allclose(span.nll_temperature, expected, rtol=1e-12)


class _TopK:
    """A top-k engine: plain log-probs only, no temperatures, no candidates."""

    def __init__(self, inner: HFEngine) -> None:
        self.inner = inner

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("topk", "m", "float32", "cpu", None,
                          temperatures=TemperatureSupport("top-k only"))

    def score(self, reqs: Sequence[ScoringRequest]) -> list[TokenScores]:
        return [TokenScores(s.key, s.logprobs, s.top1, s.entropy) for s in self.inner.score(reqs)]


def test_offered_options_and_their_logprobs() -> None:
    tokenizer = byte_bpe_tokenizer()
    model = tiny_llama(tokenizer)
    prompt = _prompt(tokenizer)
    hf = HFEngine(model, temperatures="on")
    (spans,) = SessionScorer(tokenizer, hf, temperatures=GRID).score([prompt])
    a = align(prompt, tokenizer)
    offered = option_candidates(prompt, a, tokenizer)
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(a.token_ids)[None]).logits[0].double()
    full = torch.log_softmax(logits, dim=-1).numpy()
    filled = 0
    for span, pos in zip(spans, a.span_positions, strict=True):
        if span.offered_correct is None:
            assert span.offered_options is None and span.offered_logprobs is None
            continue
        filled += 1
        choice = offered[int(pos[0])]
        assert span.offered_options == ("A", "B", "C", "D") == choice.options
        assert span.offered_logprobs is not None
        np.testing.assert_allclose(span.offered_logprobs, full[pos[0] - 1, choice.token_ids],
                                   atol=2e-5)
        best = span.offered_options[int(np.argmax(span.offered_logprobs))]
        assert span.offered_correct == (best == prompt.spans[span.index].text)
    assert filled == 12
    # An engine without the whole distribution leaves all three null.
    (topk,) = SessionScorer(tokenizer, _TopK(hf), temperatures=GRID).score([prompt])
    assert all(s.nll_temperature is None and s.offered_options is None for s in topk)
    assert [s.nll for s in topk] == pytest.approx([s.nll for s in spans], abs=1e-6)


@needs_data
def test_real_discrete_sessions_fill_offered_options_where_options_are_stated() -> None:
    tokenizer = byte_bpe_tokenizer()
    model = tiny_llama(tokenizer, max_positions=1 << 16)  # no windows: one pass
    sessions = list(itertools.islice(iter_sessions(DATA / "franke2024bayesian"), 3))
    prompts = make_condition("discrete").render_study(sessions)
    scorer = SessionScorer(tokenizer, HFEngine(model, temperatures="on"), temperatures=GRID)
    stated = filled = 0
    for prompt, spans in zip(prompts, scorer.score(prompts), strict=True):
        for span, scored in zip(prompt.spans, spans, strict=True):
            if scored.n_offered is not None:
                stated += 1
            if scored.offered_options is not None:
                filled += 1
                assert scored.n_offered == len(scored.offered_options)
                assert span.text in scored.offered_options
                assert scored.offered_logprobs is not None
                assert len(scored.offered_logprobs) == len(scored.offered_options)
                assert np.all(np.asarray(scored.offered_logprobs) < 0)
            assert (scored.offered_options is None) == (scored.offered_correct is None)
            assert scored.nll_temperature is not None
    assert stated > 0 and filled == stated


def test_the_manifest_records_temperature_support_in_its_old_wording() -> None:
    """The typed support is written as manifests always spelled it; an engine that says nothing
    gains no key, and its manifest says there is no grid."""
    silent = EngineInfo("quiet", "m", "float32", "cpu", None, extra={"a": 1})
    assert silent.record()["extra"] == {"a": 1} and "temperatures" not in silent.record()
    assert temperature_record(silent) == {"temperature_grid": None,
                                          "temperature_reason": "the engine does not report them"}
    topk = EngineInfo("topk", "m", "float32", "cpu", None, temperatures=TOPK_ONLY_TEMPERATURES)
    assert topk.record()["extra"]["temperature_logprobs"] == (
        "null: top-k log-probs only; a softmax temperature needs every logit")
    full = EngineInfo("full", "m", "float32", "cpu", None, temperatures=FULL_SOFTMAX)
    assert temperature_record(full) == {"temperature_grid": list(TEMPERATURE_GRID),
                                        "temperature_reason": None}
