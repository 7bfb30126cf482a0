"""Padding-free packing: packed rows score exactly as sequences scored one by one."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from paths import DATA, needs_data
from psych201.data.readers import discover_studies, iter_sessions
from psych201.data.variants import paper_variant
from psych201.pipeline import ScoreConfig, build_setup
from psych201.prompts.records import Prompt
from psych201.scoring import packing
from psych201.scoring.engine import EngineInfo, ScoringRequest, TokenScores
from psych201.scoring.engine_util import EngineError
from psych201.scoring.hf import HFEngine
from psych201.scoring.packing import ATTENTION_NAME, bin_pack, varlen_sdpa
from psych201.scoring.scorer import SessionScorer
from tiny_models import byte_bpe_tokenizer, save_tiny, tiny_gemma3, tiny_llama

STUDIES = [s.name for s in discover_studies(DATA)] if DATA.is_dir() else []


def tiny_qwen3(tokenizer: Any, *, seed: int = 0) -> Any:
    """A seeded random Qwen3: q/k norms, grouped-query attention, no soft-capping."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=4096,
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config).eval()


class Recorder:
    """An engine that passes requests through and keeps the scores it returned."""

    def __init__(self, engine: HFEngine) -> None:
        self.engine = engine
        self.scores: list[TokenScores] = []

    @property
    def info(self) -> EngineInfo:
        return self.engine.info

    def score(self, requests: Sequence[ScoringRequest]) -> list[TokenScores]:
        out = self.engine.score(requests)
        self.scores.extend(out)
        return out


BUILDERS = {"llama": tiny_llama, "gemma3": tiny_gemma3, "qwen3": tiny_qwen3}


@functools.lru_cache(maxsize=1)
def real_prompts() -> tuple[tuple[str, Prompt], ...]:
    """(study, prompt): the first session of every shared study, cut to the first 1,200,
    2,500 or 4,000 characters, whichever is the shortest that holds a response."""
    prompts: list[tuple[str, Prompt]] = []
    for study in STUDIES:
        for session in itertools.islice(iter_sessions(DATA / study), 1):
            for n_chars in (1_200, 2_500, 4_000):
                variant = paper_variant(session, max_chars=n_chars)
                if variant.responses:
                    prompts.append((study, Prompt(variant.text, variant.responses, "paper")))
                    break
    return tuple(prompts)


@pytest.mark.slow  # over 40 s on the shared 2-core machine
@needs_data
@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_packed_equals_unpacked_on_every_shared_study(arch: str) -> None:
    """Same NLL (≤ 1e-5 nats, fp32) whether sessions share a row or run padded, per study."""
    tok = byte_bpe_tokenizer()
    model = BUILDERS[arch](tok)
    assert {study for study, _ in real_prompts()} == set(STUDIES)
    prompts = [p for _, p in real_prompts()]
    packed = HFEngine(model, packing="on", batch_tokens=4096)
    padded = HFEngine(model, packing="off", batch_tokens=4096)
    assert packed.packing == ATTENTION_NAME and padded.packing is None
    seen_packed, seen_padded = Recorder(packed), Recorder(padded)
    got = SessionScorer(tok, seen_packed).score(prompts)
    want = SessionScorer(tok, seen_padded).score(prompts)
    # Per token: within 1e-5 nats.
    for g, w in zip(seen_packed.scores, seen_padded.scores, strict=True):
        np.testing.assert_allclose(g.logprobs, w.logprobs, atol=1e-5, rtol=0)
        np.testing.assert_allclose(g.entropy, w.entropy, atol=1e-5, rtol=0)
    # Per response: a long response's NLL (hundreds of nats) sums fp32 rounding of its tokens,
    # so it agrees within 1e-5 nats or fp32's relative precision, whichever is larger.
    n_spans = 0
    for g, w in zip(got, want, strict=True):
        nll_g = np.array([s.nll for s in g])
        nll_w = np.array([s.nll for s in w])
        np.testing.assert_allclose(nll_g, nll_w, atol=1e-5, rtol=1e-7)
        n_spans += len(g)
    assert n_spans > 100
    # Real packing happened: several sessions per row.
    lengths = [len(tok(p.text)["input_ids"]) for p in prompts]
    assert len(bin_pack(range(len(lengths)), lengths, 4096)) < len(prompts) / 2


