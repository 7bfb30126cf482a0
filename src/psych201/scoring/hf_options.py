"""Option log-probs for closed-loop play: participants' key/value caches kept, batched in lockstep.

In closed loop a participant's transcript only grows: the prompt of its next choice is the
previous prompt plus a few dozen tokens. Re-running the whole transcript per choice (what the
engine contract does, one stateless request per sequence) costs a forward pass over every token
each time, quadratic in the session. Here each participant (``key``) keeps the key/value cache
of the tokens it has seen, and only the new tokens run through the model.

On a CPU a forward pass over a few tokens costs about what one over a few hundred does: it is
bound by reading the weights (a 270M model with a 262k vocabulary reads ~1 GB per pass). So the
participants of a call share one batched pass: their caches are the rows of one cache, each
row's new tokens right-aligned in the pass (pads where a row has fewer), and an explicit
attention mask over real positions says which cache slots a query sees. A slot stops being seen
when its token is superseded (the tokenizer merged it with what followed, e.g. ``<<`` and ``A``
into ``<<A``) or was a pad; rotary positions are the tokens' real positions. The mask applies
the model's own rules on those positions (causal; a sliding window where a layer has one), so
each row's log-probs are those of its transcript run alone, up to float rounding.

Sliding-window layers (15 of Gemma 3's 18) never look further back than their window, so their
cache drops the leading slots no row can see again; over a long session that keeps most of the
cache, and the attention over it, the size of the window rather than of the transcript. A row
whose transcript changes further back than that (not closed-loop play, but any caller) runs
again from its start.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from psych201.errors import UsageError

#: Rows (participants) per batched cache; more rows share a pass but hold more memory.
DEFAULT_ROWS = 32

#: Tokens a transcript may be rewritten back by without re-running its row; also the smallest
#: block of slots the sliding layers drop at once.
DEFAULT_MARGIN = 64

#: Below this many shared leading tokens (a task's instructions) a new batch does not run them
#: once for every row first.
_MIN_SHARED_PREFIX = 8


@dataclass
class _Row:
    """One participant in a batched cache: its live tokens and the cache slot of each."""

    key: str
    tokens: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    #: the first position a new token may have without keys the sliding layers dropped
    floor: int = 0


@dataclass
class _Batch:
    """Participants sharing one cache: per slot, whether it is live and its real position."""

    rows: list[_Row]
    cache: Any
    live: torch.Tensor  # (rows, slots) bool
    position: torch.Tensor  # (rows, slots) long
    #: leading slots the sliding layers' caches no longer hold
    dropped: int = 0


class CachedOptionScorer:
    """``log P(candidate | context)`` per request, each key's context cached between calls and
    the keys of a call run together, ``rows`` per batched pass (1: one participant at a time)."""

    def __init__(self, model: Any, *, device: str = "cpu", rows: int = DEFAULT_ROWS,
                 margin: int = DEFAULT_MARGIN) -> None:
        if rows < 1:
            raise UsageError(f"rows must be at least 1, not {rows}")
        self._model = model
        self._model.to(device)
        self._model.eval()
        self._device = torch.device(device)
        self._rows = rows
        self._batches: list[_Batch] = []
        # transformers renamed ``past_key_values`` to ``cache`` (5.x warns on the old name)
        forward = inspect.signature(type(model).forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"
        config = model.config
        types = list(getattr(config, "layer_types", None) or [])
        unknown = sorted(set(types) - {"full_attention", "sliding_attention"})
        if unknown:
            raise UsageError(f"mode cache does not know the attention of layer type(s) "
                             f"{', '.join(unknown)}; play this model with --mode batch")
        self._layer_types = sorted(set(types))
        self._window = getattr(config, "sliding_window", None)
        self._sliding = [i for i, t in enumerate(types) if t == "sliding_attention"]
        self._margin = max(1, margin)
        self._eager = getattr(config, "_attn_implementation", "sdpa") == "eager"
        self._pad = int(getattr(config, "pad_token_id", None) or 0)

    @torch.inference_mode()
    def score_options(
        self, items: Sequence[tuple[str, Sequence[int], Sequence[int]]]
    ) -> list[npt.NDArray[np.float64]]:
        """For each ``(key, context ids, candidate ids)``: the candidates' log-probs after the
        context (full softmax over the vocabulary)."""
        wanted = {key: (list(context), list(candidates)) for key, context, candidates in items}
        if len(wanted) != len(items):
            raise ValueError("a key appears twice in one call")
        # A batch none of whose participants is in this call has finished: free its memory.
        self._batches = [b for b in self._batches if any(r.key in wanted for r in b.rows)]
        placed = {r.key for b in self._batches for r in b.rows}
        fresh = [key for key, _, _ in items if key not in placed]
        for start in range(0, len(fresh), self._rows):
            keys = fresh[start:start + self._rows]
            self._batches.append(self._start([wanted[k][0] for k in keys], keys))
        logprobs: dict[str, npt.NDArray[np.float64]] = {}
        for batch in self._batches:
            contexts = [wanted[r.key][0] if r.key in wanted else None for r in batch.rows]
            every = torch.log_softmax(self._step(batch, contexts).float(), dim=-1)
            for i, row in enumerate(batch.rows):
                if row.key in wanted:
                    candidates = torch.tensor(wanted[row.key][1], device=self._device)
                    logprobs[row.key] = every[i, candidates].double().cpu().numpy()
        return [logprobs[key] for key, _, _ in items]

    def _start(self, contexts: list[list[int]], keys: list[str]) -> _Batch:
        """A batch for ``keys``; the leading tokens all their contexts share (the task's
        instructions) run once and are copied to every row."""
        shared = 0
        shortest = min(len(c) for c in contexts) - 1  # each row keeps >= 1 token to run
        while shared < shortest and len({c[shared] for c in contexts}) == 1:
            shared += 1
        if shared < _MIN_SHARED_PREFIX or len(keys) == 1:
            return self._empty(keys)
        batch = self._empty(keys[:1])
        self._step(batch, [contexts[0][:shared + 1]], keep=shared)
        repeats = len(keys)
        batch.cache.batch_repeat_interleave(repeats)
        prefix = batch.rows[0]
        batch.rows = [_Row(k, list(prefix.tokens), list(prefix.slots)) for k in keys]
        batch.live = batch.live.repeat(repeats, 1)
        batch.position = batch.position.repeat(repeats, 1)
        return batch

    def _step(self, batch: _Batch, contexts: Sequence[list[int] | None],
              keep: int | None = None) -> torch.Tensor:
        """Run each row's new tokens (rows with ``None`` idle); the last logits per row.
        ``keep`` runs only the first ``keep`` tokens of a context (no logits needed)."""
        news: list[list[int]] = []
        starts: list[int] = []
        for i, (row, context) in enumerate(zip(batch.rows, contexts, strict=True)):
            if context is None:
                news.append([])
                starts.append(0)
                continue
            limit = min(len(row.tokens), len(context) - 1)  # always run >= 1 new token
            shared = 0
            while shared < limit and row.tokens[shared] == context[shared]:
                shared += 1
            if shared < row.floor:  # rewritten behind what the sliding layers still hold
                shared, row.floor = 0, 0
            if shared < len(row.slots):  # superseded tokens: their slots go dark
                batch.live[i, row.slots[shared:]] = False
            run = context[shared:] if keep is None else context[shared:keep]
            news.append(run)
            starts.append(shared)
            row.tokens = row.tokens[:shared] + run
            row.slots = row.slots[:shared]
        width = max(1, max(len(n) for n in news))
        n_rows, n_slots = batch.live.shape
        ids = torch.full((n_rows, width), self._pad, dtype=torch.long)
        position = torch.zeros((n_rows, width), dtype=torch.long)
        live = torch.zeros((n_rows, width), dtype=torch.bool)
        for i, (run, start) in enumerate(zip(news, starts, strict=True)):
            if run:  # right-aligned: every row's last token is in the last column
                ids[i, width - len(run):] = torch.tensor(run)
                position[i, width - len(run):] = torch.arange(start, start + len(run))
                live[i, width - len(run):] = True
                batch.rows[i].slots += list(range(n_slots + width - len(run), n_slots + width))
        ids, position, live = (t.to(self._device) for t in (ids, position, live))
        all_live = torch.cat([batch.live, live], dim=1)
        all_position = torch.cat([batch.position, position], dim=1)
        full = self._visible(all_live, all_position, live, position)
        mask: torch.Tensor | dict[str, torch.Tensor] = full
        if "sliding_attention" in self._layer_types and self._window:
            mask = {"full_attention": full, "sliding_attention": self._visible(
                all_live[:, batch.dropped:], all_position[:, batch.dropped:], live, position,
                window=self._window)}
        result = self._model(input_ids=ids, position_ids=position, use_cache=True,
                             attention_mask=mask, logits_to_keep=1,
                             **{self._cache_arg: batch.cache})
        batch.cache = getattr(result, self._cache_arg)
        batch.live, batch.position = all_live, all_position
        self._drop_unseen(batch)
        return result.logits[:, -1]

    def _visible(self, key_live: torch.Tensor, key_position: torch.Tensor,
                 query_live: torch.Tensor, query_position: torch.Tensor,
                 window: int | None = None) -> torch.Tensor:
        """A (rows, 1, queries, keys) mask: a live query sees live keys at positions up to its
        own (and within ``window``); a pad sees only itself, so it stays finite."""
        distance = query_position[:, :, None] - key_position[:, None, :]
        seen = key_live[:, None, :] & query_live[:, :, None] & (distance >= 0)
        if window is not None:
            seen &= distance < window
        n_queries, n_keys = query_live.shape[1], key_live.shape[1]
        own = torch.zeros((n_queries, n_keys), dtype=torch.bool, device=self._device)
        own[:, n_keys - n_queries:] = torch.eye(n_queries, dtype=torch.bool, device=self._device)
        return self._format((seen | ((~query_live)[:, :, None] & own[None]))[:, None])

    def _drop_unseen(self, batch: _Batch) -> None:
        """Drop the sliding layers' leading slots that no row's next tokens can see (dead, or
        further back than the window plus the margin), in blocks of at least the margin."""
        layers = getattr(batch.cache, "layers", None)
        if not self._sliding or not self._window or layers is None:
            return
        lengths = torch.tensor([len(r.tokens) for r in batch.rows], device=self._device)
        threshold = lengths - self._window - self._margin
        block = slice(batch.dropped, batch.live.shape[1])
        unseen = ~batch.live[:, block] | (batch.position[:, block] < threshold[:, None])
        count = int(unseen.all(dim=0).int().cumprod(dim=0).sum())
        if count < self._margin:
            return
        block = slice(batch.dropped, batch.dropped + count)
        last = torch.where(batch.live[:, block], batch.position[:, block], -1).amax(dim=1)
        for row, position in zip(batch.rows, last.tolist(), strict=True):
            if position >= 0:
                row.floor = max(row.floor, position + self._window)
        for index in self._sliding:
            layer = layers[index]
            layer.keys, layer.values = layer.keys[:, :, count:], layer.values[:, :, count:]
        batch.dropped += count

    def _format(self, mask: torch.Tensor) -> torch.Tensor:
        if not self._eager:
            return mask
        dtype = self._model.dtype
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            ~mask, torch.finfo(dtype).min)

    def _empty(self, keys: list[str]) -> _Batch:
        from transformers import DynamicCache

        # Without a config every layer keeps all its slots: the mask, not the cache, applies
        # a sliding window (slots are not positions here).
        return _Batch([_Row(k) for k in keys], DynamicCache(),
                      torch.zeros((len(keys), 0), dtype=torch.bool, device=self._device),
                      torch.zeros((len(keys), 0), dtype=torch.long, device=self._device))
