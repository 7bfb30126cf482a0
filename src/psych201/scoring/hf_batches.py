"""Batches of the Hugging Face engine: greedy padded batches, the tokens a padded or a packed
(one padding-free row) batch costs, and out-of-memory detection for the back-off."""

from __future__ import annotations

import gc

import torch

from psych201.scoring.engine import ScoringRequest


def padded_batches(
    order: list[int], lengths: list[int], budget: int, max_padding: float = 1.0
) -> list[list[int]]:
    """Greedy batches over ``order`` (longest first) with padded size ``n * longest <= budget``.

    A request joins a batch only if padding it to the batch's longest member wastes at most
    ``max_padding`` of that length: padded tokens cost as much compute as real ones.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]
        too_big = (len(current) + 1) * width > budget
        too_short = lengths[i] < (1.0 - max_padding) * width
        if current and (too_big or too_short):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def padded_tokens(batch: list[ScoringRequest]) -> int:
    """Tokens a right-padded batch runs (padding costs as much as real tokens)."""
    return len(batch) * max(int(r.token_ids.size) for r in batch)


def packed_tokens(batch: list[ScoringRequest]) -> int:
    """Tokens a packed batch runs (no padding)."""
    return sum(int(r.token_ids.size) for r in batch)


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
