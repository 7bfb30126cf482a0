"""Find the human responses in a transcript: the content between ``<<`` and ``>>``.

Psych-201 marks each response as ``<<content>>`` and promises the markers appear nowhere else and
never nest. The parser checks that promise instead of trusting it: a stray ``>>``, a ``<<`` inside
an open response, or a ``<<`` that is never closed raises :class:`MarkerError` with the column, so
a broken transcript is reported rather than scored with shifted spans.

Markers are found left to right without overlap, exactly like the paper's ``<<(.*?)>>`` regex:
``<<<x>>`` is the response ``<x`` and ``<<x>>>`` is ``x`` followed by a lone ``>``.
"""

from __future__ import annotations

import re

from psych201.data.records import ResponseSpan
from psych201.errors import InvalidDataError

OPEN = "<<"
CLOSE = ">>"

_PAIR = re.compile(r"<<(.*?)>>", re.DOTALL)


class MarkerError(InvalidDataError):
    """A transcript whose ``<<``/``>>`` markers do not pair up.

    ``column`` is the 1-based character position of the offending marker within the text field
    (not within the raw JSONL line, where escapes would shift it); ``reason`` says what is wrong.
    """

    def __init__(self, reason: str, column: int) -> None:
        super().__init__(f"{reason} (text column {column})")
        self.reason = reason
        self.column = column


def parse_responses(text: str) -> tuple[ResponseSpan, ...]:
    """Return every ``<<…>>`` response of ``text`` in order, as character offsets of its content.

    Empty, blank, padded and multi-word contents are kept verbatim (``text[s.start:s.end] ==
    s.text``). Raises :class:`MarkerError` for a stray ``>>``, a nested ``<<`` or an unclosed
    ``<<``.
    """
    # Fast path, all in C: the paper's regex plus two counts. The markers are well formed exactly
    # when every "<<" and every ">>" of the text belongs to a match (a nested "<<" or a stray ">>"
    # adds to a count, an unclosed "<<" is never matched). Otherwise the exact scan finds the error.
    spans = tuple(
        ResponseSpan(i, m.start(1), m.end(1), m.group(1))
        for i, m in enumerate(_PAIR.finditer(text))
    )
    if text.count(OPEN) == len(spans) == text.count(CLOSE):
        return spans
    return _scan(text)


def _scan(text: str) -> tuple[ResponseSpan, ...]:
    """The marker grammar checked left to right; raises at the first problem."""
    spans: list[ResponseSpan] = []
    find = text.find
    pos = 0
    while True:
        open_at = find(OPEN, pos)
        stray = find(CLOSE, pos, len(text) if open_at < 0 else open_at)
        if stray >= 0:
            raise MarkerError("stray marker: '>>' without an opening '<<'", stray + 1)
        if open_at < 0:
            return tuple(spans)
        start = open_at + 2
        close = find(CLOSE, start)
        if close < 0:
            nested = find(OPEN, start)
            if nested >= 0:
                raise MarkerError(_nested_reason(open_at), nested + 1)
            raise MarkerError("unbalanced marker: '<<' is never closed by '>>'", open_at + 1)
        nested = find(OPEN, start, close)
        if nested >= 0:
            raise MarkerError(_nested_reason(open_at), nested + 1)
        spans.append(ResponseSpan(len(spans), start, close, text[start:close]))
        pos = close + 2


def _nested_reason(open_at: int) -> str:
    return f"nested marker: '<<' inside the response opened at column {open_at + 1}"
