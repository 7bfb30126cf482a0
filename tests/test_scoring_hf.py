"""The transformers engine: head at target positions only, batching, back-off, probe."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch

from paths import DATA
from psych201.data.readers import iter_sessions
from psych201.data.variants import paper_variant
from psych201.prompts.records import Prompt
from psych201.scoring.engine import Engine, ScoringRequest
from psych201.scoring.engine_util import EngineError
from psych201.scoring.hf import HFEngine
from psych201.scoring.hf_batches import padded_batches
from psych201.scoring.scorer import SessionScorer
from tiny_models import byte_bpe_tokenizer, tiny_gemma3, tiny_llama


def reference(model: Any, req: ScoringRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full logits through the model's own forward: log-prob, arg-max, entropy per target."""
    with torch.no_grad():
        logits = model(torch.from_numpy(req.token_ids)[None]).logits[0].double()
    rows = logits[torch.from_numpy(req.target_positions - 1)]
    logp = torch.log_softmax(rows, -1)
    picked = logp[torch.arange(len(rows)), torch.from_numpy(req.token_ids[req.target_positions])]
    entropy = -(logp.exp() * logp).sum(-1)
    return picked.numpy(), rows.argmax(-1).numpy(), entropy.numpy()


def random_requests(vocab: int, lengths: list[int], seed: int = 0) -> list[ScoringRequest]:
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(lengths):
        ids = rng.integers(0, vocab, n).astype(np.int64)
        targets = np.sort(rng.choice(np.arange(1, n), size=min(n - 1, 7), replace=False))
        out.append(ScoringRequest(f"r{i}", ids, targets.astype(np.int64)))
    return out


@pytest.mark.parametrize("builder", [tiny_llama, tiny_gemma3])
def test_head_at_targets_equals_full_forward(builder: Any) -> None:
    tok = byte_bpe_tokenizer()
    model = builder(tok)
    engine = HFEngine(model)
    assert isinstance(engine, Engine)
    if builder is tiny_gemma3:
        assert engine.info.extra["logit_transform"] == "softcap(5)"
    requests = random_requests(len(tok), [40, 9, 23])
    for req, got in zip(requests, engine.score(requests), strict=True):
        logp, top1, entropy = reference(model, req)
        assert got.key == req.key
        np.testing.assert_allclose(got.logprobs, logp, atol=1e-5)
        np.testing.assert_array_equal(got.top1, top1)
        np.testing.assert_allclose(got.entropy, entropy, atol=1e-5)


def test_softcap_is_honoured() -> None:
    tok = byte_bpe_tokenizer()
    capped = HFEngine(tiny_gemma3(tok, softcap=5.0))
    uncapped = HFEngine(tiny_gemma3(tok, softcap=None))  # same seed, same weights
    req = random_requests(len(tok), [30])
    a, b = capped.score(req)[0], uncapped.score(req)[0]
    assert not np.allclose(a.logprobs, b.logprobs, atol=1e-3)


