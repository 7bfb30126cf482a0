"""Text variants of a session used by the paper: its clean-ups, its truncation, the discrete set.

Every variant returns a new :class:`Session` whose ``responses`` are re-derived from the new text
but keep the ``index`` the response had in the original session, so scores from different
conditions pair up response by response. A variant that drops responses (truncation, discrete)
simply leaves their indices out.

The authors clean the text twice. Building the released dataset (``psych201_generate.py``,
``map_text``) applies a few study-specific fixes and four literal replacements to the whole text;
scoring (``0_analyses/eval.py``, ``safe_truncate_angle``) then takes ``text[:32768]``, applies the
same four replacements again (only ``<<skip>>`` → ``<<skip>>.`` still matches, so it ends up as
``<<skip>>..``), cuts before an unclosed ``<<`` and removes whitespace right before ``>>``.
:func:`paper_variant` reproduces that chain exactly and is what a "paper" condition should use.
:func:`paper_clean` (both clean-ups, no cut) and :func:`paper_truncate` (the cut alone) are the
pieces; their composition differs from :func:`paper_variant` only in where the 32,768-character
cut falls, because the release clean-up lengthens the text before the authors cut it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from psych201.data.markers import CLOSE, OPEN, MarkerError, parse_responses
from psych201.data.records import ResponseSpan, Session

#: The paper's character budget per session (``--max-seq-length`` in the authors' script).
PAPER_MAX_CHARS = 32768

#: The authors' literal clean-ups, applied in this order (str.replace semantics).
PAPER_REPLACEMENTS: tuple[tuple[str, str], ...] = (
    ("<<skip>>", "<<skip>>."),
    ("<<-", "<< -"),
    ("<<think>>", "<< think>>"),
    ("More Details >>", "More Details ->"),
)

#: ``map_text``'s study-specific fixes, keyed by the experiment name after the authors' renaming.
_RELEASE_FIXES: dict[str, tuple[tuple[str, str], ...]] = {
    **dict.fromkeys(
        (
            "vantiel2020probabilistic_pragmatics/exp2a.csv",
            "vantiel2022meaninguse/exp2",
            "vantiel2021probabilisticpragmatics/exp4.csv",
            "vantiel2020probabilistic_pragmatics/exp2b.csv",
            "olschewski2025optimal/1",
            "witte2024interventionStudy",
            "hu2023lm-pragmatics",
            "Ying2023NIPE",
        ),
        ((">>\n", ">>.\n"),),
    ),
    "pirrone_2018_dots/data_Pirrone2018_dots_Psych-201.csv": (
        (">>, t", ">>. T"),
        (">>, and", ">> and"),
    ),
    **dict.fromkeys(
        ("heffner2022economicgames/prd_data.csv", "heffner2022economicgames/pgg_data.csv"),
        (("$<<", "<<"), (">>", ">> dollars")),
    ),
    "holton2024goalcommitment": (("collect<<", "collect <<"),),
}
#: The one renaming of ``map_experiment_name`` that selects a fix above.
_RELEASE_RENAMES = {"exp4.csv": "vantiel2021probabilisticpragmatics/exp4.csv"}

_SPACE_BEFORE_CLOSE = re.compile(r"\s+(?=>>)")
_DISCRETE_RESPONSE = re.compile(r"[A-Z]")


def release_text(text: str, experiment: str) -> str:
    """The text as the authors released it (``map_text``): study fixes, then the replacements."""
    for old, new in _RELEASE_FIXES.get(_RELEASE_RENAMES.get(experiment, experiment), ()):
        text = text.replace(old, new)
    for old, new in PAPER_REPLACEMENTS:
        text = text.replace(old, new)
    return text


def paper_clean_text(text: str, experiment: str = "") -> str:
    """Both of the authors' clean-ups on a raw text, without truncation."""
    text = release_text(text, experiment)
    for old, new in PAPER_REPLACEMENTS:
        text = text.replace(old, new)
    return _SPACE_BEFORE_CLOSE.sub("", text)


