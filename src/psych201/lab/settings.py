"""What a post-training run is asked to do: the recipe, the LoRA shape and the step budget.

Everything that changes an adapter's weights is in :class:`TrainSettings` (and recorded in the
adapter's card), so a run is regenerated from its card: same base, data, settings and seed give
the same adapter on the same machine.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from psych201.errors import UsageError

Recipe = Literal["instruct", "preference", "human"]
RECIPES: tuple[str, ...] = get_args(Recipe)

#: What each recipe is, in the registry's post-training vocabulary (analysis/registry.py). The
#: registry has no "preference" type: preference tuning is how instruct checkpoints are made
#: (SFT then RLHF/DPO), so it is ``instruct`` on its own figure line.
POST_TRAINING: dict[str, str] = {"instruct": "instruct", "preference": "instruct", "human": "human"}
REGISTRY_LINE: dict[str, str] = {
    "instruct": "LoRA instruct",
    "preference": "LoRA preference (DPO)",
    "human": "LoRA human",
}

#: Gemma / Llama / Qwen attention projections: the usual LoRA targets, and cheap on a CPU.
ATTENTION_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


class LabError(UsageError):
    """A post-training run that cannot start or be saved as asked (message says why)."""


#: Upper bounds that catch a typo before it trains for days (or allocates without end).
MAX_STEPS = 1_000_000
MAX_BATCH = 65_536
MAX_TOKENS = 1_048_576


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ints(settings: Any, bounds: dict[str, int], what: str = "") -> None:
    for name, most in bounds.items():
        value = getattr(settings, name)
        if not _is_int(value):
            raise LabError(f"{what}{name} must be an integer, got {value!r}")
        if value > most:
            raise LabError(f"{what}{name} must be at most {most:,}, got {value:,}")


def _check_reals(settings: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(settings, name)
        real = isinstance(value, int | float) and not isinstance(value, bool)
        if not real or not math.isfinite(value):
            raise LabError(f"{name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class LoRASettings:
    """The adapter's shape (peft ``LoraConfig``).

    ``layers``: indices of the transformer layers to adapt (empty: all). Adapting only the top
    layers is the cheap option on a CPU: back-propagation stops below the lowest adapted layer.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ATTENTION_PROJECTIONS
    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check_ints(self, {"r": 65_536, "alpha": 1_000_000}, what="LoRA ")
        _check_reals(self, ("dropout",))
        if not all(isinstance(m, str) and m for m in self.target_modules):
            raise LabError(f"LoRA target_modules must be module names, got "
                           f"{list(self.target_modules)}")
        if not all(_is_int(i) for i in self.layers):
            raise LabError(f"LoRA layers must be integer indices, got {list(self.layers)}")
        if self.r < 1 or self.alpha < 1:
            raise LabError(f"LoRA rank and alpha must be positive, got r={self.r}, "
                           f"alpha={self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise LabError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise LabError("LoRA needs at least one target module")
        if any(i < 0 for i in self.layers):
            raise LabError(f"LoRA layer indices must be >= 0, got {list(self.layers)}")


@dataclass(frozen=True)
class TrainSettings:
    """The optimisation of one adapter.

    ``steps`` optimiser steps of ``batch_size`` sequences each (one forward per sequence, no
    padding, gradients accumulated). ``max_tokens`` cuts every training sequence to its first
    ``max_tokens`` tokens; responses that do not fit entirely are not trained on. The learning
    rate warms up linearly over ``warmup_steps`` and then decays linearly to 10 % at the end.
    ``dpo_beta`` is the DPO temperature (preference recipe only).
    """

    recipe: Recipe
    steps: int = 150
    batch_size: int = 4
    learning_rate: float = 2e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_tokens: int = 1024
    dpo_beta: float = 0.1
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    lora: LoRASettings = field(default_factory=LoRASettings)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise LabError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        # Settings come from YAML and cards: a float step count or a NaN learning rate would
        # only fail (or train nonsense) minutes into a run.
        _check_ints(self, {"steps": MAX_STEPS, "batch_size": MAX_BATCH,
                           "max_tokens": MAX_TOKENS, "warmup_steps": MAX_STEPS,
                           "seed": 2**63 - 1})
        _check_reals(self, ("learning_rate", "weight_decay", "grad_clip", "dpo_beta"))
        for name in ("steps", "batch_size", "max_tokens"):
            if getattr(self, name) < 1:
                raise LabError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.learning_rate <= 0 or self.dpo_beta <= 0:
            raise LabError("warmup_steps must be >= 0, learning_rate and dpo_beta > 0")
        if self.seed < 0:
            raise LabError(f"seed must be >= 0, got {self.seed}")
        if self.dtype not in ("float32", "bfloat16"):
            raise LabError(f"training dtype must be float32 or bfloat16, got {self.dtype!r}")

    @property
    def post_training(self) -> str:
        return POST_TRAINING[self.recipe]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["lora"]["target_modules"] = list(self.lora.target_modules)
        out["lora"]["layers"] = list(self.lora.layers)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSettings:
        fields = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise LabError(f"unknown training setting(s) {', '.join(map(str, unknown))} "
                           f"(known: {', '.join(sorted(known - {'recipe'}))})")
        lora = fields.pop("lora", {}) or {}
        if not isinstance(lora, dict):
            raise LabError(f"lora must be a mapping of LoRA settings, got {lora!r}")
        lora = dict(lora)
        lora_known = {f.name for f in dataclasses.fields(LoRASettings)}
        unknown = sorted(set(lora) - lora_known)
        if unknown:
            raise LabError(f"unknown LoRA setting(s) {', '.join(map(str, unknown))} "
                           f"(known: {', '.join(sorted(lora_known))})")
        for name in ("target_modules", "layers"):
            if name in lora:
                lora[name] = tuple(lora[name])
        try:
            return cls(lora=LoRASettings(**lora), **fields)
        except TypeError as exc:
            raise LabError(f"invalid training settings: {exc}") from exc
