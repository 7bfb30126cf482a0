"""What an OpenAI-compatible server answers to an echo request: its log-probs block parsed (each
token's id from a ``token_id:N`` string where the server returns ids) and its Retry-After."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from psych201.scoring.engine_util import EngineError

_ID_PREFIX = "token_id:"


@dataclass(frozen=True)
class Echo:
    ids: list[int | None]
    logprobs: list[float]  # NaN at position 0 (no context)
    top1: list[int]  # -1 where the server's top-1 token carries no id


def logprobs_block(body: dict[str, Any], url: str) -> dict[str, Any]:
    try:
        block = body["choices"][0]["logprobs"]
    except (KeyError, IndexError, TypeError):
        raise EngineError(f"{url}: answer has no choices[0].logprobs") from None
    if not isinstance(block, dict):
        raise EngineError(f"{url}: the server returned no log-probs (logprobs={block!r})")
    return block


def parse_echo(body: dict[str, Any], n: int, *, url: str, key: str = "probe") -> Echo:
    """The first ``n`` echoed positions: token ids, log-probs and top-1 ids."""
    block = logprobs_block(body, url)
    tokens = block.get("tokens") or []
    values = block.get("token_logprobs") or []
    tops = block.get("top_logprobs") or [None] * len(tokens)
    if len(tokens) < n or len(values) < n:
        raise EngineError(
            f"{url}: request {key!r}: the server echoed {len(tokens)} tokens for a {n}-token "
            "prompt; it does not return prompt log-probs"
        )
    ids = [token_id_of(t) for t in tokens[:n]]
    logprobs = [math.nan if v is None else float(v) for v in values[:n]]
    missing = [i for i in range(1, n) if math.isnan(logprobs[i])]
    if missing:
        raise EngineError(
            f"{url}: request {key!r}: no log-prob at prompt positions {missing[:5]}..."
        )
    top1: list[int] = []
    for pos in range(n):
        top = tops[pos] if pos < len(tops) else None
        if not top:
            top1.append(-1)
            continue
        best = max(top.items(), key=lambda kv: kv[1])[0]
        best_id = token_id_of(best)
        if best_id is None and best == tokens[pos]:
            best_id = ids[pos]  # text-only servers: the top-1 is the token itself
        top1.append(-1 if best_id is None else best_id)
    return Echo(ids, logprobs, top1)


def token_id_of(token: str) -> int | None:
    if isinstance(token, str) and token.startswith(_ID_PREFIX):
        try:
            return int(token[len(_ID_PREFIX) :])
        except ValueError:
            return None
    return None


def returns_ids(body: dict[str, Any]) -> bool:
    try:
        tokens = body["choices"][0]["logprobs"]["tokens"]
    except (KeyError, IndexError, TypeError):
        return False
    return bool(tokens) and all(token_id_of(t) is not None for t in tokens)


def retry_after_seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
