"""psych201: measure how human-like language models are on Psych-201 transcripts.

The public API, one name per pipeline step. Records are imported eagerly (they are light);
everything that pulls in torch, transformers or the analysis stack is imported on first use, so
``import psych201`` and the CLI's ``--help`` stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from psych201.data.records import ResponseSpan, Session, SessionKey
from psych201.prompts.records import Prompt
from psych201.results.schema import RESPONSE_SCHEMA, ResponseScore, RunSpec
from psych201.scoring.engine import Engine, EngineInfo, ScoringRequest, TokenScores

if TYPE_CHECKING:
    from psych201.analysis.registry import load_registry
    from psych201.analysis.summary import summarize
    from psych201.analysis.tables import read_results
    from psych201.data.readers import discover_studies, iter_sessions
    from psych201.data.split import iter_split
    from psych201.data.variants import discrete_variant, paper_variant
    from psych201.pipeline import ScoreConfig, score_run
    from psych201.prompts.conditions import make_condition
    from psych201.report.make import report_from_runs
    from psych201.results.io import read_manifest, read_responses
    from psych201.scoring.align import align
    from psych201.scoring.hf import HFEngine
    from psych201.scoring.models import load_model
    from psych201.scoring.scorer import SessionScorer, SpanScore, WindowConfig
    from psych201.simulate import simulate_study, write_study
    from psych201.study import load_study, run_study

__version__ = "0.1.0"

_LAZY = {
    "discover_studies": "psych201.data.readers",
    "iter_sessions": "psych201.data.readers",
    "iter_split": "psych201.data.split",
    "paper_variant": "psych201.data.variants",
    "discrete_variant": "psych201.data.variants",
    "make_condition": "psych201.prompts.conditions",
    "align": "psych201.scoring.align",
    "load_model": "psych201.scoring.models",
    "HFEngine": "psych201.scoring.hf",
    "SessionScorer": "psych201.scoring.scorer",
    "SpanScore": "psych201.scoring.scorer",
    "WindowConfig": "psych201.scoring.scorer",
    "ScoreConfig": "psych201.pipeline",
    "score_run": "psych201.pipeline",
    "read_responses": "psych201.results.io",
    "read_manifest": "psych201.results.io",
    "read_results": "psych201.analysis.tables",
    "load_registry": "psych201.analysis.registry",
    "summarize": "psych201.analysis.summary",
    "report_from_runs": "psych201.report.make",
    "simulate_study": "psych201.simulate",
    "write_study": "psych201.simulate",
    "load_study": "psych201.study",
    "run_study": "psych201.study",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'psych201' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "RESPONSE_SCHEMA",
    "Engine",
    "EngineInfo",
    "HFEngine",
    "Prompt",
    "ResponseScore",
    "ResponseSpan",
    "RunSpec",
    "ScoreConfig",
    "ScoringRequest",
    "Session",
    "SessionKey",
    "SessionScorer",
    "SpanScore",
    "TokenScores",
    "WindowConfig",
    "__version__",
    "align",
    "discover_studies",
    "discrete_variant",
    "iter_sessions",
    "iter_split",
    "load_model",
    "load_registry",
    "load_study",
    "make_condition",
    "paper_variant",
    "read_manifest",
    "read_responses",
    "read_results",
    "report_from_runs",
    "run_study",
    "score_run",
    "simulate_study",
    "summarize",
    "write_study",
]
