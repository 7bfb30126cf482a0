"""Map each response's character span to the tokens that encode it.

A response is scored by the tokens that encode its characters; the ``<<``/``>>`` markers and
everything else are context only. Three modes:

``offsets`` (default, exact for every tokenizer)
    Tokenise the whole prompt as the model would see it and read each token's character range
    (the tokenizer's offset mapping). A token belongs to a response when it lies inside the
    response's characters. When a token straddles a response boundary (``<<-`` in Gemma, ``.>>``
    or ``<<A`` in vocabularies trained on such text) no set of natural tokens encodes exactly the
    response, so the text is re-tokenised with a forced break at those boundaries only: the
    pieces either side are tokenised separately, everything else keeps its natural tokens. The
    repaired sequence must decode to the same text as the natural one (nothing inserted or lost),
    otherwise :class:`AlignmentError` is raised. Cost: the model sees, at a few boundaries, a
    split it would not produce itself; every response is scored on exactly its own characters.

``pieces``
    Always break at every response boundary (tokenise context and response pieces separately
    and concatenate). Exact, and independent of which merges a vocabulary happens to contain, so
    the same response is split the same way whatever surrounds it; but it changes the model's
    input at every boundary where natural tokens would have merged, not only where they cross it.

``paper``
    The authors' marker-token matching (Psych-201 ``0_analyses/eval.py``): tokenise ``" <<"``
    and ``">>"``, scan the token ids for those sub-sequences and label every token between a
    ``" <<"`` match and the next ``">>"`` match (to the end of the sequence when none follows).
    Reproduces the paper's numbers, including its failures: a response after a newline
    (``"\\n<<"`` has no ``" <<"`` token) is never found; a merged close marker (``">>."``) lets
    the labelled run swallow context and following responses; ``<<->>`` becomes ``" <<-"``. The
    paper's text clean-ups (``psych201.data.variants``) exist to dodge some of these. Runs are
    assigned to responses by the character where their ``" <<"`` match ends; responses no run
    reached are listed in :attr:`AlignedPrompt.unmatched`.

Special tokens the tokenizer adds by default (BOS) are kept; they are never targets.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import numpy as np
import numpy.typing as npt

from psych201.errors import InvalidDataError
from psych201.prompts.records import Prompt
from psych201.scoring.continuation import continuation_backend

AlignmentMode = Literal["offsets", "pieces", "paper"]
ALIGNMENT_MODES: tuple[str, ...] = get_args(AlignmentMode)
DEFAULT_ALIGNMENT: AlignmentMode = "offsets"

#: The authors' marker strings: the open marker is matched with its leading space.
PAPER_OPEN = " <<"
PAPER_CLOSE = ">>"

IntArray = npt.NDArray[np.int64]


class AlignmentError(InvalidDataError):
    """A prompt whose response spans cannot be mapped to tokens (names the span and why)."""


@dataclass(frozen=True, eq=False)
class AlignedPrompt:
    """A prompt as token ids, with the token positions of every response span.

    ``span_positions[k]`` are the (ascending) positions in ``token_ids`` of the tokens scored for
    ``prompt.spans[k]``; empty for an empty response (``<<>>``) or a paper-mode span no marker
    match reached. ``span_first[k]`` is the position where span ``k`` begins (its first token, or
    for an empty span the first token after its start): the number of tokens it is conditioned
    on. ``n_prefix`` leading special tokens (BOS) are re-added before every window of a long
    session. ``n_split`` counts the boundaries re-tokenised in ``offsets`` mode (0 when every
    response boundary already fell between natural tokens).
    """

    token_ids: IntArray
    span_positions: tuple[IntArray, ...]
    span_first: IntArray
    mode: AlignmentMode
    n_prefix: int
    n_split: int = 0
    unmatched: tuple[int, ...] = ()


def align(prompt: Prompt, tokenizer: Any, mode: str = DEFAULT_ALIGNMENT) -> AlignedPrompt:
    """Tokenise ``prompt.text`` and find the tokens of each span (see the module docstring)."""
    _check_spans(prompt)
    if mode == "offsets":
        return _align_by_offsets(prompt, tokenizer, split_all=False)
    if mode == "pieces":
        return _align_by_offsets(prompt, tokenizer, split_all=True)
    if mode == "paper":
        return _align_paper(prompt, tokenizer)
    raise ValueError(f"unknown alignment mode {mode!r}; choose one of {', '.join(ALIGNMENT_MODES)}")


def check_mode(mode: str) -> AlignmentMode:
    """``mode`` as an :data:`AlignmentMode`, or a ValueError naming the valid ones."""
    if mode not in ALIGNMENT_MODES:
        raise ValueError(
            f"unknown alignment mode {mode!r}; choose one of {', '.join(ALIGNMENT_MODES)}"
        )
    return cast(AlignmentMode, mode)


# ---------------------------------------------------------------------------------------------
# offsets / pieces


@dataclass(frozen=True)
class _Tokens:
    """Token ids with character offsets; ``special`` marks tokens that encode no text."""

    ids: IntArray
    starts: IntArray
    ends: IntArray
    special: npt.NDArray[np.bool_]


def _encode_natural(text: str, tokenizer: Any) -> _Tokens:
    if not getattr(tokenizer, "is_fast", False) or not hasattr(tokenizer, "backend_tokenizer"):
        raise AlignmentError(
            f"{type(tokenizer).__name__} has no offset mapping (not a fast tokenizer); "
            "use alignment='paper' or a tokenizers-backed tokenizer"
        )
    enc = tokenizer(
        text,
        add_special_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_attention_mask=False,
    )
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    return _Tokens(
        ids=np.asarray(enc["input_ids"], dtype=np.int64),
        starts=offsets[:, 0],
        ends=offsets[:, 1],
        special=np.asarray(enc["special_tokens_mask"], dtype=bool),
    )


def _align_by_offsets(prompt: Prompt, tokenizer: Any, *, split_all: bool) -> AlignedPrompt:
    text = prompt.text
    natural = _encode_natural(text, tokenizer)
    n_prefix = _leading_run(_added_by_tokenizer(natural))
    bounds = _span_boundaries(prompt, len(text))
    mode: AlignmentMode = "pieces" if split_all else "offsets"
    cuts = bounds if split_all else _straddled(natural, bounds)
    tokens = natural
    while cuts.size:
        tokens = _encode_with_breaks(text, tokenizer, natural, cuts, prompt)
        # A re-tokenised piece can merge across a boundary the natural tokens respected.
        more = _straddled(tokens, bounds)
        if not more.size:
            break
        cuts = np.union1d(cuts, more)
    positions, first = _positions_inside(tokens, prompt)
    return AlignedPrompt(
        token_ids=tokens.ids,
        span_positions=positions,
        span_first=first,
        mode=mode,
        n_prefix=n_prefix,
        n_split=int(cuts.size) if not split_all else 0,
    )


def _span_boundaries(prompt: Prompt, n_chars: int) -> IntArray:
    edges = {e for s in prompt.spans for e in (s.start, s.end)}
    return np.asarray(sorted(e for e in edges if 0 < e < n_chars), dtype=np.int64)


def _straddled(tokens: _Tokens, bounds: IntArray) -> IntArray:
    """The boundaries that fall strictly inside some text token."""
    if bounds.size == 0:
        return bounds
    text_tok = ~tokens.special
    starts, ends = tokens.starts[text_tok], tokens.ends[text_tok]
    # Last token starting before each boundary; it straddles when it also ends after it.
    idx = np.searchsorted(starts, bounds, side="left") - 1
    valid = idx >= 0
    hit = np.zeros(bounds.shape, dtype=bool)
    hit[valid] = ends[idx[valid]] > bounds[valid]
    return bounds[hit]


def _encode_with_breaks(
    text: str, tokenizer: Any, natural: _Tokens, cuts: IntArray, prompt: Prompt
) -> _Tokens:
    """Re-tokenise ``text`` with a forced token break at every position in ``cuts``.

    The first piece is tokenised as the start of a text; later pieces as continuations (no
    dummy-prefix space, which SentencePiece-style tokenizers would otherwise add to each piece).
    The special tokens of the natural encoding stay where they were.
    """
    edges = [0, *cuts.tolist(), len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(edges)]
    backend = tokenizer.backend_tokenizer
    encodings = [backend.encode(pieces[0], add_special_tokens=False)]
    if len(pieces) > 1:
        encodings += continuation_backend(backend).encode_batch(
            pieces[1:], add_special_tokens=False
        )
    added = _added_by_tokenizer(natural)
    n_lead = _leading_run(added)
    n_trail = _leading_run(added[::-1]) if added.size > n_lead else 0
    lead = slice(0, n_lead)
    trail = slice(natural.ids.size - n_trail, natural.ids.size)
    ids, starts, ends, special = [natural.ids[lead]], [natural.starts[lead]], [], []
    ends.append(natural.ends[lead])
    special.append(natural.special[lead])
    for base, enc in zip(edges[:-1], encodings, strict=True):
        offs = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
        ids.append(np.asarray(enc.ids, dtype=np.int64))
        starts.append(offs[:, 0] + base)
        ends.append(offs[:, 1] + base)
        # Special tokens written in the text itself (chat markup) stay special.
        special.append(np.asarray(enc.special_tokens_mask, dtype=bool))
    ids.append(natural.ids[trail])
    starts.append(natural.starts[trail])
    ends.append(natural.ends[trail])
    special.append(natural.special[trail])
    out = _Tokens(
        ids=np.concatenate(ids),
        starts=np.concatenate(starts),
        ends=np.concatenate(ends),
        special=np.concatenate(special),
    )
    # Exactness: the repaired sequence must spell the same text as the natural one.
    if backend.decode(out.ids.tolist(), skip_special_tokens=False) != backend.decode(
        natural.ids.tolist(), skip_special_tokens=False
    ):
        raise AlignmentError(
            f"{prompt.condition} prompt: re-tokenising at response boundaries changed the "
            f"decoded text ({type(tokenizer).__name__} adds or drops characters per piece); "
            "use alignment='paper' for this tokenizer"
        )
    return out


def _added_by_tokenizer(tokens: _Tokens) -> npt.NDArray[np.bool_]:
    """Special tokens the tokenizer added (BOS/EOS: no characters), not ones the text spells."""
    return tokens.special & (tokens.starts == tokens.ends)


def _leading_run(special: npt.NDArray[np.bool_]) -> int:
    nonspecial = np.flatnonzero(~special)
    return int(nonspecial[0]) if nonspecial.size else int(special.size)


def _positions_inside(tokens: _Tokens, prompt: Prompt) -> tuple[tuple[IntArray, ...], IntArray]:
    """Token positions inside each span; checks they cover it exactly, without gaps."""
    text_pos = np.flatnonzero(~tokens.special)
    starts, ends = tokens.starts[text_pos], tokens.ends[text_pos]
    out: list[IntArray] = []
    first = np.zeros(len(prompt.spans), dtype=np.int64)
    for k, span in enumerate(prompt.spans):
        lo = int(np.searchsorted(starts, span.start, side="left"))
        hi = int(np.searchsorted(ends, span.end, side="right"))
        first[k] = text_pos[lo] if lo < text_pos.size else tokens.ids.size
        if span.start == span.end or hi <= lo:
            if span.start != span.end:
                raise AlignmentError(_span_msg(prompt, k, "no token lies inside the span"))
            out.append(np.zeros(0, dtype=np.int64))
            continue
        s, e = starts[lo:hi], ends[lo:hi]
        gap = s[1:] > e[:-1]
        if s[0] != span.start or e[-1] != span.end or gap.any():
            raise AlignmentError(
                _span_msg(prompt, k, "tokens do not cover the span's characters exactly")
            )
        out.append(text_pos[lo:hi].astype(np.int64))
    return tuple(out), first


# ---------------------------------------------------------------------------------------------
# paper


def _align_paper(prompt: Prompt, tokenizer: Any) -> AlignedPrompt:
    if not prompt.marker_aligned:
        raise AlignmentError(
            f"{prompt.condition} prompt: alignment='paper' needs '<<'/'>>' around every "
            "response, and this condition removes them"
        )
    open_ids = np.asarray(tokenizer(PAPER_OPEN, add_special_tokens=False)["input_ids"])
    close_ids = np.asarray(tokenizer(PAPER_CLOSE, add_special_tokens=False)["input_ids"])
    if open_ids.size == 0 or close_ids.size == 0:
        raise AlignmentError(f"{type(tokenizer).__name__} encodes a marker to no tokens")
    natural = _encode_natural(prompt.text, tokenizer)
    ids = natural.ids
    runs = paper_runs(ids, open_ids.astype(np.int64), close_ids.astype(np.int64))
    n_spans = len(prompt.spans)
    positions: list[IntArray] = [np.zeros(0, dtype=np.int64)] * n_spans
    first = np.zeros(n_spans, dtype=np.int64)
    span_starts = np.asarray([s.start for s in prompt.spans], dtype=np.int64)
    assigned = np.zeros(n_spans, dtype=bool)
    for content_start, end in runs:
        # The character just after the matched " <<": the start of the response it opens.
        marker_end = int(natural.ends[content_start - 1])
        k = int(np.searchsorted(span_starts, marker_end, side="left"))
        while k < n_spans and assigned[k]:
            k += 1
        if k == n_spans:
            raise AlignmentError(
                f"{prompt.condition} prompt: a ' <<' token match at character {marker_end} "
                "opens no response (a marker inside the context?)"
            )
        assigned[k] = True
        positions[k] = np.arange(content_start, end, dtype=np.int64)
        first[k] = content_start
    unmatched = tuple(int(k) for k in np.flatnonzero(~assigned))
    if unmatched:
        # Where an unmatched response would have begun, for its context count.
        text_pos = np.flatnonzero(~natural.special)
        padded = np.append(text_pos, ids.size)
        missing = np.asarray(unmatched, dtype=np.int64)
        lo = np.searchsorted(natural.starts[text_pos], span_starts[missing], side="left")
        first[missing] = padded[lo]
    return AlignedPrompt(
        token_ids=ids,
        span_positions=tuple(positions),
        span_first=first,
        mode="paper",
        n_prefix=_leading_run(_added_by_tokenizer(natural)),
        unmatched=unmatched,
    )


def paper_runs(ids: IntArray, open_ids: IntArray, close_ids: IntArray) -> list[tuple[int, int]]:
    """The authors' labelled runs ``[content_start, end)`` over ``ids``, left to right.

    Same scan as their ``collate``: find the next open sub-sequence at or after ``i``; the run
    starts after it and ends at the next close sub-sequence (or the end of ``ids``); continue
    after that close. Empty runs are kept (the caller decides what an empty response scores).
    """
    opens = _find_all(ids, open_ids)
    closes = _find_all(ids, close_ids)
    n = int(ids.size)
    runs: list[tuple[int, int]] = []
    i = 0
    while True:
        j = int(np.searchsorted(opens, i, side="left"))
        if j == opens.size:
            return runs
        content_start = int(opens[j]) + int(open_ids.size)
        c = int(np.searchsorted(closes, content_start, side="left"))
        end = int(closes[c]) if c < closes.size else n
        runs.append((content_start, end))
        i = end + int(close_ids.size)


def _find_all(ids: IntArray, sub: IntArray) -> IntArray:
    """Every start index where ``sub`` occurs in ``ids`` (overlapping matches included)."""
    m = int(sub.size)
    if ids.size < m:
        return np.zeros(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(ids, m)
    return np.flatnonzero((windows == sub).all(axis=1)).astype(np.int64)


# ---------------------------------------------------------------------------------------------


def _check_spans(prompt: Prompt) -> None:
    n = len(prompt.text)
    prev_end = 0
    for k, span in enumerate(prompt.spans):
        if not (prev_end <= span.start <= span.end <= n):
            raise AlignmentError(_span_msg(prompt, k, "spans must be ordered and inside the text"))
        if prompt.text[span.start : span.end] != span.text:
            raise AlignmentError(_span_msg(prompt, k, "span offsets do not match its text"))
        prev_end = span.end


def _span_msg(prompt: Prompt, k: int, reason: str) -> str:
    span = prompt.spans[k]
    return (
        f"{prompt.condition} prompt, response {span.index} (characters {span.start}:{span.end}, "
        f"{span.text[:40]!r}): {reason}"
    )
