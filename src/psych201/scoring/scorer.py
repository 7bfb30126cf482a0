"""From prompts to one score per response: alignment, long-session windows, span sums.

A session is one sequence and one forward pass when it fits the model's context. A longer one is
cut into overlapping windows: each window repeats the last ``overlap`` tokens before its first
new target (and the BOS token, when the tokenizer adds one), so every response is conditioned on
at least ``overlap`` tokens and on as many more as fit before it in its window. A window never
cuts a response in two unless the response alone is longer than a window can hold. Each span
records how many tokens its first token was conditioned on (``context_tokens``) and whether its
preceding context was cut (``truncated``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from psych201.prompts.records import Prompt
from psych201.scoring.align import (
    DEFAULT_ALIGNMENT,
    AlignedPrompt,
    IntArray,
    align,
    check_mode,
)
from psych201.scoring.engine import Engine, ScoringRequest, TokenScores


@dataclass(frozen=True)
class WindowConfig:
    """How long sessions are cut.

    ``max_tokens``: the longest sequence sent to the engine (None: the model's context; a value
    above it is capped there). ``overlap``: the fewest tokens of preceding context the first new
    target of a window keeps (None: half the window). More overlap, more context per response,
    more windows (cost grows like ``max_tokens / (max_tokens - overlap)``).
    """

    max_tokens: int | None = None
    overlap: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 4:
            raise ValueError(f"WindowConfig.max_tokens must be >= 4, got {self.max_tokens}")
        if self.overlap is not None and self.overlap < 0:
            raise ValueError(f"WindowConfig.overlap must be >= 0, got {self.overlap}")


@dataclass(frozen=True)
class SpanScore:
    """The score of one response.

    ``nll``: summed negative log-likelihood of its tokens (nats); 0.0 for an empty response
    (``n_tokens == 0``), NaN when paper alignment found no tokens for it. ``top1_correct``:
    whether the model's arg-max was the response token, for one-token responses (else None).
    ``entropy``: mean predictive entropy over its tokens (NaN when it has none).
    ``context_tokens``: tokens its first token was conditioned on. ``truncated``: whether any of
    its tokens lost preceding context to a window cut. ``n_offered``: how many options the
    transcript offered for this response (None where it does not say). ``offered_correct``:
    whether the response was the most probable of the offered options (None unless the response
    and every option are one token each and the engine reports candidate log-probs).
    ``nll_temperature``: the NLL with the logits divided by each temperature the scorer asked
    for (None unless asked and the engine could, e.g. not for top-k engines).
    ``offered_options`` / ``offered_logprobs``: the offered options (sorted) and the model's
    log-prob of each, where ``offered_correct`` is set.
    """

    index: int
    n_tokens: int
    nll: float
    top1_correct: bool | None
    entropy: float
    context_tokens: int
    truncated: bool
    offered_correct: bool | None = None
    n_offered: int | None = None
    nll_temperature: tuple[float, ...] | None = None
    offered_options: tuple[str, ...] | None = None
    offered_logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True, eq=False)
class Window:
    """Tokens ``[start, end)`` of a session scored together, and the targets scored in it.

    Windows with ``start > 0`` are sent with the session's leading special tokens in front.
    """

    start: int
    end: int
    targets: IntArray


class SessionScorer:
    """Score every response span of every prompt with one engine.

    ``alignment`` is ``offsets`` (exact, default), ``pieces`` or ``paper`` (see
    :mod:`psych201.scoring.align`). One :meth:`score` call sends all windows of all prompts to
    the engine at once, so the engine can batch them by length. ``temperatures`` asks the engine
    for each response's NLL at these softmax temperatures too (``SpanScore.nll_temperature``).
    """

    def __init__(
        self,
        tokenizer: Any,
        engine: Engine,
        *,
        alignment: str = DEFAULT_ALIGNMENT,
        window: WindowConfig = WindowConfig(),  # frozen: one shared default is safe
        temperatures: Sequence[float] = (),
    ) -> None:
        self.tokenizer = tokenizer
        self.temperatures = tuple(float(t) for t in temperatures)
        self.engine = engine
        self.alignment = check_mode(alignment)
        self.window = window
        limits = [v for v in (window.max_tokens, engine.info.max_context) if v is not None]
        self.max_tokens: int | None = min(limits) if limits else None

    def score(self, prompts: Sequence[Prompt]) -> list[list[SpanScore]]:
        """One list per prompt, one :class:`SpanScore` per span, in span order."""
        aligned = [align(p, self.tokenizer, self.alignment) for p in prompts]
        return self.score_aligned(prompts, aligned)

    def score_aligned(
        self, prompts: Sequence[Prompt], aligned: Sequence[AlignedPrompt]
    ) -> list[list[SpanScore]]:
        """Like :meth:`score` for prompts already aligned (e.g. to inspect the tokens)."""
        plans = [self._plan(a) for a in aligned]
        offered = [
            option_candidates(p, a, self.tokenizer) for p, a in zip(prompts, aligned, strict=True)
        ]
        requests: list[ScoringRequest] = []
        for i, (a, plan) in enumerate(zip(aligned, plans, strict=True)):
            for w, win in enumerate(plan):
                requests.append(_request(f"{i}/{w}", a, win, offered[i], self.temperatures))
        by_key = {s.key: s for s in self.engine.score(requests)}
        out: list[list[SpanScore]] = []
        for i, (prompt, a, plan) in enumerate(zip(prompts, aligned, plans, strict=True)):
            scored = [by_key[f"{i}/{w}"] for w in range(len(plan))]
            out.append(_span_scores(prompt, a, plan, scored, offered[i]))
        return out

    def _plan(self, a: AlignedPrompt) -> list[Window]:
        targets = _all_targets(a)
        # Causal attention: tokens after the last target change nothing, so they are not sent.
        n = int(targets[-1]) + 1 if targets.size else 0
        if self.max_tokens is None or n <= self.max_tokens:
            return [Window(0, n, targets)] if targets.size else []
        overlap = self.window.overlap
        if overlap is None:
            overlap = self.max_tokens // 2
        return plan_windows(a, self.max_tokens, overlap)


def plan_windows(a: AlignedPrompt, max_tokens: int, overlap: int) -> list[Window]:
    """Cut an aligned prompt into windows of at most ``max_tokens`` tokens (see module doc).

    Targets are taken span by span in order; a window starts ``overlap`` tokens before its first
    span (never inside the leading special tokens) and takes every following span that ends
    inside it.
    """
    prefix = a.n_prefix
    room = max_tokens - prefix  # tokens of the session a later window can hold
    if room < 2 or overlap > room - 2:
        raise ValueError(
            f"window of {max_tokens} tokens with overlap {overlap} leaves no room for targets "
            f"(needs overlap <= {room - 2})"
        )
    n = int(a.token_ids.size)
    groups = [p for p in a.span_positions if p.size]
    windows: list[Window] = []
    g = 0
    pending = groups[0] if groups else None
    while pending is not None:
        first = int(pending[0])
        start = max(first - max(overlap, 1), 0)
        if start <= prefix:
            start = 0
        end = min(start + (max_tokens if start == 0 else room), n)
        taken: list[IntArray] = []
        while pending is not None and int(pending[-1]) < end:
            taken.append(pending)
            g += 1
            pending = groups[g] if g < len(groups) else None
        if not taken:
            # One span longer than a window: score what fits, carry the rest on.
            assert pending is not None
            cut = int(np.searchsorted(pending, end, side="left"))
            taken.append(pending[:cut])
            pending = pending[cut:]
        targets = np.unique(np.concatenate(taken))
        windows.append(Window(start, int(targets[-1]) + 1, targets))
    return windows


def _all_targets(a: AlignedPrompt) -> IntArray:
    parts = [p for p in a.span_positions if p.size]
    if not parts:
        return np.zeros(0, dtype=np.int64)
    # Paper mode can label overlapping runs only in theory; unique keeps each target once.
    return np.unique(np.concatenate(parts))


@dataclass(frozen=True, eq=False)
class OptionCandidates:
    """The one-token options offered for a one-token response, as token ids in its context."""

    token_ids: IntArray  # one id per option, the response's own id among them
    response: int  # index of the response's id in ``token_ids``
    options: tuple[str, ...] = ()  # the options as written, in the order of ``token_ids``


def option_candidates(
    prompt: Prompt, a: AlignedPrompt, tokenizer: Any
) -> dict[int, OptionCandidates]:
    """Candidate ids per target position, for every span whose offered options can be scored.

    A span qualifies when the transcript states its options (``prompt.options``), the response
    is one of them and one token long, and every other option is one token of the same form
    (e.g. ``A`` after ``<<`` as ``A``, ``▁A`` or ``ĠA``, whatever the response's token is): the
    option's token is the response's token with the response text swapped for the option.
    """
    if not prompt.options:
        return {}
    unknown = getattr(tokenizer, "unk_token_id", None)
    out: dict[int, OptionCandidates] = {}
    for span, pos, options in zip(prompt.spans, a.span_positions, prompt.options, strict=True):
        if options is None or pos.size != 1 or span.text not in options or len(options) < 2:
            continue
        response_id = int(a.token_ids[pos[0]])
        piece = tokenizer.convert_ids_to_tokens(response_id)
        if not isinstance(piece, str) or not piece.endswith(span.text):
            continue
        lead = piece[: len(piece) - len(span.text)]
        ordered = sorted(options)
        ids = [tokenizer.convert_tokens_to_ids(lead + option) for option in ordered]
        if any(not isinstance(t, int) or t == unknown for t in ids):
            continue
        response = ordered.index(span.text)
        if len(set(ids)) != len(ids) or ids[response] != response_id:
            continue
        out[int(pos[0])] = OptionCandidates(
            np.asarray(ids, dtype=np.int64), response, tuple(ordered)
        )
    return out


def _request(
    key: str,
    a: AlignedPrompt,
    win: Window,
    offered: dict[int, OptionCandidates],
    temperatures: tuple[float, ...] = (),
) -> ScoringRequest:
    if win.start == 0:
        ids = a.token_ids[: win.end]
        targets = win.targets
    else:
        ids = np.concatenate([a.token_ids[: a.n_prefix], a.token_ids[win.start : win.end]])
        targets = win.targets - win.start + a.n_prefix
    candidates = (
        {j: offered[t].token_ids for j, t in enumerate(win.targets.tolist()) if t in offered}
        if offered
        else {}
    )
    return ScoringRequest(
        key=key,
        token_ids=ids.astype(np.int64),
        target_positions=targets,
        candidates=candidates,
        temperatures=temperatures,
    )


def _span_scores(
    prompt: Prompt,
    a: AlignedPrompt,
    plan: list[Window],
    scored: list[TokenScores],
    offered: dict[int, OptionCandidates],
) -> list[SpanScore]:
    # Per target position: log-prob, arg-max, entropy, context length and whether it was cut.
    n = int(a.token_ids.size)
    logp = np.full(n, np.nan)
    top1 = np.full(n, -1, dtype=np.int64)
    ent = np.full(n, np.nan)
    context = np.zeros(n, dtype=np.int64)
    cut = np.zeros(n, dtype=bool)
    # The offered options' log-probs, by target position.
    option_logp: dict[int, np.ndarray] = {}
    # Per target position and temperature: log-prob at that temperature (NaN: not reported).
    n_temps = next((s.temperature_logprobs.shape[1] for s in scored
                    if s.temperature_logprobs is not None), 0)
    temp = np.full((n, n_temps), np.nan)
    for win, s in zip(plan, scored, strict=True):
        for j, found in (s.candidate_logprobs or {}).items():
            option_logp[int(win.targets[j])] = found
        if s.temperature_logprobs is not None:
            temp[win.targets] = s.temperature_logprobs
        logp[win.targets] = s.logprobs
        top1[win.targets] = s.top1
        ent[win.targets] = s.entropy
        if win.start == 0:
            context[win.targets] = win.targets
        else:
            context[win.targets] = win.targets - win.start + a.n_prefix
            cut[win.targets] = True
    unmatched = set(a.unmatched)
    out: list[SpanScore] = []
    for k, (span, pos) in enumerate(zip(prompt.spans, a.span_positions, strict=True)):
        options = prompt.options[k] if prompt.options else None
        n_offered = len(options) if options is not None else None
        if pos.size == 0:
            out.append(
                SpanScore(
                    index=span.index,
                    n_tokens=0,
                    nll=float("nan") if k in unmatched else 0.0,
                    top1_correct=None,
                    entropy=float("nan"),
                    context_tokens=int(a.span_first[k]),
                    truncated=False,
                    n_offered=n_offered,
                    # An empty response costs nothing at any temperature, like its nll.
                    nll_temperature=(0.0,) * n_temps if n_temps and k not in unmatched else None,
                )
            )
            continue
        correct = bool(top1[pos[0]] == a.token_ids[pos[0]]) if pos.size == 1 else None
        values = option_logp.get(int(pos[0])) if pos.size == 1 else None
        choice = offered[int(pos[0])] if values is not None else None
        # A span across windows sums its tokens from each, like nll; null if any lacked them.
        per_t = -temp[pos].sum(axis=0) if n_temps else None
        out.append(
            SpanScore(
                index=span.index,
                n_tokens=int(pos.size),
                nll=float(-logp[pos].sum()),
                top1_correct=correct,
                entropy=float(ent[pos].mean()),
                context_tokens=int(context[pos[0]]),
                truncated=bool(cut[pos].any()),
                offered_correct=(
                    bool(values[choice.response] >= values.max())
                    if values is not None and choice is not None
                    else None
                ),
                n_offered=n_offered,
                nll_temperature=(
                    tuple(float(x) for x in per_t)
                    if per_t is not None and not np.isnan(per_t).any()
                    else None
                ),
                offered_options=choice.options if choice is not None else None,
                offered_logprobs=(
                    tuple(float(x) for x in values) if values is not None else None
                ),
            )
        )
    return out
