"""Running a study's cells: one model loaded once for all its cells, a failing cell reported."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from psych201.errors import Psych201Error, RunLockedError
from psych201.pipeline import (
    PipelineError,
    ProgressSink,
    RunSummary,
    ScoreConfig,
    ScoringSetup,
    build_setup,
    score_run,
)
from psych201.prompts.conditions import ConditionUnavailableError
from psych201.study.cells import Cell, adapter_folder, by_model, expand, score_config
from psych201.study.resume import (
    SKIP_FILE,
    is_complete,
    record_skip,
    skipped_before,
    table_rows,
)
from psych201.study.schema import (
    AdapterEntry,
    ModelEngine,
    StudyFile,
    StudyFileError,
    one_line,
)

if TYPE_CHECKING:
    from psych201.lab.train import StepLog

CellStatus = Literal["done", "scored", "skipped", "empty", "failed"]


@dataclass(frozen=True)
class CellOutcome:
    cell: Cell
    status: CellStatus
    message: str = ""
    summary: RunSummary | None = None


@dataclass(frozen=True)
class StudyProgress:
    """Where a study stands when cell ``index`` (1-based) of ``total`` starts."""

    index: int
    total: int
    cell: Cell
    elapsed_s: float
    eta_s: float | None  # None until a cell has done work to time

    def line(self) -> str:
        eta = "–" if self.eta_s is None else duration_text(self.eta_s)
        return (f"[{self.index}/{self.total}] {self.cell.label} · elapsed "
                f"{duration_text(self.elapsed_s)} · ETA {eta}")


def eta_seconds(work_s: float, worked: int, remaining: int) -> float | None:
    """Remaining time by cells: the mean time of the cells that did work, times those left.

    Finished and skipped cells take no time and are not counted, so a resumed study does not
    promise the impossible; ``None`` until one cell has been timed.
    """
    if worked == 0:
        return None
    return work_s / worked * remaining


def duration_text(seconds: float) -> str:
    """``1h02m`` or ``3m05s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@dataclass(frozen=True)
class StudyOutcome:
    study: StudyFile
    outcomes: tuple[CellOutcome, ...]
    wall_s: float
    run_dirs: tuple[Path, ...] = field(default=())

    @property
    def scored_cells(self) -> int:
        return sum(o.status == "scored" for o in self.outcomes)

    @property
    def failed(self) -> tuple[CellOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == "failed")

    def report_notes(self) -> tuple[str, ...]:
        """The cells that are not in the report (skipped, empty, failed) and why, one note per
        reason (a model that could not load fails all its cells with one reason)."""
        groups: dict[tuple[str, str], list[str]] = {}
        for o in self.outcomes:
            if o.status in ("skipped", "empty", "failed"):
                groups.setdefault((o.status, o.message), []).append(o.cell.label)
        notes = []
        for (status, message), labels in groups.items():
            if len(labels) == 1:
                notes.append(f"cell {labels[0]} {status}: {message}")
            else:
                shown = "; ".join(labels[:3]) + ("; …" if len(labels) > 3 else "")
                notes.append(f"{len(labels)} cells {status} ({shown}): {message}")
        return tuple(notes)


SetupLoader = Callable[[ScoreConfig], ScoringSetup]


#: Errors that fail one cell (named in one line) while the other cells go on.
CELL_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, Psych201Error)
#: Loading a model can also fail for want of a library or a device (an engine not installed,
#: CUDA asked of a CPU build): that fails the model's cells, not the study.
LOAD_ERRORS: tuple[type[BaseException], ...] = (*CELL_ERRORS, ImportError, RuntimeError)


def _default_setup(config: ScoreConfig, *, engines: Mapping[str, ModelEngine],
                   adapters: Mapping[str, AdapterEntry] | None = None,
                   note: Callable[[str], None] = print) -> ScoringSetup:
    engine = engines[config.model]
    engine_args = engine_settings(engine)
    adapter = (adapters or {}).get(config.model)
    if adapter is None:
        return build_setup(config, engine=engine.name, engine_args=engine_args)
    # A study adapter: trained into its folder the first time one of its cells runs.
    from psych201.lab.adapter_plan import ensure_adapter
    from psych201.lab.scoring import scoring_setup

    plan = adapter.plan()
    cache = config.model_args.get("cache_dir")
    ensure_adapter(adapter.base, plan, plan.data_spec(None), Path(config.model), note=note,
                   progress=_training_progress(adapter.name, plan.train_settings().steps, note),
                   cache_dir=Path(cache) if cache else None)
    return scoring_setup(config, engine_args)