def test_sliding_window_blocks_equal_dense_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gemma-3 sliding layers computed window block by window block = the dense masked path."""
    tok = byte_bpe_tokenizer()
    model = tiny_gemma3(tok, sliding_window=8)
    # Blocks of 16 queries: exercises first, middle and ragged last blocks on short inputs.
    monkeypatch.setattr(packing, "MIN_BLOCK", 16)
    rng = np.random.default_rng(3)
    # Lengths below, at, just above and many times the window; targets everywhere.
    reqs = []
    for i, n in enumerate([5, 8, 9, 16, 17, 64, 203]):
        ids = rng.integers(0, len(tok), n).astype(np.int64)
        reqs.append(ScoringRequest(f"r{i}", ids, np.arange(1, n, dtype=np.int64)))
    got = HFEngine(model, packing="on").score(reqs)
    want = HFEngine(model, packing="off").score(reqs)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.logprobs, w.logprobs, atol=1e-5, rtol=0)
        np.testing.assert_allclose(g.entropy, w.entropy, atol=1e-5, rtol=0)


def test_varlen_attention_never_crosses_a_boundary() -> None:
    """Changing one packed sequence leaves the other's attention output bit-for-bit alone."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 30, 8, generator=gen) for _ in range(3))
    module = torch.nn.Module()
    bounds = (0, 12, 30)
    out, _ = varlen_sdpa(module, q, k, v, None, psych201_segments=bounds, sliding_window=5)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 12:] += 1.0
    v2[:, :, 12:] -= 1.0
    out2, _ = varlen_sdpa(module, q, k2, v2, None, psych201_segments=bounds, sliding_window=5)
    assert torch.equal(out[:, :12], out2[:, :12])
    assert not torch.allclose(out[:, 12:], out2[:, 12:])
    # Alone, the second sequence restarts: same as attention over it by itself.
    alone, _ = varlen_sdpa(module, q[:, :, 12:], k[:, :, 12:], v[:, :, 12:], None,
                           sliding_window=5)
    torch.testing.assert_close(out[:, 12:], alone, atol=1e-6, rtol=0)


def test_bin_pack_fills_rows_without_padding() -> None:
    lengths = [10, 7, 5, 3, 20, 1]
    rows = bin_pack([4, 0, 1, 2, 3, 5], lengths, 15)
    assert rows == [[4], [0], [1, 2, 3], [5]]
    assert sorted(itertools.chain(*rows)) == list(range(6))


def test_packing_choice_auto_on_off_and_unsupported() -> None:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    tok = byte_bpe_tokenizer()
    assert HFEngine(tiny_llama(tok)).packing == ATTENTION_NAME  # auto packs on CPU
    assert HFEngine(tiny_llama(tok), packing=False).info.extra["packing"] == "off"
    with pytest.raises(ValueError, match="packing must be"):
        HFEngine(tiny_llama(tok), packing="sometimes")
    # Attention soft-capping (Gemma 2) is not something per-sequence SDPA reproduces.
    config = Gemma2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                          head_dim=16, sliding_window=8)
    gemma2 = Gemma2ForCausalLM(config).eval()
    assert HFEngine(gemma2).packing is None
    with pytest.raises(EngineError, match="soft-capping"):
        HFEngine(gemma2, packing="on")


def test_auto_falls_back_to_padding_when_the_packed_kernel_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transformers that calls the kernel differently must not break ``auto``: it pads."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("unexpected keyword argument")

    tok = byte_bpe_tokenizer()
    monkeypatch.setattr(packing, "varlen_sdpa", broken)
    try:
        engine = HFEngine(tiny_llama(tok))
        assert engine.packing is None
        assert engine.info.extra["packing"] == "off (packed probe failed: TypeError)"
        with pytest.raises(TypeError):
            HFEngine(tiny_llama(tok), packing="on")
    finally:
        monkeypatch.undo()
        packing.register()  # the real kernel again, for the tests that follow


def test_engine_args_packing_reaches_the_engine(tmp_path: Path) -> None:
    """``--engine-args packing=off`` turns packing off; the default packs."""
    tok = byte_bpe_tokenizer()
    folder = save_tiny(tiny_llama(tok), tok, tmp_path / "tiny")
    config = ScoreConfig(data=tmp_path, out=tmp_path / "run", model=str(folder))
    off = build_setup(config, engine="hf", engine_args={"packing": "off"})
    assert off.engine_info.extra["packing"] == "off"
    on = build_setup(config, engine="hf", engine_args={"packing": "on"})
    assert on.engine_info.extra["packing"] == ATTENTION_NAME
