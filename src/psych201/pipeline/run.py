"""The resumable run loop: score what is missing chunk by chunk, one atomic part per chunk.

:func:`score_run` reads the selected studies and split, renders each study's prompts with the
condition, scores the sessions that are not done yet in chunks, and writes each finished chunk as
an atomic Parquet part; at the end it combines the parts into ``responses.parquet``. Killing it at
any moment loses at most the chunk in flight, and rerunning the same command scores only what is
missing and ends with the same table as an uninterrupted run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from psych201.data.records import SessionKey
from psych201.pipeline.chunks import response_rows, scored_chunks
from psych201.pipeline.config import (
    PipelineError,
    ScoreConfig,
    SessionScoringError,
    validate_run,
)
from psych201.pipeline.resume import (
    FinishedRun,
)
from psych201.pipeline.run_open import OpenRun, open_run
from psych201.pipeline.selection import (
    ConditionCounts,
    chunk_keys,
    render,
    shard_filter,
    study_sessions,
)
from psych201.pipeline.setup import (
    ScoringSetup,
    SetupLoader,
)
from psych201.results.lock import lock_run_dir
from psych201.results.manifest import mark_complete, mark_status
from psych201.results.verify import table_problem
from psych201.results.writer import (
    RESPONSES_FILE,
    PartWriter,
    completed_sessions,
    damaged_parts,
    finalize,
    remove_stale_temporaries,
    set_aside_part,
)


class ProgressSink(Protocol):
    """Receives progress; the CLI draws it with rich. Units: sessions and characters."""

    def start(self, *, sessions: int, chars: int, already_done: int) -> None: ...
    def advance(self, *, sessions: int, chars: int) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass(frozen=True)
class RunSummary:
    """What a :func:`score_run` call did."""

    run_dir: Path
    config_hash: str
    sessions: int
    already_done: int
    scored_now: int
    failed: tuple[SessionKey, ...]
    responses: int
    wall_s: float
    table: Path | None


def score_run(
    config: ScoreConfig,
    *,
    setup: ScoringSetup | SetupLoader | None = None,
    progress: ProgressSink | None = None,
    argv: list[str] | None = None,
) -> RunSummary:
    """Score ``config`` into ``config.out`` (create, or resume the same configuration).

    ``setup`` replaces the default transformers engine (``build_setup(config)``); a callable is
    called only after the options, output directory and data have been checked. Raises
    :class:`PipelineError` (bad options, a session that cannot be scored), ``DataError`` (bad
    input, with file and line) or ``ResultsError`` (the directory holds another configuration);
    whatever finished before an error or interrupt stays saved for the next call. Another
    process scoring into ``config.out`` is refused (``RunDirLockedError``, naming its PID).
    """
    # Taken before the data is read or the model loaded: a second command on the same --out is
    # refused at once, and nothing is written into a directory another process owns.
    with lock_run_dir(config.out):
        return _score_locked(config, setup, progress, argv)


def _score_locked(
    config: ScoreConfig,
    setup: ScoringSetup | SetupLoader | None,
    progress: ProgressSink | None,
    argv: list[str] | None,
) -> RunSummary:
    started = time.perf_counter()
    validate_run(config)
    run = open_run(config, setup, argv)
    if isinstance(run, FinishedRun):  # nothing to score: no model was loaded
        return _rerun_finished(config, run, progress, argv, started)
    if isinstance(setup, ScoringSetup):  # the caller's: it may score more runs with it
        return _score_opened(run, progress, started)
    try:
        return _score_opened(run, progress, started)
    finally:
        run.setup.close()  # loaded here: freed however the run ends


def _score_opened(run: OpenRun, progress: ProgressSink | None, started: float) -> RunSummary:
    config = run.config
    for path in remove_stale_temporaries(config.out):
        _note(progress, f"removed {path.name}, left by an interrupted run")
    _set_aside_damaged_parts(run, progress)
    done = completed_sessions(config.out, config_hash=run.config_hash)
    stray = done - set(run.keys)
    if stray:
        raise PipelineError(
            f"{config.out}: its parts hold {len(stray)} sessions this run does not select "
            f"(e.g. {sorted(stray, key=str)[0]}); the directory is not from this configuration"
        )
    todo = [k for k in run.keys if k not in done]

    if not todo and run.manifest.get("status") == "complete":
        counts = {**run.manifest.get("counts", {}), "scored_now_sessions": 0}
        problem = table_problem(config.out, run.manifest)
        if problem is None:
            _note(progress, f"{config.out}: complete, nothing to score")
        else:  # the final table is not the one this run wrote: the parts are the truth
            _note(progress, f"{problem}; rebuilding it from the parts")
            counts["responses"] = finalize(config.out, config_hash=run.config_hash)[1]
        mark_complete(config.out, run.manifest, counts)
        return RunSummary(
            run_dir=config.out,
            config_hash=run.config_hash,
            sessions=len(run.keys),
            already_done=len(done),
            scored_now=0,
            failed=(),
            responses=int(counts.get("responses", 0)),
            wall_s=time.perf_counter() - started,
            table=config.out / RESPONSES_FILE,
        )
    if done:
        _note(progress, f"resuming: {len(done)} of {len(run.keys)} sessions already scored")
    mark_status(config.out, run.manifest, "running")
    if progress is not None:
        chars = sum(run.chars[k] for k in todo)
        progress.start(sessions=len(todo), chars=chars, already_done=len(done))

    outcome = _score_missing(run, set(todo), progress)

    table, rows_total = finalize(config.out, config_hash=run.config_hash)
    counts = {
        **outcome.counts.as_dict(),
        "sessions": len(run.keys),
        "responses": rows_total,
        "scored_now_sessions": outcome.scored,
        "failed_sessions": [[k.study, k.experiment, k.participant, k.line] for k in outcome.failed],
        "data_issues": {f"{sev}:{code}": n for sev, code, n in run.data_issues.summary()},
        "skipped_lines": run.data_issues.skipped_lines,
    }
    status = "incomplete" if outcome.failed else "complete"
    mark_complete(config.out, run.manifest, counts, status=status)
    return RunSummary(
        run_dir=config.out,
        config_hash=run.config_hash,
        sessions=len(run.keys),
        already_done=len(done),
        scored_now=outcome.scored,
        failed=tuple(outcome.failed),
        responses=rows_total,
        wall_s=time.perf_counter() - started,
        table=table,
    )


def _set_aside_damaged_parts(run: OpenRun, progress: ProgressSink | None) -> None:
    """Hash every part against its record (one read of each file, a small fraction of scoring
    it); a changed part is moved aside and its sessions rescored, never adopted."""
    records_required = bool(run.manifest.get("part_records"))
    damaged = damaged_parts(run.config.out, records_required=records_required)
    for path, reason in damaged.items():
        moved = set_aside_part(path)
        _note(progress, f"{path}: {reason}; moved aside to {moved.name}, its sessions are rescored")
    if damaged and run.manifest.get("invocations"):
        run.manifest["invocations"][-1]["rescored_parts"] = sorted(p.name for p in damaged)


def _rerun_finished(
    config: ScoreConfig,
    run: FinishedRun,
    progress: ProgressSink | None,
    argv: list[str] | None,
    started: float,
) -> RunSummary:
    """Record the invocation, rebuild a missing or damaged table from the parts, report."""
    from psych201.results.manifest import new_invocation, save_manifest

    manifest = run.manifest
    manifest["invocations"] = [
        *manifest.get("invocations", []),
        {**new_invocation(argv), "model_loaded": False},
    ]
    save_manifest(config.out, manifest)
    counts = {**manifest.get("counts", {}), "scored_now_sessions": 0}
    problem = table_problem(config.out, manifest)
    if problem is None:
        _note(progress, f"{config.out}: complete, nothing to score (model not loaded)")
    else:  # the final table is not the one this run wrote: the parts are the truth
        _note(progress, f"{problem}; rebuilding it from the parts")
        counts["responses"] = finalize(config.out, config_hash=run.config_hash)[1]
    mark_complete(config.out, manifest, counts)
    return RunSummary(
        run_dir=config.out,
        config_hash=run.config_hash,
        sessions=len(run.keys),
        already_done=len(run.keys),
        scored_now=0,
        failed=(),
        responses=int(counts.get("responses", 0)),
        wall_s=time.perf_counter() - started,
        table=config.out / RESPONSES_FILE,
    )


@dataclass
class _Outcome:
    scored: int
    failed: list[SessionKey]
    counts: ConditionCounts


def _score_missing(run: OpenRun, todo: set[SessionKey], progress: ProgressSink | None) -> _Outcome:
    """Render each study, score its missing sessions chunk by chunk, write a part per chunk."""
    config, condition = run.config, run.condition
    in_shard = shard_filter(config.shard)
    ordinal = {k: i for i, k in enumerate(run.keys)}
    writer = PartWriter(config.out, run.config_hash)
    outcome = _Outcome(scored=0, failed=[], counts=ConditionCounts())
    for plan in run.plans:
        sessions = plan.sessions
        if sessions is None:  # too large to have kept from the first pass
            sessions = list(study_sessions(config, plan.source))
            if [s.key for s in sessions] != plan.keys:
                raise PipelineError(f"{plan.source.path}: the data changed during the run")
        # The whole study is rendered, done sessions included: a shuffled persona must draw
        # from the same pool in every run, shard and resume.
        prompts = render(condition, sessions)
        outcome.counts.add_study(sessions, prompts, in_shard)
        by_key = {s.key: s for s in sessions}
        missing = [s.key for s in sessions if s.key in todo]
        chunks = list(chunk_keys(missing, run.chars, config.part_size, config.part_chars))
        items = [[(by_key[k], prompts.get(k)) for k in chunk] for chunk in chunks]
        for chunk, (results, errors) in zip(
            chunks, scored_chunks(run.setup.scorer, items), strict=True
        ):
            finished = [k for k in chunk if k in results]
            if finished:
                rows = [
                    row
                    for k in finished
                    for row in response_rows(
                        run.setup.model_id, condition.name, by_key[k], prompts.get(k), results[k]
                    )
                ]
                writer.write(rows, finished, first=ordinal[finished[0]], last=ordinal[finished[-1]])
                outcome.scored += len(finished)
                if progress is not None:
                    chars = sum(run.chars[k] for k in finished)
                    progress.advance(sessions=len(finished), chars=chars)
            for session, reason in errors:
                if config.on_error == "fail":
                    raise SessionScoringError(session, reason)
                outcome.failed.append(session.key)
                _note(progress, f"skipped: {SessionScoringError(session, reason)}")
    return outcome


def _note(progress: ProgressSink | None, message: str) -> None:
    if progress is not None:
        progress.note(message)
