"""The model registry: what each scored checkpoint is (family, size, post-training, paired base).

The registry is data (``models.yaml`` next to this file), not code: the paper's 101 checkpoints
(65 base/post-trained pairs), the Centaur adapter and the locally available models. Users extend
or override it with their own YAML of the same shape; an entry whose ``id`` (or any of its
names) matches an existing one replaces it.

Result tables name models however the scoring run named them (a Hugging Face id, a built-in name,
the paper's ``Qwen-Qwen3-14B.pth`` file names, a local folder). :meth:`ModelRegistry.get` resolves
all of these, so no analysis parses sizes or types out of model-name strings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from psych201.errors import UsageError
from psych201.yaml_files import read_yaml_file

PostTraining = Literal["base", "instruct", "reasoning", "vision", "code", "math", "human"]
#: Display labels of post-training types, as the paper names them (type d table, figure legends).
TYPE_LABELS: dict[str, str] = {
    "base": "Base",
    "instruct": "Instruction-tuned",
    "reasoning": "Reasoning",
    "vision": "Vision",
    "code": "Code",
    "math": "Math",
    "human": "Human fine-tuned",
}

REGISTRY_FILE = Path(__file__).with_name("models.yaml")
REGISTRY_FORMAT = "psych201-models/1"
_WEIGHT_SUFFIXES = (".pth", ".gguf", ".safetensors", ".bin")


class RegistryError(UsageError):
    """A registry file or entry that cannot be used; the message names file, line and reason."""


class _Entry(BaseModel):
    """Schema of one YAML entry (strict: unknown keys are errors, not silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    name: str | None = None
    family: str = Field(min_length=1)
    generation: str | None = None
    params_b: float | None = Field(default=None, gt=0)
    post_training: PostTraining
    base: str | None = None
    line: str = "main"
    paper: bool = True
    local: bool = False
    aliases: list[str] = Field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """One checkpoint of the registry."""

    id: str
    name: str
    family: str
    generation: str
    params_b: float | None
    post_training: str
    base: str | None = None
    line: str = "main"
    paper: bool = True
    local: bool = False
    aliases: tuple[str, ...] = ()
    note: str | None = None
    source: str = ""  # the file the entry came from

    @property
    def is_base(self) -> bool:
        return self.post_training == "base"

    @property
    def type_label(self) -> str:
        return TYPE_LABELS[self.post_training]

    @property
    def line_label(self) -> str:
        """The figure line a model belongs to: its type, plus the variant line where not main.

        Keeps e.g. Qwen3-VL Instruct and Qwen3-VL Thinking (both ``vision``) on separate lines, as
        the paper's Fig. 2 does, without parsing model names.
        """
        if self.line == "main" or self.line.lower() == self.type_label.lower():
            return self.type_label
        return f"{self.type_label} ({self.line})"

    def names(self) -> tuple[str, ...]:
        return (self.id, self.name, *self.aliases)


@dataclass(frozen=True)
class ModelPair:
    """A post-trained checkpoint and the base it was trained from (ids of the registry)."""

    post: str
    base: str
    post_training: str

    @property
    def type_label(self) -> str:
        return TYPE_LABELS[self.post_training]


def _normalise(name: str) -> str:
    """Spelling-insensitive key: ``Qwen/Qwen3-14B``, ``qwen-qwen3-14b.pth`` → ``qwen-qwen3-14b``."""
    key = name.strip().lower()
    for suffix in _WEIGHT_SUFFIXES:
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    return key.rstrip("/").replace("/", "-").replace("\\", "-")


class ModelRegistry:
    """The checkpoints a comparison knows about, looked up by any of their names."""

    def __init__(self, models: Iterable[ModelInfo]) -> None:
        self._models: dict[str, ModelInfo] = {}
        for model in models:
            self._models[model.id] = model
        self._index: dict[str, str] = {}
        for model in self._models.values():
            for name in {_normalise(n) for n in model.names()}:
                other = self._index.get(name)
                if other is not None and other != model.id:
                    raise RegistryError(
                        f"{model.source or 'registry'}: name {name!r} of {model.id!r} is already "
                        f"used by {other!r}"
                    )
                self._index[name] = model.id
        for model in self._models.values():
            if model.base is not None and self.get(model.base) is None:
                raise RegistryError(
                    f"{model.source or 'registry'}: {model.id!r} pairs with base {model.base!r}, "
                    "which is not in the registry"
                )
            if model.base is not None and model.is_base:
                raise RegistryError(f"{model.source}: base model {model.id!r} cannot have a base")

    # -- lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> ModelInfo | None:
        """The entry ``name`` refers to (id, display name, alias, paper file name or a path)."""
        if name in self._models:
            return self._models[name]
        key = _normalise(name)
        found = self._index.get(key)
        if found is None and ("/" in name or "\\" in name):
            found = self._index.get(_normalise(Path(name.rstrip("/\\")).name))
        return self._models[found] if found is not None else None

    def __getitem__(self, name: str) -> ModelInfo:
        model = self.get(name)
        if model is None:
            raise KeyError(f"model {name!r} is not in the registry (see `psych201 models`)")
        return model

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    @property
    def families(self) -> tuple[str, ...]:
        """Families in registry order (the order of figure panels)."""
        return tuple(dict.fromkeys(m.family for m in self))

    def pairs(self) -> list[ModelPair]:
        """Every (post-trained, base) pair, in registry order."""
        out = []
        for model in self:
            if model.base is not None:
                out.append(ModelPair(model.id, self[model.base].id, model.post_training))
        return out

    def pair_for(self, post: str) -> ModelPair | None:
        model = self.get(post)
        if model is None or model.base is None:
            return None
        return ModelPair(model.id, self[model.base].id, model.post_training)

    def merged(self, models: Iterable[ModelInfo]) -> ModelRegistry:
        """A registry where ``models`` replace entries they name and are added otherwise."""
        current = dict(self._models)
        for model in models:
            existing = self.get(model.id)
            if existing is not None:
                del current[existing.id]
            current[model.id] = model
        return ModelRegistry(current.values())

    # -- tables -------------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        rows = [
            {
                "id": m.id,
                "name": m.name,
                "family": m.family,
                "generation": m.generation,
                "params_b": m.params_b,
                "post_training": m.post_training,
                "type": m.type_label,
                "base": m.base,
                "line": m.line,
                "paper": m.paper,
                "local": m.local,
                "note": m.note or "",
            }
            for m in self
        ]
        return pd.DataFrame(rows)

    def describe(self, names: Sequence[str]) -> pd.DataFrame:
        """Registry columns for the model names of a result table (``NaN`` for unknown models).

        Indexed by the names as given, so it joins onto any table with a ``model`` column.
        """
        rows: list[dict[str, Any]] = []
        for name in names:
            m = self.get(name)
            rows.append(
                {
                    "model": name,
                    "known": m is not None,
                    "display": m.name if m else name,
                    "family": m.family if m else None,
                    "generation": m.generation if m else None,
                    "params_b": m.params_b if m else math.nan,
                    "post_training": m.post_training if m else None,
                    "type": m.type_label if m else None,
                    "line_label": m.line_label if m else None,
                    "is_base": m.is_base if m else None,
                }
            )
        return pd.DataFrame(rows).set_index("model")


