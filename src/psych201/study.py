"""A whole study in one file: models × conditions × data, run cell by cell with resume.

``psych201 run STUDY.yaml`` reads a :class:`StudyFile`, expands it into :class:`Cell` records
(one run directory each), scores the cells that are not finished and leaves the finished ones
alone: a cell whose manifest says *complete* for the same model, condition, data, split, limit
and seed is not even opened, so rerunning a finished study loads no model and scores nothing.
A model is loaded once and shared by all of its cells. A condition a model cannot take (the
chat-template control on a model without a chat template) is skipped with a note, not a failure,
and the skip is recorded in the cell's directory so a rerun loads no model at all.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from psych201.errors import Psych201Error, RunLockedError, UsageError
from psych201.pipeline import (
    PipelineError,
    ProgressSink,
    RunSummary,
    ScoreConfig,
    ScoringSetup,
    build_setup,
    score_run,
    window_config,
)
from psych201.prompts.conditions import CONDITION_NAMES, ConditionUnavailableError
from psych201.results.manifest import load_manifest
from psych201.results.writer import ResultsError
from psych201.simulate.demo import DEMO_DIR, DEMO_NAME
from psych201.yaml_files import read_yaml_model

if TYPE_CHECKING:  # the lab loads torch: only studies that train adapters import it
    from psych201.lab.adapter_plan import AdapterPlan
    from psych201.lab.train import StepLog

#: ``path: demo`` in a study file means the bundled simulated studies.
DEMO_DATA = DEMO_NAME


class StudyFileError(UsageError):  # a ValueError too, for older callers
    """The study file is missing, not YAML, or does not follow the schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _plain_name(value: str) -> str:
    """A name that becomes one directory under ``out``: no separators, no ``..``."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value:
        raise ValueError(f"{value!r} must be a plain name (no '/', '\\', '.' or '..'): it "
                         "names a directory inside the study's output folder")
    return value


def _inside(value: str) -> str:
    """A relative path that stays inside ``out`` (no absolute path, no ``..`` part)."""
    parts = re.split(r"[/\\]", value)
    if (not value or "\0" in value or value.startswith(("/", "\\", "~"))
            or re.match(r"^[A-Za-z]:", value) or ".." in parts
            or not parts[-1] or parts[-1] == "."):
        raise ValueError(f"{value!r} must be a file name relative to the study's output folder "
                         "(no absolute path, no '..')")
    return value


class DataEntry(_Strict):
    """One dataset of the study and which of its participants to score."""

    name: str
    path: str
    split: Literal["test", "train", "all"] = "test"
    studies: tuple[str, ...] = ()
    limit: int | None = Field(default=None, ge=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _plain_name(value)


class ConditionEntry(_Strict):
    """A prompt condition and its parameters (``{name: persona, mode: qa}``)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        parts = [self.name, *(f"{k}={v}" for k, v in sorted(self.params.items()))]
        return _safe("-".join(parts))


class EngineSettings(_Strict):
    """How every model of the study is run."""

    device: str = "cpu"
    dtype: str = "float32"
    batch_tokens: int = Field(default=8192, ge=1)
    alignment: str = "offsets"
    max_tokens: int | None = Field(default=None, ge=2)
    window_overlap: int | None = Field(default=None, ge=0)
    model_args: dict[str, Any] = Field(default_factory=dict)
    #: The transformers engine's settings (``--engine-args``), e.g. ``{temperatures: "on"}``
    #: to score the calibration control's temperature grid on a CPU.
    engine_args: dict[str, str | int | float | bool] = Field(default_factory=dict)


