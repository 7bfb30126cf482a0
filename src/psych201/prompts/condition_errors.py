"""Why a prompt condition cannot score: the session is not eligible for it, or the condition
cannot be built for this model (e.g. the tokenizer has no chat template). Both are importable
from :mod:`psych201.prompts.conditions` too."""

from __future__ import annotations

from psych201.errors import UsageError


class IneligibleSessionError(UsageError):
    """A session was handed to a condition that does not apply to it."""


class ConditionUnavailableError(UsageError):
    """The condition cannot be built for this model (e.g. chat-template without a chat template,
    as for base models). A study runner can skip such a (model, condition) cell."""
