"""Padding-free packing: many sequences in one row, attention that never crosses between them.

A packed row concatenates sequences; ``position_ids`` restart at 0 for each one, so rotary
embeddings see the same positions as when the sequence runs alone. Attention must also stay
inside each sequence. Two ways are exact here:

- ``flash_attention_2`` (CUDA, half precision, when the ``flash-attn`` package is installed):
  transformers hands the kernel the sequence boundaries (``cu_seq_lens``) and the kernel runs
  each sequence on its own, sliding windows natively.
- :func:`varlen_sdpa` (everywhere else), registered with transformers as
  :data:`ATTENTION_NAME`: PyTorch's ``scaled_dot_product_attention`` per sequence with its
  causal fast path (which skips the masked upper triangle). A sliding-window layer is computed
  in query blocks that only see the keys inside their window, so a 9k-token session under a
  512-token window costs ~9k × 1k scores instead of ~9k × 9k / 2; transformers' dense masked
  path computes every score and throws most away.

No attention mask is materialised at all: a custom attention implementation makes transformers
skip mask creation (that mask would be rows² booleans per row).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

#: Name under which :func:`varlen_sdpa` is registered with transformers' AttentionInterface.
ATTENTION_NAME = "psych201_varlen_sdpa"

#: The keyword argument carrying the packed row's sequence boundaries (a tuple of ints).
SEGMENTS_KWARG = "psych201_segments"

_MASKS: dict[tuple[int, int, int, int, str], torch.Tensor] = {}


def register() -> None:
    """Make :data:`ATTENTION_NAME` a valid ``config._attn_implementation`` (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, varlen_sdpa)


def varlen_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention per packed sequence; ``query`` is ``[batch, heads, tokens, dim]``.

    Sequence boundaries come from ``kwargs[SEGMENTS_KWARG]`` (cumulative, starting at 0);
    without them each row is one sequence. Features this kernel does not implement (attention
    logit soft-capping, attention sinks, a padding mask) raise instead of being ignored.
    """
    if attention_mask is not None:
        raise ValueError(f"{ATTENTION_NAME}: takes no attention mask (pack instead of padding)")
    for unsupported in ("softcap", "s_aux", "sinks"):
        if kwargs.get(unsupported) is not None:
            raise ValueError(f"{ATTENTION_NAME}: does not implement {unsupported!r}")
    if dropout:
        raise ValueError(f"{ATTENTION_NAME}: scoring only, no dropout")
    n = int(query.shape[2])
    bounds: Sequence[int] = kwargs.get(SEGMENTS_KWARG) or (0, n)
    if bounds[-1] != n or int(key.shape[2]) != n:
        raise ValueError(f"{ATTENTION_NAME}: segments {bounds[-1]} != {n} tokens (no KV cache)")
    gqa = int(query.shape[1]) != int(key.shape[1])
    out = query.new_empty(query.shape[:3] + value.shape[3:])
    window = int(sliding_window) if sliding_window else None
    for a, b in itertools.pairwise(bounds):
        q, k, v = query[:, :, a:b], key[:, :, a:b], value[:, :, a:b]
        if window is None or b - a <= window:
            out[:, :, a:b] = _sdpa(q, k, v, None, scaling, gqa, causal=True)
        else:
            _windowed(q, k, v, out[:, :, a:b], window, scaling, gqa)
    return out.transpose(1, 2).contiguous(), None


#: Fewest queries per sliding-window block: tiny windows would otherwise mean many tiny calls.
MIN_BLOCK = 256


def _windowed(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    window: int,
    scaling: float | None,
    gqa: bool,
) -> None:
    """Sliding-window causal attention (query i sees keys i-window+1..i), block by block.

    A block of queries sees only its own keys and the ``window - 1`` keys before it, under a
    band mask; the masked scores outside the band are never computed.
    """
    n = int(q.shape[2])
    block = max(window, MIN_BLOCK)
    for qs in range(0, n, block):
        qe = min(qs + block, n)
        ks = max(0, qs - window + 1)
        if qs == 0 and qe <= window:
            mask, causal = None, True
        else:
            mask, causal = _band(qe - qs, qe - ks, qs - ks, window, q.device), False
        out[:, :, qs:qe] = _sdpa(q[:, :, qs:qe], k[:, :, ks:qe], v[:, :, ks:qe], mask, scaling,
                                 gqa, causal=causal)


def _band(rows: int, cols: int, offset: int, window: int, device: torch.device) -> torch.Tensor:
    """``[rows, cols]``: query r (key index r + offset) sees keys r+offset-window+1..r+offset."""
    cache_key = (rows, cols, offset, window, str(device))
    mask = _MASKS.get(cache_key)
    if mask is None:
        r = torch.arange(rows, device=device)[:, None] + offset
        c = torch.arange(cols, device=device)[None, :]
        mask = (c <= r) & (c > r - window)
        if len(_MASKS) > 64:
            _MASKS.clear()
        _MASKS[cache_key] = mask
    return mask


def _sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scaling: float | None,
    gqa: bool,
    *,
    causal: bool,
) -> torch.Tensor:
    return torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=causal, scale=scaling, enable_gqa=gqa
    )


def packing_supported(config: Any) -> str | None:
    """Why ``config``'s attention cannot be packed by :func:`varlen_sdpa`, or None if it can."""
    cfg = getattr(config, "text_config", None) or config
    if getattr(cfg, "attn_logit_softcapping", None):
        return "attention logit soft-capping"
    if getattr(cfg, "use_bidirectional_attention", False):
        return "bidirectional attention"
    if getattr(cfg, "attention_chunk_size", None):
        return "chunked attention"
    types = set(getattr(cfg, "layer_types", None) or ["full_attention"])
    unknown = types - {"full_attention", "sliding_attention"}
    if unknown:
        return f"layer types {sorted(unknown)}"
    return None


@contextmanager
def attention_implementation(configs: Sequence[Any], name: str) -> Iterator[None]:
    """Temporarily switch ``configs`` (shared by the model's modules) to attention ``name``.

    Temporary, so another engine over the same model object keeps the attention it chose.
    """
    before = [c._attn_implementation for c in configs]
    try:
        for c in configs:
            c._attn_implementation = name
        yield
    finally:
        for c, old in zip(configs, before, strict=True):
            c._attn_implementation = old


def bin_pack(order: Sequence[int], lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive rows of at most ``budget`` tokens (a longer sequence gets a row alone).

    With attention per sequence, a row's cost is the sum of its members' costs whatever their
    mix, so filling rows in ``order`` wastes nothing; no padding is ever added.
    """
    rows: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i in order:
        if current and used + lengths[i] > budget:
            rows.append(current)
            current, used = [], 0
        current.append(i)
        used += lengths[i]
    if current:
        rows.append(current)
    return rows