class AdapterEntry(_Strict):
    """A LoRA adapter of ``base`` that the study trains (once, into ``<out>/adapters/<name>``)
    and then scores like any model listed under ``models`` by its name.

    The recipes are the post-training lab's (``psych201.lab``) that need no participants:
    ``instruct`` (generated assistant dialogues) and ``preference`` (simulated risky choices);
    ``settings`` and ``data`` are its training settings and data options.
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    base: str = Field(min_length=1)
    recipe: Literal["instruct", "preference"]
    settings: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)

    def plan(self) -> AdapterPlan:
        from psych201.lab.adapter_plan import AdapterPlan

        return AdapterPlan(name=self.name, recipe=self.recipe, settings=self.settings,
                           data=self.data)


#: Where a study keeps the adapters it trains, under its output folder.
ADAPTERS_DIR = "adapters"


class StudyFile(_Strict):
    """The schema of ``studies/*.yaml`` (unknown keys are refused)."""

    name: str
    out: str = "runs"
    models: tuple[str, ...]
    adapters: tuple[AdapterEntry, ...] = ()
    conditions: tuple[ConditionEntry, ...] = (ConditionEntry(name="raw"),)
    data: tuple[DataEntry, ...]
    engine: EngineSettings = EngineSettings()
    seed: int = 0
    report: str | None = "report.html"

    @field_validator("report")
    @classmethod
    def _report(cls, value: str | None) -> str | None:
        return None if value is None else _inside(value)

    @field_validator("conditions", mode="before")
    @classmethod
    def _conditions(cls, value: Any) -> Any:
        # A bare string is a condition without parameters; a mapping's other keys are params.
        if not isinstance(value, list | tuple):
            return value
        out: list[Any] = []
        for item in value:
            if isinstance(item, str):
                out.append({"name": item})
            elif isinstance(item, dict) and "params" not in item:
                rest = {k: v for k, v in item.items() if k != "name"}
                out.append({"name": item.get("name"), "params": rest})
            else:
                out.append(item)
        return out


@dataclass(frozen=True)
class Cell:
    """One (data, model, condition) run of a study and its run directory."""

    data: DataEntry
    model: str
    condition: ConditionEntry
    out: Path
    #: What is loaded for ``model`` when that is not its name: a study adapter's folder.
    source: str | None = None

    @property
    def label(self) -> str:
        return f"{self.data.name} / {self.model} / {self.condition.label}"


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
        eta = "–" if self.eta_s is None else _duration(self.eta_s)
        return (f"[{self.index}/{self.total}] {self.cell.label} · elapsed "
                f"{_duration(self.elapsed_s)} · ETA {eta}")


def eta_seconds(work_s: float, worked: int, remaining: int) -> float | None:
    """Remaining time by cells: the mean time of the cells that did work, times those left.

    Finished and skipped cells take no time and are not counted, so a resumed study does not
    promise the impossible; ``None`` until one cell has been timed.
    """
    if worked == 0:
        return None
    return work_s / worked * remaining


def _duration(seconds: float) -> str:
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


def load_study(path: Path) -> StudyFile:
    """Read and validate a study file; errors name the file (and line) and the offending key.

    Also checked here, before any model loads: every data path exists (``hf:`` sources are
    resolved later) and every condition is one psych201 knows.
    """
    study = read_yaml_model(path, StudyFile, StudyFileError, kind="study file",
                            expected="name, models, data, ...")
    for i, entry in enumerate(study.data):
        if not entry.path.startswith("hf:") and not data_path(entry).exists():
            raise StudyFileError(
                f"{path}: data.{i}.path {entry.path!r}: no such file or directory"
            )
    for i, condition in enumerate(study.conditions):
        if condition.name not in CONDITION_NAMES:
            raise StudyFileError(
                f"{path}: conditions.{i}: unknown condition {condition.name!r} "
                f"(known: {', '.join(CONDITION_NAMES)})"
            )
    folders: dict[str, str] = {}
    for model in study.models:
        other = folders.setdefault(_safe(model), model)
        if other != model:
            raise StudyFileError(f"{path}: models {other!r} and {model!r} would share the score "
                                 f"folder {_safe(model)!r} (one's scores would pass for the "
                                 "other's); rename one")
    _check_adapters(path, study)
    return study


def _check_adapters(path: Path, study: StudyFile) -> None:
    if not study.adapters:
        return
    from psych201.analysis.registry import load_registry
    from psych201.lab.settings import LabError

    known = load_registry()
    names = [a.name for a in study.adapters]
    if names and any(d.name == ADAPTERS_DIR for d in study.data):
        raise StudyFileError(f"{path}: a dataset named {ADAPTERS_DIR!r} would share its folder "
                             "with the study's adapters; rename it")
    for i, adapter in enumerate(study.adapters):
        where = f"{path}: adapters.{i} ({adapter.name})"
        if names.count(adapter.name) > 1:
            raise StudyFileError(f"{where}: adapter names must be unique")
        if adapter.name not in study.models:
            raise StudyFileError(f"{where}: never scored: list it under models")
        if adapter.base == adapter.name:
            raise StudyFileError(f"{where}: an adapter cannot be its own base")
        if adapter.base in names:
            raise StudyFileError(f"{where}: its base is another adapter of the study; adapters "
                                 "are trained on a model psych201 loads (a registry name, a "
                                 "folder or a hub id)")
        base = Path(adapter.base).expanduser()
        if (adapter.base.startswith((".", "/", "~")) or base.is_absolute()) and not base.exists():
            raise StudyFileError(f"{where}: base {adapter.base}: no such file or directory")
        if known.get(adapter.name) is not None:
            raise StudyFileError(f"{where}: the name of a model psych201's registry already "
                                 "has; its scores would pass for that model's")
        try:
            plan = adapter.plan()
            plan.train_settings()
            plan.data_spec(None)
        except (LabError, ValueError) as exc:
            raise StudyFileError(f"{where}: {_one_line(exc)}") from exc


def adapter_folder(study: StudyFile, name: str, out: Path | None = None) -> Path:
    """Where the study keeps (and looks for) its adapter ``name``."""
    root = out if out is not None else Path(study.out)
    return root / ADAPTERS_DIR / name


def adapter_registries(study: StudyFile, out: Path | None = None) -> list[Path]:
    """The registry fragments of the study's trained adapters (each pairs it with its base)."""
    if not study.adapters:
        return []
    from psych201.lab.posttrain import REGISTRY_FILE

    files = [adapter_folder(study, a.name, out) / REGISTRY_FILE for a in study.adapters]
    return [f for f in files if f.is_file()]


def _safe(name: str) -> str:
    # One directory level: separators become "_" and a name of dots alone ("..") is no name.
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_")
    return safe if safe.strip(".") else "model"


def data_path(entry: DataEntry) -> Path:
    return DEMO_DIR if entry.path == DEMO_DATA else Path(entry.path)


def expand(study: StudyFile, *, limit: int | None = None, out: Path | None = None) -> list[Cell]:
    """Every cell of ``study``; ``limit`` caps participants per study (overrides the file)."""
    root = out if out is not None else Path(study.out)
    adapters = {a.name: str(adapter_folder(study, a.name, out)) for a in study.adapters}
    cells = []
    for data in study.data:
        entry = data if limit is None else data.model_copy(update={"limit": limit})
        for model in study.models:
            for condition in study.conditions:
                cells.append(
                    Cell(entry, model, condition, root / data.name / _safe(model) / condition.label,
                         source=adapters.get(model))
                )
    return cells


def score_config(cell: Cell, study: StudyFile) -> ScoreConfig:
    engine = study.engine
    return ScoreConfig(
        data=data_path(cell.data),
        out=cell.out,
        model=cell.source or cell.model,
        model_args=dict(engine.model_args),
        split=cell.data.split,
        studies=tuple(cell.data.studies),
        limit=cell.data.limit,
        seed=study.seed,
        device=engine.device,
        dtype=engine.dtype,
        batch_tokens=engine.batch_tokens,
        condition=cell.condition.name,
        condition_args=dict(cell.condition.params),
        alignment=engine.alignment,
        max_tokens=engine.max_tokens,
        window_overlap=engine.window_overlap,
    )


def is_complete(cell: Cell, config: ScoreConfig) -> bool:
    """A finished run of this very cell is in its directory (checked without loading a model).

    Compares what the run spec records from the configuration alone (not the model's or the
    data's hashes, which need them opened): a cell whose engine settings changed is rerun, and
    ``score_run`` then refuses the directory with the fields that differ.
    """
    try:
        manifest = load_manifest(cell.out)
    except ResultsError:
        return False
    spec = manifest.get("spec", {})
    extra = spec.get("extra", {})
    wanted = {
        "split": config.split,
        "seed": config.seed,
        "limit": config.limit,
        "alignment": config.alignment,
        "dtype": config.dtype,
        "studies": sorted(config.studies),  # the spec stores them sorted
        "window": asdict(window_config(config)),
    }
    model_args = {k: v for k, v in config.model_args.items() if k != "cache_dir"}
    return (
        manifest.get("status") == "complete"
        and all(_json_equal(spec.get(key), value) for key, value in wanted.items())
        and _json_equal(extra.get("model_args", {}), model_args)
    )


def _json_equal(stored: Any, wanted: Any) -> bool:
    # The manifest is JSON: tuples came back as lists.
    return bool(json.loads(json.dumps(wanted, default=str)) == stored)


#: Written in a cell's directory when its condition does not apply to its model (a base model
#: without a chat template): reruns skip the cell without loading the model to find that out
#: again. Delete the file (or the directory) to retry, e.g. after giving the model a template.
SKIP_FILE = "skipped.json"


def record_skip(cell: Cell, reason: str) -> None:
    cell.out.mkdir(parents=True, exist_ok=True)
    record = {"model": cell.model, "condition": cell.condition.label, "reason": reason}
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    (cell.out / SKIP_FILE).write_text(text, encoding="utf-8")


def skipped_before(cell: Cell) -> str | None:
    """The recorded reason this very cell (same model and condition) was skipped, if any."""
    try:
        record = json.loads((cell.out / SKIP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("model") != cell.model or record.get("condition") != cell.condition.label:
        return None
    return str(record.get("reason", "condition unavailable"))


SetupLoader = Callable[[ScoreConfig], ScoringSetup]


#: Errors that fail one cell (named in one line) while the other cells go on.
CELL_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, Psych201Error)
#: Loading a model can also fail for want of a library or a device (an engine not installed,
#: CUDA asked of a CPU build): that fails the model's cells, not the study.
LOAD_ERRORS: tuple[type[BaseException], ...] = (*CELL_ERRORS, ImportError, RuntimeError)


def _default_setup(config: ScoreConfig, *, engine_args: Mapping[str, Any],
                   adapters: Mapping[str, AdapterEntry] | None = None,
                   note: Callable[[str], None] = print) -> ScoringSetup:
    adapter = (adapters or {}).get(config.model)
    if adapter is None:
        return build_setup(config, engine_args=engine_args)
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
) -> StudyOutcome:
    """Run every unfinished cell; one failing cell does not stop the others (it is reported).

    ``on_cell`` hears where the study stands before each cell (cell i/N, elapsed, ETA);
    ``loading(model)`` wraps each model load (a spinner in the CLI). A model that cannot be
    loaded fails each of its cells with the same one-line reason, loaded once.
    """
    check_adapters_current(study, out)
    if load_setup is None:
        adapters = {str(adapter_folder(study, a.name, out)): a for a in study.adapters}
        load_setup = functools.partial(_default_setup, engine_args=study.engine.engine_args,
                                       adapters=adapters, note=note)
    started = time.perf_counter()
    cells = list(_by_model(expand(study, limit=limit, out=out)))
    setups: dict[str, ScoringSetup] = {}
    load_failed: dict[str, str] = {}
    outcomes: list[CellOutcome] = []
    work_s, worked = 0.0, 0
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
    run_dirs = tuple(o.cell.out for o in outcomes if o.status in ("done", "scored"))
    return StudyOutcome(study, tuple(outcomes), time.perf_counter() - started, run_dirs)


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
        setups.clear()  # cells come grouped by model: the previous one is done
        note(f"loading {cell.model}")
        try:
            with loading(cell.model) if loading is not None else nullcontext():
                setups[cell.model] = load_setup(replace(config, condition="raw"))
        except LOAD_ERRORS as exc:
            message = f"model {cell.model!r} could not be loaded: {_one_line(exc)}"
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
        message = f"model {cell.model!r}: {_one_line(exc)}"
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
    rows = _table_rows(cell.out)
    if rows == 0:
        note(f"{cell.label}: empty: {EMPTY_REASON}")
        return replace(outcome, status="empty", message=EMPTY_REASON)
    if rows is None:
        message = "finished without a response table"
        note(f"{cell.label}: FAILED: {message}")
        return replace(outcome, status="failed", message=message)
    note(f"{cell.label}: {done}")
    return outcome


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _by_model(cells: Sequence[Cell]) -> Iterator[Cell]:
    # All cells of one model run together so its weights are loaded once and then released.
    order = list(dict.fromkeys(c.model for c in cells))
    for model in order:
        yield from (c for c in cells if c.model == model)


def _table_rows(run_dir: Path) -> int | None:
    """Rows of the run's final table (read from its footer), ``None`` when there is none."""
    import pyarrow.parquet as pq

    from psych201.results.writer import RESPONSES_FILE

    try:
        return int(pq.read_metadata(run_dir / RESPONSES_FILE).num_rows)
    except (OSError, ValueError):
        return None
