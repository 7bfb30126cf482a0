"""The record every prompt condition produces."""

from __future__ import annotations

from dataclasses import dataclass

from psych201.data.records import ResponseSpan


@dataclass(frozen=True)
class Prompt:
    """The exact text to score and the response spans inside it.

    ``spans`` are character offsets into ``text`` (``text[s.start:s.end] == s.text``); their
    ``index`` is the response's index in the original session. A condition may drop responses
    (paper truncation, the discrete variant): ``n_dropped`` counts them so nothing goes missing
    silently. ``marker_aligned`` says whether ``<<``/``>>`` still surround every span in ``text``
    (required by the paper's marker-token alignment).
    """

    text: str
    spans: tuple[ResponseSpan, ...]
    condition: str
    n_dropped: int = 0
    marker_aligned: bool = True
