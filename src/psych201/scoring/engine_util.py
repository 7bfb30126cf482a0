"""Helpers shared by the engines: request checks and scores from logits or from top-k lists.

Every engine returns the same three numbers per target position; keeping their arithmetic in one
place is what lets the parity harness compare engines token by token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from psych201.scoring.engine import ScoringRequest, TokenScores


class EngineError(RuntimeError):
    """An engine or server cannot give the scores asked for (names the engine and the reason)."""


def check_request(request: ScoringRequest, *, engine: str, max_context: int | None) -> None:
    """Reject a request no engine can answer, before it costs a forward pass.

    Targets must lie in ``[1, len(token_ids))``: position 0 has no context to condition on.
    """
    n = int(request.token_ids.shape[0])
    if request.token_ids.ndim != 1 or request.target_positions.ndim != 1:
        raise ValueError(f"{engine}: request {request.key!r}: token_ids and targets must be 1-D")
    if n == 0:
        raise ValueError(f"{engine}: request {request.key!r} has no tokens")
    if request.target_positions.size:
        lo = int(request.target_positions.min())
        hi = int(request.target_positions.max())
        if lo < 1 or hi >= n:
            raise ValueError(
                f"{engine}: request {request.key!r}: target positions must lie in [1, {n}), "
                f"got [{lo}, {hi}]"
            )
    n_targets = int(request.target_positions.size)
    for j in request.candidates:
        if not 0 <= j < n_targets:
            raise ValueError(
                f"{engine}: request {request.key!r}: candidates for target index {j}, but it "
                f"has {n_targets} targets"
            )
    bad = [t for t in request.temperatures if not (np.isfinite(t) and t > 0)]
    if bad:
        raise ValueError(
            f"{engine}: request {request.key!r}: temperatures must be positive, got {bad[0]}"
        )
    if max_context is not None and n > max_context:
        raise ValueError(
            f"{engine}: request {request.key!r} has {n} tokens, more than the model's context "
            f"of {max_context}; window the session first (SessionScorer's WindowConfig)"
        )


def scores_from_logits(
    key: str,
    logits: npt.NDArray[np.floating],
    next_ids: npt.NDArray[np.int64],
    candidates: Mapping[int, npt.NDArray[np.int64]] | None = None,
) -> TokenScores:
    """Log-prob of ``next_ids[j]``, arg-max id and entropy from the logit row ``logits[j]``.

    ``logits`` has one row per target: the output at position ``t - 1`` for target ``t``;
    ``candidates[j]`` are further ids whose log-probs row ``j`` should report.
    Computed in float64 so the arithmetic adds nothing to the engine's own rounding.
    """
    rows = np.asarray(logits, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] != next_ids.shape[0]:
        raise ValueError(f"logits of shape {rows.shape} do not match {next_ids.shape[0]} targets")
    if rows.shape[0] == 0:
        return empty_scores(key)
    peak = rows.max(axis=1, keepdims=True)
    shifted = rows - peak
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    logp = shifted - log_norm
    p = np.exp(logp)
    # 0 * -inf (masked vocabulary entries) is nan; those entries contribute nothing to entropy.
    entropy = -np.where(p > 0, p * logp, 0.0).sum(axis=1)
    picked = logp[np.arange(rows.shape[0]), next_ids]
    return TokenScores(
        key=key,
        logprobs=picked.astype(np.float64),
        top1=rows.argmax(axis=1).astype(np.int64),
        entropy=entropy.astype(np.float64),
        candidate_logprobs=(
            {j: logp[j, ids].astype(np.float64) for j, ids in candidates.items()}
            if candidates
            else None
        ),
    )


def scores_from_topk(
    key: str,
    target_logprobs: Sequence[float],
    top1_ids: Sequence[int],
) -> TokenScores:
    """Scores for engines that only return top-k log-probs: entropy is NaN (not computable)."""
    n = len(target_logprobs)
    return TokenScores(
        key=key,
        logprobs=np.asarray(target_logprobs, dtype=np.float64).reshape(n),
        top1=np.asarray(top1_ids, dtype=np.int64).reshape(n),
        entropy=np.full(n, np.nan, dtype=np.float64),
    )


def empty_scores(key: str) -> TokenScores:
    return TokenScores(
        key=key,
        logprobs=np.zeros(0, dtype=np.float64),
        top1=np.zeros(0, dtype=np.int64),
        entropy=np.zeros(0, dtype=np.float64),
    )
