"""Orchestration of a scoring run: data → prompts → scoring → results, resumable.

* :mod:`~psych201.pipeline.config`: the validated run configuration (:class:`ScoreConfig`),
  the output directory and device checks; all run before anything loads.
* :mod:`~psych201.pipeline.selection`: which sessions a run scores, and the data fingerprint.
* :mod:`~psych201.pipeline.setup`: one function, :func:`build_setup`, from a configuration to a
  scorer for any registered engine.
* :mod:`~psych201.pipeline.run`: the resumable run loop (:func:`score_run`), with
  :mod:`~psych201.pipeline.chunks` (one chunk's scores and rows) and
  :mod:`~psych201.pipeline.resume` (recognising a run directory before the model loads).
"""

from psych201.pipeline.config import (
    MIN_WINDOW_TOKENS,
    OnError,
    PipelineError,
    ScoreConfig,
    SessionScoringError,
    Split,
    check_device,
    check_output_dir,
    validate_run,
    window_config,
)
from psych201.pipeline.run import ProgressSink, RunSummary, score_run
from psych201.pipeline.selection import data_fingerprint, shard_filter
from psych201.pipeline.setup import (
    DefaultEngineLoader,
    ScoringSetup,
    SetupLoader,
    build_setup,
    build_spec,
    engine_choices,
    load_hf_setup,
    setup_from_loaded,
    tokenizer_info,
)

__all__ = [
    "MIN_WINDOW_TOKENS",
    "DefaultEngineLoader",
    "OnError",
    "PipelineError",
    "ProgressSink",
    "RunSummary",
    "ScoreConfig",
    "ScoringSetup",
    "SessionScoringError",
    "SetupLoader",
    "Split",
    "build_setup",
    "build_spec",
    "check_device",
    "check_output_dir",
    "data_fingerprint",
    "engine_choices",
    "load_hf_setup",
    "score_run",
    "setup_from_loaded",
    "shard_filter",
    "tokenizer_info",
    "validate_run",
    "window_config",
]
