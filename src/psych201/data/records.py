"""Typed records of the data layer: what a study, a participant session and a response are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ResponseSpan:
    """One human response: the characters between ``<<`` and ``>>`` (markers excluded).

    ``start``/``end`` are offsets into the text the span belongs to (``text[start:end] == text``).
    ``index`` is the response's position in the original session (0-based) and survives any
    rewriting of the text by a prompt condition, so scores from different conditions pair up.
    """

    index: int
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class SessionKey:
    """Unique key of a session: participant ids repeat within files, line numbers do not."""

    study: str
    experiment: str
    participant: str
    line: int


@dataclass(frozen=True)
class Session:
    """One participant session (one JSONL line) of one study.

    ``study`` is the study folder name (the paper's unit of analysis); ``experiment`` is the
    free-form string of the file; ``participant`` is always a string; ``line`` is 1-based.
    ``metadata`` holds every raw field except text/experiment/participant; ``harmonised`` the
    fields of :mod:`psych201.data.fields` (``N/A`` where missing). ``in_eval`` is the split a
    published table carries (None when the data has none); ``psych101_test`` is None for
    sessions that are not from Psych-101, else whether the participant is one of Psych-101's
    test participants.
    """

    study: str
    experiment: str
    participant: str
    line: int
    text: str
    responses: tuple[ResponseSpan, ...]
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    harmonised: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    source: str = ""
    in_eval: bool | None = field(default=None, hash=False, compare=False)
    psych101_test: bool | None = field(default=None, hash=False, compare=False)

    @property
    def key(self) -> SessionKey:
        return SessionKey(self.study, self.experiment, self.participant, self.line)
