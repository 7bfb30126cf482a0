"""psych201: measure how human-like language models are on Psych-201 transcripts."""

from psych201.data.records import ResponseSpan, Session, SessionKey
from psych201.prompts.records import Prompt
from psych201.results.schema import RESPONSE_SCHEMA, ResponseScore, RunSpec
from psych201.scoring.engine import Engine, EngineInfo, ScoringRequest, TokenScores

__version__ = "0.1.0"

__all__ = [
    "RESPONSE_SCHEMA",
    "Engine",
    "EngineInfo",
    "Prompt",
    "ResponseScore",
    "ResponseSpan",
    "RunSpec",
    "ScoringRequest",
    "Session",
    "SessionKey",
    "TokenScores",
    "__version__",
]
