"""Prompt conditions: small, named, frozen objects that turn sessions into the prompts to score.

A condition decides which sessions it applies to (:meth:`Condition.eligible`) and renders the
eligible sessions of one study into :class:`Prompt` records (:meth:`Condition.render_study`),
whose spans always point at exactly the response text they score and keep the response's original
index, so scores pair up across conditions. :meth:`Condition.spec` is JSON and goes into the run
hash, so two runs share a hash only when they scored the same prompts.

* ``raw`` (default): the session text unchanged; ``offered=True`` also carries each response's
  option set where the transcript states it, so one-token options get their log-probs recorded
  (the population fit, item level and offered-option calibration read them from the main run).
* ``no-persona``: ``raw`` restricted to sessions with metadata, the persona experiment's reference
  (exactly the participants ``persona`` and ``persona-shuffled`` score).
* ``paper``: the authors' clean-ups and 32,768-character truncation.
* ``discrete``: the discrete variant (only one-letter responses stay responses), each prompt
  carrying the option set offered for each response where the transcript states it.
* ``chat-template``: user turns around assistant turns, in the model's own chat template.
* ``persona`` (``mode`` = interview | qa | bio | portray): a preamble from harmonised metadata
  before the unchanged transcript.
* ``persona-shuffled``: the same preamble built from another participant of the same study
  (seeded derangement).

A condition's ``name`` is its label in the results table and includes what distinguishes variants
(``persona-qa``, ``persona-shuffled-bio``, ``discrete-paper``); the seed is in the spec only.

``paper=True`` on ``discrete``, ``chat-template`` and the persona conditions applies the authors'
clean-ups and truncation as their scripts do (after the preamble / discrete unwrapping), so the
paper's numbers can be reproduced condition by condition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from psych201.data.records import ResponseSpan, Session
from psych201.data.variants import (
    PAPER_MAX_CHARS,
    discrete_variant,
    is_discrete_response,
    paper_variant,
)
from psych201.prompts.chat_condition import ChatTemplateCondition
from psych201.prompts.condition_errors import ConditionUnavailableError, IneligibleSessionError
from psych201.prompts.options import response_options
from psych201.prompts.persona import (
    PERSONA_MODES,
    PERSONA_WORDING_VERSION,
    PersonaMode,
    has_persona,
    persona_preamble,
    shuffled_donors,
)
from psych201.prompts.records import ConditionRole, Prompt
from psych201.prompts.tokenizer import Tokenizer

CONDITION_NAMES: tuple[str, ...] = (
    "raw",
    "no-persona",
    "paper",
    "discrete",
    "chat-template",
    "persona",
    "persona-shuffled",
)
DEFAULT_CONDITION = "raw"


@runtime_checkable
class Condition(Protocol):
    """What every prompt condition offers (see the module docstring for the built-in ones)."""

    @property
    def name(self) -> str:
        """Label written into the results' ``condition`` column (mode included, seed not)."""
        ...

    @property
    def role(self) -> ConditionRole:
        """What the analyses use it for (recorded in the run manifest, not in the run hash)."""
        ...

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description of everything that changes the prompts (run hash)."""
        ...

    def eligible(self, session: Session) -> bool:
        """Whether this condition scores ``session`` at all."""
        ...

    def render_study(self, sessions: Sequence[Session]) -> list[Prompt]:
        """One prompt per session, same order. Pass all eligible sessions of a study at once."""
        ...


def _check_eligible(condition: Condition, sessions: Sequence[Session]) -> None:
    for session in sessions:
        if not condition.eligible(session):
            raise IneligibleSessionError(
                f"condition {condition.name!r} does not apply to {session.study} line "
                f"{session.line} (participant {session.participant}): filter sessions with "
                "condition.eligible() first"
            )


def _prompt_from_session(
    variant: Session, original: Session, condition: str, *, marker_aligned: bool = True
) -> Prompt:
    return Prompt(
        text=variant.text,
        spans=variant.responses,
        condition=condition,
        n_dropped=len(original.responses) - len(variant.responses),
        marker_aligned=marker_aligned,
    )


@dataclass(frozen=True)
class RawCondition:
    """The session text and its spans unchanged; ``only_with_metadata`` makes it ``no-persona``."""

    role: ClassVar[ConditionRole] = ConditionRole.MAIN
    only_with_metadata: bool = False
    #: ``no-persona`` with ``paper=True`` is the reference of the paper-mode persona cells.
    paper: bool = False
    max_chars: int = PAPER_MAX_CHARS
    #: Carry the offered option sets (the NLLs are unchanged; the offered-option columns fill).
    offered: bool = False

    @property
    def name(self) -> str:
        base = "no-persona" if self.only_with_metadata else "raw"
        return f"{base}-paper" if self.paper else base

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"condition": self.name}
        if self.paper:
            spec["max_chars"] = self.max_chars
        if self.offered:  # only when on: runs scored without it keep their hash
            spec["offered"] = True
        return spec

    def eligible(self, session: Session) -> bool:
        return has_persona(session) if self.only_with_metadata else True

    def render_study(self, sessions: Sequence[Session]) -> list[Prompt]:
        _check_eligible(self, sessions)
        if self.paper:
            return [
                _prompt_from_session(paper_variant(s, self.max_chars), s, self.name)
                for s in sessions
            ]
        prompts = [_prompt_from_session(s, s, self.name) for s in sessions]
        if not self.offered:
            return prompts
        return [
            dataclasses.replace(prompt, options=tuple(response_options(session)))
            for prompt, session in zip(prompts, sessions, strict=True)
        ]


@dataclass(frozen=True)
class PaperCondition:
    """The authors' ``safe_truncate_angle``: ``text[:max_chars]``, clean-ups, no unclosed ``<<``.

    The clean-ups change some responses (``<<-0.8>>`` is scored as `` -0.8``, trailing whitespace
    is removed), exactly as the paper scored them; spans hold the cleaned text.
    """

    role: ClassVar[ConditionRole] = ConditionRole.MAIN
    max_chars: int = PAPER_MAX_CHARS

    @property
    def name(self) -> str:
        return "paper"

    def spec(self) -> dict[str, Any]:
        return {"condition": self.name, "max_chars": self.max_chars}

    def eligible(self, session: Session) -> bool:
        return True

    def render_study(self, sessions: Sequence[Session]) -> list[Prompt]:
        return [
            _prompt_from_session(paper_variant(s, self.max_chars), s, self.name) for s in sessions
        ]


@dataclass(frozen=True)
class DiscreteCondition:
    """Only one-letter responses are scored; the others stay in the text as context.

    Each prompt carries ``options``: the option set offered for each span where the transcript
    states it (:func:`psych201.prompts.options.response_options`), for accuracy restricted to the
    offered options. ``paper=True`` then applies the authors' clean-ups and truncation.
    """

    role: ClassVar[ConditionRole] = ConditionRole.DISCRETE
    paper: bool = False
    max_chars: int = PAPER_MAX_CHARS

    @property
    def name(self) -> str:
        return "discrete-paper" if self.paper else "discrete"

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"condition": "discrete", "paper": self.paper}
        if self.paper:
            spec["max_chars"] = self.max_chars
        return spec

    def eligible(self, session: Session) -> bool:
        return any(is_discrete_response(r.text) for r in session.responses)

    def render_study(self, sessions: Sequence[Session]) -> list[Prompt]:
        _check_eligible(self, sessions)
        prompts = []
        for session in sessions:
            variant = discrete_variant(session)
            if self.paper:
                variant = paper_variant(variant, self.max_chars)
            offered = dict(
                zip((r.index for r in session.responses), response_options(session), strict=True)
            )
            prompt = _prompt_from_session(variant, session, self.name)
            options = tuple(offered[s.index] for s in prompt.spans)
            prompts.append(dataclasses.replace(prompt, options=options))
        return prompts


@dataclass(frozen=True)
class PersonaCondition:
    """A persona preamble from harmonised metadata before the unchanged transcript.

    ``shuffled=True`` is the control the paper lacks: the preamble is built from the metadata of
    another participant of the same study, paired by a seeded derangement over the sessions given
    to :meth:`render_study` (so pass a study's eligible sessions in one call). A study with a single
    eligible session has nobody to borrow from: its prompt has no spans (all responses counted in
    ``n_dropped``). ``paper=True`` applies the authors' clean-ups and truncation after the
    preamble, as ``eval_meta.py`` does.
    """

    mode: PersonaMode = "interview"
    shuffled: bool = False
    seed: int = 0
    paper: bool = False
    max_chars: int = PAPER_MAX_CHARS

    def __post_init__(self) -> None:
        if self.mode not in PERSONA_MODES:
            raise ValueError(
                f"unknown persona mode {self.mode!r}; choose one of {', '.join(PERSONA_MODES)}"
            )

    @property
    def role(self) -> ConditionRole:
        return ConditionRole.PERSONA_SHUFFLED if self.shuffled else ConditionRole.PERSONA

    @property
    def name(self) -> str:
        parts = ["persona"]
        if self.shuffled:
            parts.append("shuffled")
        if self.mode != "interview":
            parts.append(self.mode)
        if self.paper:
            parts.append("paper")
        return "-".join(parts)

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "condition": "persona-shuffled" if self.shuffled else "persona",
            "mode": self.mode,
            "wording_version": PERSONA_WORDING_VERSION,
            "paper": self.paper,
        }
        if self.shuffled:
            spec["seed"] = self.seed
        if self.paper:
            spec["max_chars"] = self.max_chars
        return spec

    def eligible(self, session: Session) -> bool:
        return has_persona(session, blank_present=self.paper)

    def render_study(self, sessions: Sequence[Session]) -> list[Prompt]:
        _check_eligible(self, sessions)
        by_key = {s.key: s for s in sessions}
        donors = shuffled_donors(sessions, self.seed) if self.shuffled else {}
        prompts = []
        for session in sessions:
            if self.shuffled and session.key not in donors:
                # Nobody to borrow from: keep the text (engines expect one) but score nothing.
                dropped = len(session.responses)
                prompts.append(Prompt(session.text, (), self.name, n_dropped=dropped))
                continue
            source = by_key[donors[session.key]] if self.shuffled else session
            preamble = persona_preamble(source.harmonised, self.mode, blank_present=self.paper)
            variant = _prepend(session, preamble)
            if self.paper:
                variant = paper_variant(variant, self.max_chars)
            prompts.append(_prompt_from_session(variant, session, self.name))
        return prompts


def _prepend(session: Session, prefix: str) -> Session:
    """``session`` with ``prefix`` before its text and every span shifted accordingly."""
    shift = len(prefix)
    spans = tuple(
        ResponseSpan(r.index, r.start + shift, r.end + shift, r.text) for r in session.responses
    )
    return dataclasses.replace(session, text=prefix + session.text, responses=spans)


_Factory = Callable[..., Condition]


def _raw(**params: Any) -> Condition:
    return RawCondition(**params)


def _no_persona(**params: Any) -> Condition:
    return RawCondition(only_with_metadata=True, **params)


_FACTORIES: dict[str, tuple[_Factory, frozenset[str]]] = {
    "raw": (_raw, frozenset({"offered"})),
    "no-persona": (_no_persona, frozenset({"paper", "max_chars"})),
    "paper": (PaperCondition, frozenset({"max_chars"})),
    "discrete": (DiscreteCondition, frozenset({"paper", "max_chars"})),
    "chat-template": (ChatTemplateCondition, frozenset({"paper", "max_chars"})),
    "persona": (PersonaCondition, frozenset({"mode", "paper", "max_chars"})),
    "persona-shuffled": (PersonaCondition, frozenset({"mode", "paper", "max_chars"})),
}


def make_condition(name: str, *, tokenizer: Tokenizer | None = None, seed: int = 0,
                   **params: Any) -> Condition:
    """Build a condition by name (:data:`CONDITION_NAMES`) with its parameters.

    Unknown names and parameters a condition does not take are errors, not silently ignored.
    ``tokenizer`` is required by ``chat-template`` only; ``seed`` matters to ``persona-shuffled``
    only (and is not part of any other condition's spec).
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown condition {name!r}; choose one of {', '.join(CONDITION_NAMES)}")
    factory, allowed = _FACTORIES[name]
    unknown = sorted(set(params) - allowed)
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise ValueError(
            f"condition {name!r} does not take {', '.join(unknown)} (parameters: {accepted})"
        )
    for key in ("paper", "offered"):
        if key in params and not isinstance(params[key], bool):
            raise ValueError(f"{name}: {key} must be true or false, got {params[key]!r}")
    if "max_chars" in params and (
        isinstance(params["max_chars"], bool)
        or not isinstance(params["max_chars"], int)
        or params["max_chars"] < 1
    ):
        raise ValueError(
            f"{name}: max_chars must be a positive integer, got {params['max_chars']!r}"
        )
    if name == "chat-template":
        if tokenizer is None:
            raise ConditionUnavailableError("condition 'chat-template' needs the model's tokenizer")
        return ChatTemplateCondition(tokenizer, **params)
    if name == "persona-shuffled":
        return PersonaCondition(shuffled=True, seed=seed, **params)
    return factory(**params)


def registered_role(name: str) -> ConditionRole:
    """The role of the registered condition a results table's condition ``name`` comes from,
    for tables whose runs did not record one: the longest registered name that ``name`` is or
    starts with (``persona-shuffled-bio`` → ``persona-shuffled``); any other name is a main
    condition."""
    key = name.lower().replace("_", "-")
    for registered in sorted(_FACTORIES, key=len, reverse=True):
        if key == registered or key.startswith((f"{registered}-", f"{registered}:")):
            factory = _FACTORIES[registered][0]
            declared = getattr(factory, "role", None)
            if isinstance(declared, ConditionRole):  # a class that declares it
                return declared
            return make_condition(registered).role
    return ConditionRole.MAIN
