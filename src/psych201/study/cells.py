"""A study expanded into cells (data × model × condition), each one run directory."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from psych201.pipeline import ScoreConfig
from psych201.study.schema import (
    ADAPTERS_DIR,
    ConditionEntry,
    DataEntry,
    ModelEngine,
    StudyFile,
    data_path,
    safe_name,
)


@dataclass(frozen=True)
class Cell:
    """One (data, model, condition) run of a study and its run directory."""

    data: DataEntry
    model: str
    condition: ConditionEntry
    out: Path
    #: What is loaded for ``model`` when that is not its name: a study adapter's folder.
    source: str | None = None
    engine: ModelEngine = field(default_factory=lambda: ModelEngine("hf", {}))

    @property
    def label(self) -> str:
        return f"{self.data.name} / {self.model} / {self.condition.label}"


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


def expand(study: StudyFile, *, limit: int | None = None, out: Path | None = None) -> list[Cell]:
    """Every cell of ``study``; ``limit`` caps participants per study (overrides the file)."""
    root = out if out is not None else Path(study.out)
    adapters = {a.name: str(adapter_folder(study, a.name, out)) for a in study.adapters}
    cells = []
    for data in study.data:
        entry = data if limit is None else data.model_copy(update={"limit": limit})
        for model in study.model_ids:
            engine = study.engine_for(model)
            for condition in study.conditions:
                folder = root / data.name / safe_name(model) / condition.label
                cells.append(Cell(entry, model, condition, folder, source=adapters.get(model),
                                  engine=engine))
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


def by_model(cells: Sequence[Cell]) -> Iterator[Cell]:
    # All cells of one model run together so its weights are loaded once and then released.
    for group in model_groups(cells):
        yield from group.cells


@dataclass(frozen=True)
class ModelGroup:
    """All cells of one model (conditions × data): the unit a worker loads the model once for
    and a scheduler hands out; the cell stays the unit of resume and of the report."""

    model: str
    engine: ModelEngine
    cells: tuple[Cell, ...]


def model_groups(cells: Sequence[Cell]) -> list[ModelGroup]:
    """The cells grouped by model, in the study file's order."""
    order = list(dict.fromkeys(c.model for c in cells))
    return [ModelGroup(m, next(c.engine for c in cells if c.model == m),
                       tuple(c for c in cells if c.model == m)) for m in order]


