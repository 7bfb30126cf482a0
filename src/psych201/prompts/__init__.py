"""psych201.prompts: turn sessions into the exact texts to score, with exact response spans.

Conditions (:func:`make_condition`): ``raw`` (default), ``no-persona``, ``paper``, ``discrete``,
``chat-template``, ``persona`` (modes interview | qa | bio | portray) and ``persona-shuffled``.
:func:`response_options` reads the option set offered for each response from the transcript.
"""

from psych201.prompts.conditions import (
    CONDITION_NAMES,
    DEFAULT_CONDITION,
    Condition,
    ConditionUnavailableError,
    IneligibleSessionError,
    make_condition,
)
from psych201.prompts.options import response_options
from psych201.prompts.persona import PERSONA_MODES, has_persona, persona_preamble
from psych201.prompts.records import Prompt

__all__ = [
    "CONDITION_NAMES",
    "DEFAULT_CONDITION",
    "PERSONA_MODES",
    "Condition",
    "ConditionUnavailableError",
    "IneligibleSessionError",
    "Prompt",
    "has_persona",
    "make_condition",
    "persona_preamble",
    "response_options",
]
