"""The record every prompt condition produces, and the role a condition plays."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from psych201.data.records import ResponseSpan


class ConditionRole(StrEnum):
    """What a condition is for in the analyses: the main NLL measurement or one of the paper's
    controls. Each condition class declares its own; run manifests record it."""

    MAIN = "main"
    DISCRETE = "discrete"
    CHAT_TEMPLATE = "chat-template"
    PERSONA = "persona"
    PERSONA_SHUFFLED = "persona-shuffled"


@dataclass(frozen=True)
class Prompt:
    """The exact text to score and the response spans inside it.

    ``spans`` are character offsets into ``text`` (``text[s.start:s.end] == s.text``); their
    ``index`` is the response's index in the original session. A condition may drop responses
    (paper truncation, the discrete variant): ``n_dropped`` counts them so nothing goes missing
    silently. ``marker_aligned`` says whether ``<<``/``>>`` still surround every span in ``text``
    (required by the paper's marker-token alignment).

    ``options`` is either empty (not computed) or holds, for each span in order, the set of
    answers the participant was offered (``None`` where the transcript does not say); the
    ``discrete`` condition (and ``raw`` with ``offered=True``) fills it for accuracy restricted
    to the offered options and the offered options' log-probs.

    Construction checks that every span is exact, so a condition bug fails loudly here instead of
    scoring the wrong characters.
    """

    text: str
    spans: tuple[ResponseSpan, ...]
    condition: str
    n_dropped: int = 0
    marker_aligned: bool = True
    options: tuple[frozenset[str] | None, ...] = ()

    def __post_init__(self) -> None:
        for span in self.spans:
            if not 0 <= span.start <= span.end <= len(self.text) or (
                self.text[span.start : span.end] != span.text
            ):
                raise ValueError(
                    f"{self.condition}: span of response {span.index} "
                    f"[{span.start}:{span.end}] does not hold its text {span.text!r}"
                )
        if self.options and len(self.options) != len(self.spans):
            raise ValueError(
                f"{self.condition}: {len(self.options)} option sets for {len(self.spans)} spans"
            )
        if self.n_dropped < 0:
            raise ValueError(f"{self.condition}: n_dropped must be >= 0, got {self.n_dropped}")