def paper_truncate_text(text: str, max_chars: int = PAPER_MAX_CHARS) -> str:
    """``text[:max_chars]``, then cut just before the last ``<<`` if it is left unclosed.

    Uses the authors' count test (more ``<<`` than ``>>``) so the result is theirs byte for byte.
    """
    if max_chars < 0:
        raise ValueError(f"max_chars must be >= 0, got {max_chars}")
    cut = text[:max_chars]
    if cut.count(OPEN) > cut.count(CLOSE):
        cut = cut[: cut.rfind(OPEN)]
    return cut


def paper_text(text: str, experiment: str = "", max_chars: int = PAPER_MAX_CHARS) -> str:
    """Exactly what the authors score: ``safe_truncate_angle(map_text(text), max_chars)``."""
    cut = release_text(text, experiment)[:max_chars]
    for old, new in PAPER_REPLACEMENTS:
        cut = cut.replace(old, new)
    if cut.count(OPEN) > cut.count(CLOSE):
        cut = cut[: cut.rfind(OPEN)]
    return _SPACE_BEFORE_CLOSE.sub("", cut)


def is_discrete_response(content: str) -> bool:
    """True when a response is exactly one uppercase letter A–Z (the paper's discrete rule)."""
    return _DISCRETE_RESPONSE.fullmatch(content) is not None


def paper_clean(session: Session) -> Session:
    """The session with the authors' text clean-ups; every response survives, same indices."""
    text = paper_clean_text(session.text, session.experiment)
    return _with_text(session, text, _indices(session.responses))


def paper_truncate(session: Session, max_chars: int = PAPER_MAX_CHARS) -> Session:
    """The session cut to ``max_chars`` characters, never leaving a response half inside.

    The responses that fall off the end are dropped; the kept ones are a prefix of the original
    responses and keep their indices.
    """
    text = paper_truncate_text(session.text, max_chars)
    return _with_text(session, text, _indices(session.responses), allow_prefix=True)


def paper_variant(session: Session, max_chars: int = PAPER_MAX_CHARS) -> Session:
    """The text the paper scores, exactly: release clean-ups, cut, scoring clean-ups."""
    text = paper_text(session.text, session.experiment, max_chars)
    return _with_text(session, text, _indices(session.responses), allow_prefix=True)


def discrete_variant(session: Session) -> Session:
    """Unwrap every response that is not exactly one uppercase letter A–Z.

    Unwrapped responses lose their markers but their content stays in the text as context (the
    paper's ``Psych-201-discrete`` set). The remaining responses keep their original indices.
    """
    pieces: list[str] = []
    kept: list[int] = []
    pos = 0
    for span in session.responses:
        if is_discrete_response(span.text):
            kept.append(span.index)
            continue
        # Drop the two markers around the content; keep everything else as it was.
        pieces.append(session.text[pos : span.start - len(OPEN)])
        pieces.append(span.text)
        pos = span.end + len(CLOSE)
    pieces.append(session.text[pos:])
    return _with_text(session, "".join(pieces), kept)


def _indices(responses: Sequence[ResponseSpan]) -> list[int]:
    return [r.index for r in responses]


def _with_text(
    session: Session, text: str, indices: Sequence[int], *, allow_prefix: bool = False
) -> Session:
    """A copy of ``session`` with ``text``, whose spans take ``indices`` in order.

    Raises :class:`MarkerError` when the new text does not hold exactly those responses (or, with
    ``allow_prefix``, a prefix of them): a variant must never shift which score pairs with which
    response.
    """
    spans = parse_responses(text)
    if len(spans) > len(indices) or (not allow_prefix and len(spans) != len(indices)):
        raise MarkerError(
            f"variant of {session.study} line {session.line} has {len(spans)} responses where "
            f"{len(indices)} were expected",
            1,
        )
    renumbered = tuple(
        dataclasses.replace(span, index=index) for span, index in zip(spans, indices, strict=False)
    )
    return dataclasses.replace(
        session,
        text=text,
        responses=renumbered,
        metadata=dict(session.metadata),
        harmonised=dict(session.harmonised),
    )
