"""The schema of a study file (``studies/*.yaml``) and its checks before anything loads."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from psych201.bounds import low_high
from psych201.errors import UsageError
from psych201.prompts.conditions import CONDITION_NAMES
from psych201.simulate.demo import DEMO_DIR, DEMO_NAME
from psych201.yaml_files import read_yaml_model

if TYPE_CHECKING:  # the lab loads torch: only studies that train adapters import it
    from psych201.lab.adapter_plan import AdapterPlan

#: ``path: demo`` in a study file means the bundled simulated studies.
DEMO_DATA = DEMO_NAME


class StudyFileError(UsageError):
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
        return safe_name("-".join(parts))


#: Bounds of a study file's numbers, checked at load (before anything starts), from the table
#: the CLI's flags share (psych201.bounds).
STUDY_BOUNDS = {name: low_high(name) for name in ("batch_tokens", "seed", "gpus")}


class EngineSettings(_Strict):
    """How every model of the study is run: ``name`` is a registered engine (``hf``, ``vllm``,
    ``llamacpp``, ``openai``, an entry point's), ``args`` its settings (``--engine-args``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = "hf"
    device: str = "cpu"
    dtype: str = "float32"
    batch_tokens: int = Field(default=8192, ge=STUDY_BOUNDS["batch_tokens"][0],
                              le=STUDY_BOUNDS["batch_tokens"][1])
    alignment: str = "offsets"
    max_tokens: int | None = Field(default=None, ge=2)
    window_overlap: int | None = Field(default=None, ge=0)
    model_args: dict[str, Any] = Field(default_factory=dict)
    #: The engine's settings (``--engine-args``; ``args`` in the file), e.g. the transformers
    #: engine's ``{temperatures: "on"}`` to score the calibration control's temperature grid on
    #: a CPU. Checked against what the engine's registration says it takes.
    engine_args: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("args", "engine_args"))


class ModelEntry(_Strict):
    """A model of the study: a bare string in the file is ``{id: ...}``; ``engine`` and
    ``args`` override the study's engine for this model, ``gpus`` the planner's estimate."""

    id: str = Field(min_length=1)
    engine: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    gpus: int | None = Field(default=None, ge=STUDY_BOUNDS["gpus"][0], le=STUDY_BOUNDS["gpus"][1])


@dataclass(frozen=True)
class ModelEngine:
    """How one model of a study is run: its engine, that engine's args, and its GPUs (``None``:
    the planner's memory estimate decides)."""

    name: str
    args: Mapping[str, Any]
    gpus: int | None = None


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
    models: tuple[ModelEntry, ...]
    adapters: tuple[AdapterEntry, ...] = ()
    conditions: tuple[ConditionEntry, ...] = (ConditionEntry(name="raw"),)
    data: tuple[DataEntry, ...]
    engine: EngineSettings = EngineSettings()
    seed: int = Field(default=0, ge=STUDY_BOUNDS["seed"][0], le=STUDY_BOUNDS["seed"][1])
    report: str | None = "report.html"

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.models)

    def engine_for(self, model: str) -> ModelEngine:
        """The engine ``model`` runs on: its own, else the study's. The study-wide ``args``
        apply only where the model runs on the study's engine (they are that engine's)."""
        entry = next(m for m in self.models if m.id == model)
        name = entry.engine or self.engine.name
        shared = self.engine.engine_args if name == self.engine.name else {}
        return ModelEngine(name, {**shared, **entry.args}, entry.gpus)

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        # A bare string is a model on the study's engine.
        if not isinstance(value, list | tuple):
            return value
        return [{"id": item} if isinstance(item, str) else item for item in value]

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
    _check_engines(path, study)
    folders: dict[str, str] = {}
    for model in study.model_ids:
        other = folders.setdefault(safe_name(model), model)
        if other != model:
            raise StudyFileError(f"{path}: models {other!r} and {model!r} would share the score "
                                 f"folder {safe_name(model)!r} (one's scores would pass for the "
                                 "other's); rename one")
    _check_adapters(path, study)
    return study


def _check_engines(path: Path, study: StudyFile) -> None:
    """Every model's engine is registered and takes the args it is given (nothing imported)."""
    from psych201.scoring.engines import check_engine_args, engine_entry

    adapters = {a.name for a in study.adapters}
    for i, model in enumerate(study.models):
        where = f"{path}: models.{i} ({model.id})"
        engine = study.engine_for(model.id)
        if engine.name == "ray":
            raise StudyFileError(f"{where}: engine ray is not an engine of its own: run the "
                                 "study with `psych201 run STUDY --ray`")
        try:
            engine_entry(engine.name)
            check_engine_args(engine.name, engine.args, what="args")
        except UsageError as exc:
            raise StudyFileError(f"{where}: {exc}") from exc
        if model.id in adapters and engine.name != "hf":
            raise StudyFileError(f"{where}: a LoRA adapter the study trains is scored on the "
                                 "hf engine")


def check_engines_installed(study: StudyFile) -> None:
    """Refuse (before anything loads) a study whose engines' packages are missing here."""
    from psych201.scoring.engines import require_packages

    for name in dict.fromkeys(study.engine_for(m).name for m in study.model_ids):
        try:
            require_packages(name, what="engine")
        except UsageError as exc:
            raise StudyFileError(str(exc)) from exc


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
        if adapter.name not in study.model_ids:
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
            raise StudyFileError(f"{where}: {one_line(exc)}") from exc


def safe_name(name: str) -> str:
    # One directory level: separators become "_" and a name of dots alone ("..") is no name.
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_")
    return safe if safe.strip(".") else "model"




def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def data_path(entry: DataEntry) -> Path:
    return DEMO_DIR if entry.path == DEMO_DATA else Path(entry.path)