def test_probe_rejects_an_unknown_output_transform() -> None:
    tok = byte_bpe_tokenizer()
    model = tiny_llama(tok)
    original = type(model).forward

    def scaled(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        out.logits = out.logits * 3.0  # a transform the engine does not know about
        return out

    model.forward = scaled.__get__(model)
    with pytest.raises(EngineError, match="output layer"):
        HFEngine(model)


def test_requests_are_checked() -> None:
    tok = byte_bpe_tokenizer()
    engine = HFEngine(tiny_llama(tok, max_positions=64))
    ids = np.arange(10, dtype=np.int64)
    with pytest.raises(ValueError, match="target positions"):
        engine.score([ScoringRequest("a", ids, np.array([0], dtype=np.int64))])
    long = np.zeros(65, dtype=np.int64)
    with pytest.raises(ValueError, match="context"):
        engine.score([ScoringRequest("b", long, np.array([5], dtype=np.int64))])
    empty = engine.score([ScoringRequest("c", ids, np.zeros(0, dtype=np.int64))])[0]
    assert empty.logprobs.size == 0


def test_packing_respects_the_budget() -> None:
    lengths = [100, 90, 50, 10, 10, 300]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches = padded_batches(order, lengths, 200)
    assert sorted(itertools.chain(*batches)) == list(range(6))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 200
    # With a padding cap, 50 does not join 90 (44% padding) but 90 joins 100.
    assert padded_batches(order, lengths, 1_000, max_padding=0.25) == [[5], [0, 1], [2], [3, 4]]


def test_out_of_memory_backs_off_by_splitting(monkeypatch: pytest.MonkeyPatch) -> None:
    tok = byte_bpe_tokenizer()
    engine = HFEngine(tiny_llama(tok), batch_tokens=10_000, max_padding=1.0)
    requests = random_requests(len(tok), [50, 40, 30, 20])
    expected = [s.logprobs for s in engine.score(requests)]
    real_forward = engine._forward
    sizes: list[int] = []

    def fragile(batch: list[ScoringRequest]) -> Any:
        sizes.append(len(batch))
        if len(batch) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real_forward(batch)

    monkeypatch.setattr(engine, "_forward", fragile)
    got = [s.logprobs for s in engine.score(requests)]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert sizes == [4, 2, 1, 1, 2, 1, 1]  # halves until each piece fits
    assert engine.batch_tokens < 10_000  # later batches start smaller

    def hopeless(batch: list[ScoringRequest]) -> Any:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")

    monkeypatch.setattr(engine, "_forward", hopeless)
    with pytest.raises(EngineError, match="out of memory on one sequence of 50 tokens"):
        engine.score(requests[:1])


def _real_prompts() -> list[Prompt]:
    """A long dezfouli2019 session (a prefix, for time) beside short sessions of other studies."""
    prompts = []
    for study, n_chars in [
        ("dezfouli2019", 8_000),
        ("guenther2024substitutions", 1_500),
        ("alsobay2025publicGoodsGame", 2_500),
        ("jansen2021logic", 1_000),
        ("little2024functionestimation", 1_500),
        ("schiekiera2025metascience", 1_500),
    ]:
        session = next(iter_sessions(DATA / study))
        variant = paper_variant(session, max_chars=n_chars)
        prompts.append(Prompt(variant.text, variant.responses, "paper"))
    return prompts


def test_batch_invariance_on_real_sessions() -> None:
    """Same numbers (≤ 1e-5 nats, fp32) one at a time, batched, and long-beside-short."""
    tok = byte_bpe_tokenizer()
    model = tiny_llama(tok, max_positions=16_384)
    prompts = _real_prompts()
    one_by_one = SessionScorer(tok, HFEngine(model, batch_tokens=1)).score(prompts)
    batched_engine = HFEngine(model, batch_tokens=200_000, max_padding=1.0)
    batched = SessionScorer(tok, batched_engine).score(prompts)
    long_alone = SessionScorer(tok, HFEngine(model, batch_tokens=1)).score(prompts[:1])
    # Long session first in the list, batched with everything else (padding of the others).
    assert len(prompts[0].spans) > 100
    n_spans = 0
    for a, b in zip(one_by_one, batched, strict=True):
        assert [s.index for s in a] == [s.index for s in b]
        for x, y in zip(a, b, strict=True):
            if x.n_tokens:
                assert abs(x.nll - y.nll) <= 1e-5, (x, y)
                assert x.top1_correct == y.top1_correct
                n_spans += 1
    for x, y in zip(long_alone[0], batched[0], strict=True):
        if x.n_tokens:
            assert abs(x.nll - y.nll) <= 1e-5
    assert n_spans > 100


def test_bfloat16_close_to_float32() -> None:
    tok = byte_bpe_tokenizer()
    model = tiny_llama(tok)
    requests = random_requests(len(tok), [64])
    ref = HFEngine(model).score(requests)[0]
    low = HFEngine(tiny_llama(tok).to(torch.bfloat16)).score(requests)[0]
    assert HFEngine(tiny_llama(tok).to(torch.bfloat16)).info.dtype == "bfloat16"
    assert low.logprobs.dtype == np.float64
    np.testing.assert_allclose(low.logprobs, ref.logprobs, atol=0.3)