def _training_progress(name: str, steps: int,
                       note: Callable[[str], None]) -> Callable[[StepLog], None]:
    every = max(1, steps // 10)

    def report(log: StepLog) -> None:
        if log.step % every == 0 or log.step == steps:
            note(f"{name}: step {log.step}/{steps}, loss {log.loss:.3f}, {log.seconds:.1f} s")

    return report


def check_adapters_current(study: StudyFile, out: Path | None = None) -> None:
    """Refuse (before any work) an adapter folder that holds another training than the study's:
    its cells were scored with that other adapter."""
    if not study.adapters:
        return
    from psych201.lab.adapter_plan import stale_adapter

    for adapter in study.adapters:
        folder = adapter_folder(study, adapter.name, out)
        plan = adapter.plan()
        stale = stale_adapter(folder, adapter.base, plan, plan.data_spec(None))
        if stale is not None:
            raise StudyFileError(
                f"adapter {adapter.name}: {stale}, not as the study file says now; delete that "
                f"folder and the adapter's score directories to retrain, or give it a new name")


def run_study(
    study: StudyFile,
    *,
    limit: int | None = None,
    out: Path | None = None,
    load_setup: SetupLoader | None = None,
    progress: Callable[[Cell], ProgressSink | None] | None = None,
    note: Callable[[str], None] = print,
    argv: list[str] | None = None,
    on_cell: Callable[[StudyProgress], None] | None = None,
    loading: Callable[[str], AbstractContextManager[Any]] | None = None,
    only: Sequence[Cell] | None = None,
) -> StudyOutcome:
    """Run every unfinished cell (``only``: just these, e.g. a share of the model groups); one
    failing cell does not stop the others (it is reported).

    ``on_cell`` hears where the study stands before each cell (cell i/N, elapsed, ETA);
    ``loading(model)`` wraps each model load (a spinner in the CLI). A model that cannot be
    loaded fails each of its cells with the same one-line reason, loaded once.
    """
    check_adapters_current(study, out)
    every = expand(study, limit=limit, out=out)
    if load_setup is None:
        adapters = {str(adapter_folder(study, a.name, out)): a for a in study.adapters}
        engines = {c.source or c.model: c.engine for c in every}
        load_setup = functools.partial(_default_setup, engines=engines, adapters=adapters,
                                       note=note)
    started = time.perf_counter()
    cells = list(by_model(every if only is None else only))
    setups: dict[str, ScoringSetup] = {}
    load_failed: dict[str, str] = {}
    outcomes: list[CellOutcome] = []
    work_s, worked = 0.0, 0
    try:
        for index, cell in enumerate(cells, 1):
            if on_cell is not None:
                on_cell(StudyProgress(index, len(cells), cell, time.perf_counter() - started,
                                      eta_seconds(work_s, worked, len(cells) - index + 1)))
            cell_started = time.perf_counter()
            outcome = _run_cell(cell, study, setups, load_failed, load_setup=load_setup,
                                progress=progress, note=note, argv=argv, loading=loading)
            outcomes.append(outcome)
            if outcome.status in ("scored", "empty") or (
                    outcome.status == "failed" and cell.model not in load_failed):
                work_s += time.perf_counter() - cell_started
                worked += 1
    finally:
        release(setups)
    run_dirs = tuple(o.cell.out for o in outcomes if o.status in ("done", "scored"))
    return StudyOutcome(study, tuple(outcomes), time.perf_counter() - started, run_dirs)


def engine_settings(engine: ModelEngine) -> dict[str, Any]:
    """The engine args a model runs with: vLLM spreads a model over its GPUs by tensor
    parallelism unless the study file says otherwise."""
    args = dict(engine.args)
    if engine.name == "vllm" and engine.gpus and engine.gpus > 1:
        args.setdefault("tensor_parallel_size", engine.gpus)
    return args


def release(setups: dict[str, ScoringSetup]) -> None:
    """Free the loaded models (the previous model group's weights, a vLLM engine's workers)."""
    for setup in setups.values():
        setup.close()
    setups.clear()


def _run_cell(
    cell: Cell,
    study: StudyFile,
    setups: dict[str, ScoringSetup],
    load_failed: dict[str, str],
    *,
    load_setup: SetupLoader,
    progress: Callable[[Cell], ProgressSink | None] | None,
    note: Callable[[str], None],
    argv: list[str] | None,
    loading: Callable[[str], AbstractContextManager[Any]] | None,
) -> CellOutcome:
    config = score_config(cell, study)
    if is_complete(cell, config):
        return _with_rows(cell, CellOutcome(cell, "done", "already complete"), note,
                          "complete, skipped")
    known = skipped_before(cell)
    if known is not None:
        note(f"{cell.label}: skipped: {known} (recorded in {cell.out / SKIP_FILE})")
        return CellOutcome(cell, "skipped", known)
    if cell.model in load_failed:
        message = load_failed[cell.model]
        note(f"{cell.label}: FAILED: {message}")
        return CellOutcome(cell, "failed", message)
    if cell.model not in setups:
        release(setups)  # cells come grouped by model: the previous one is done
        note(f"loading {cell.model}")
        try:
            with loading(cell.model) if loading is not None else nullcontext():
                setups[cell.model] = load_setup(replace(config, condition="raw"))
        except LOAD_ERRORS as exc:
            message = f"model {cell.model!r} could not be loaded: {one_line(exc)}"
            load_failed[cell.model] = message
            note(f"{cell.label}: FAILED: {message}")
            return CellOutcome(cell, "failed", message)
    try:
        summary = score_run(
            config,
            setup=setups[cell.model],
            progress=progress(cell) if progress else None,
            argv=argv,
        )
    except CELL_ERRORS as exc:
        if isinstance(exc, RunLockedError) or isinstance(exc.__cause__, RunLockedError):
            # Two processes on one study share the cells out: this one is the other's now.
            message = ("being scored by another psych201 process; rerun the study when it is "
                       "done to include it")
            note(f"{cell.label}: skipped: {message}")
            return CellOutcome(cell, "skipped", message)
        # score_run wraps a condition that cannot apply to this model (no chat template).
        if isinstance(exc, PipelineError) and isinstance(exc.__cause__,
                                                         ConditionUnavailableError):
            record_skip(cell, str(exc))
            note(f"{cell.label}: skipped: {exc}")
            return CellOutcome(cell, "skipped", str(exc))
        message = f"model {cell.model!r}: {one_line(exc)}"
        note(f"{cell.label}: FAILED: {message}")
        return CellOutcome(cell, "failed", message)
    if summary.failed:
        message = f"{len(summary.failed)} sessions failed ({summary.scored_now} scored)"
        note(f"{cell.label}: FAILED: {message}")
        return CellOutcome(cell, "failed", message, summary)
    outcome = CellOutcome(cell, "scored", f"{summary.scored_now} sessions", summary)
    return _with_rows(cell, outcome, note,
                      f"{summary.scored_now} sessions scored in {summary.wall_s:.1f} s")


#: Why a finished cell can hold no response (noted in the report instead of breaking it).
EMPTY_REASON = ("no responses to score: no selected participant fits this condition (a persona "
                "needs metadata, a shuffled persona another participant's)")


def _with_rows(cell: Cell, outcome: CellOutcome, note: Callable[[str], None],
               done: str) -> CellOutcome:
    """``outcome``, or an "empty" one when the cell's finished table has no row."""
    rows = table_rows(cell.out)
    if rows == 0:
        note(f"{cell.label}: empty: {EMPTY_REASON}")
        return replace(outcome, status="empty", message=EMPTY_REASON)
    if rows is None:
        message = "finished without a response table"
        note(f"{cell.label}: FAILED: {message}")
        return replace(outcome, status="failed", message=message)
    note(f"{cell.label}: {done}")
    return outcome


