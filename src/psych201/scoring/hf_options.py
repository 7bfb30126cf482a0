"""Option log-probs for closed-loop play, with each participant's key/value cache kept.

In closed loop a participant's transcript only grows: the prompt of its next choice is the
previous prompt plus a few dozen tokens. Re-running the whole transcript per choice (what the
engine contract does, one stateless request per sequence) costs a forward pass over every
token each time, quadratic in the session. Here each participant (``key``) keeps the transformer's
key/value cache of the tokens it has seen; a new prompt is tokenized whole (so its tokens are
the canonical ones), compared with the cached tokens, the cache cropped to their common prefix,
and only the rest run through the model.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch


@dataclass
class _Seen:
    tokens: list[int]
    cache: Any


class CachedOptionScorer:
    """``log P(candidate | context)`` per request, each key's context cached between calls."""

    def __init__(self, model: Any, *, device: str = "cpu") -> None:
        self._model = model
        self._model.to(device)
        self._model.eval()
        self._device = torch.device(device)
        self._seen: dict[str, _Seen] = {}
        # transformers renamed ``past_key_values`` to ``cache`` (5.x warns on the old name)
        forward = inspect.signature(type(model).forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    @torch.inference_mode()
    def score_options(
        self, items: Sequence[tuple[str, Sequence[int], Sequence[int]]]
    ) -> list[npt.NDArray[np.float64]]:
        """For each ``(key, context ids, candidate ids)``: the candidates' log-probs after the
        context (full softmax over the vocabulary), one key at a time."""
        from transformers import DynamicCache

        out = []
        for key, context, candidates in items:
            seen = self._seen.get(key)
            shared = 0
            if seen is not None:
                limit = min(len(seen.tokens), len(context) - 1)  # always run >= 1 new token
                while shared < limit and seen.tokens[shared] == context[shared]:
                    shared += 1
                if shared < len(seen.tokens):
                    # The transcript's tokens changed near the end (a merge across the join):
                    # drop the cached tail; where a layer cannot roll back (a sliding window
                    # past its length), start the participant's cache afresh.
                    try:
                        seen.cache.crop(shared - len(seen.tokens))
                    except (RuntimeError, ValueError, NotImplementedError):
                        seen, shared = None, 0
            if seen is None:
                seen = _Seen([], DynamicCache())
            new = torch.tensor([list(context[shared:])], dtype=torch.long, device=self._device)
            result = self._model(input_ids=new, use_cache=True, logits_to_keep=1,
                                 **{self._cache_arg: seen.cache})
            seen.cache = getattr(result, self._cache_arg)
            seen.tokens = list(context)
            self._seen[key] = seen
            logp = torch.log_softmax(result.logits[0, -1].float(), dim=-1)
            out.append(logp[torch.tensor(list(candidates), device=self._device)]
                       .double().cpu().numpy())
        return out