# -- files ------------------------------------------------------------------------------------
def _entry_lines(text: str) -> list[int]:
    """1-based line of each item of the top-level ``models`` list (for error messages)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if (isinstance(key, yaml.ScalarNode) and key.value == "models"
                and isinstance(value, yaml.SequenceNode)):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def read_registry_file(path: str | Path) -> list[ModelInfo]:
    """The entries of one registry YAML file; :class:`RegistryError` names file, line and reason."""
    path = Path(path)
    text, data = read_yaml_file(path, RegistryError, kind="registry file")
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), list):
        raise RegistryError(f"{path}: expected a mapping with a 'models' list")
    fmt = data.get("format", REGISTRY_FORMAT)
    if fmt != REGISTRY_FORMAT:
        raise RegistryError(f"{path}: unknown registry format {fmt!r} (expected {REGISTRY_FORMAT})")
    unknown = set(data) - {"format", "models"}
    if unknown:
        raise RegistryError(f"{path}: unknown top-level keys {sorted(unknown)}")
    lines = _entry_lines(text)
    models: list[ModelInfo] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(data["models"]):
        line = lines[i] if i < len(lines) else 0
        where = f"{path}:{line}" if line else f"{path} (entry {i + 1})"
        if not isinstance(raw, Mapping):
            raise RegistryError(f"{where}: each model entry must be a mapping")
        try:
            entry = _Entry.model_validate(dict(raw))
        except ValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise RegistryError(f"{where}: invalid model entry ({reasons})") from exc
        if entry.id in seen:
            raise RegistryError(
                f"{where}: duplicate id {entry.id!r} (first at entry {seen[entry.id]})")
        seen[entry.id] = i + 1
        if entry.post_training == "base" and entry.base is not None:
            raise RegistryError(f"{where}: base model {entry.id!r} cannot name a base")
        models.append(
            ModelInfo(
                id=entry.id,
                name=entry.name or entry.id.rsplit("/", 1)[-1],
                family=entry.family,
                generation=entry.generation or entry.family,
                params_b=entry.params_b,
                post_training=entry.post_training,
                base=entry.base,
                line=entry.line,
                paper=entry.paper,
                local=entry.local,
                aliases=tuple(entry.aliases),
                note=entry.note,
                source=f"{path}:{line}" if line else str(path),
            )
        )
    return models


def load_registry(*extra: str | Path) -> ModelRegistry:
    """The packaged registry, extended/overridden by each user file in ``extra`` (in order)."""
    registry = ModelRegistry(read_registry_file(REGISTRY_FILE))
    for path in extra:
        registry = registry.merged(read_registry_file(path))
    return registry


def pair_problems(registry: ModelRegistry, post: str, base: str,
                  vocab_sizes: Mapping[str, int] | None = None) -> list[str]:
    """Why ``post``/``base`` is not a base vs post-trained pair of one model, as phrases (empty
    when nothing speaks against it): family, type, the registry's base, the tokenizers.

    ``vocab_sizes`` maps a model id to its tokenizer's vocabulary size (from the run
    manifests). Post-training may add a few special tokens; vocabularies more than
    :data:`VOCAB_TOLERANCE` apart are different tokenizers.
    """
    problems: list[str] = []
    p, b = registry.get(post), registry.get(base)
    for name, info in ((post, p), (base, b)):
        if info is None:
            problems.append(f"{name} is not in the model registry (family and type unknown)")
    if p is not None and b is not None:
        if p.family != b.family:
            problems.append(f"different families ({p.family} vs {b.family})")
        if p.is_base:
            problems.append(f"{post} is a base model, not post-trained")
        if not b.is_base:
            problems.append(f"{base} is post-trained ({b.type_label}), not a base model")
        registered = registry.get(p.base) if p.base else None
        if registered is not None and registered.id != b.id:
            problems.append(f"the registry names {registered.id} as the base of {p.id}")
    sizes = vocab_sizes or {}
    a, b_size = sizes.get(post), sizes.get(base)
    if a and b_size and abs(a - b_size) > VOCAB_TOLERANCE * max(a, b_size):
        problems.append(f"different tokenizers ({a:,} vs {b_size:,} tokens)")
    return problems


#: Relative difference of vocabulary sizes beyond which two tokenizers are not one model's.
VOCAB_TOLERANCE = 0.02
