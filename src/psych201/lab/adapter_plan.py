"""One adapter to train, as a plan names it, and training it at most once.

Both the post-training experiment (``studies/posttraining_lab.yaml``) and study plans
(``studies/local.yaml``'s ``adapters:``) describe an adapter the same way — a registry name, a
recipe, training settings and data options — and both reuse an adapter already in its folder
when its card records the very same training, so a rerun never trains twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, field_validator

from psych201.lab.adapter import CARD_FILE, AdapterCard, is_adapter_dir, read_card
from psych201.lab.settings import LabError, TrainSettings

if TYPE_CHECKING:  # the training modules load transformers: only where an adapter is trained
    from psych201.lab.posttrain import DataSpec
    from psych201.lab.train import StepLog


class AdapterPlan(BaseModel):
    """One adapter: its registry name, recipe, training settings and data options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    recipe: Literal["instruct", "preference", "human"]
    settings: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _not_dots(cls, value: str) -> str:
        if not value.strip("."):
            raise ValueError(f"{value!r} is no name: it names a folder of its own")
        return value

    def train_settings(self) -> TrainSettings:
        return TrainSettings.from_dict({"recipe": self.recipe, **self.settings})

    def data_spec(self, data: Path | None, studies: tuple[str, ...] = (),
                  split_seed: int = 0) -> DataSpec:
        """Where the recipe's examples come from; ``data``/``studies`` only where it reads
        participants (the human recipe, or ``use_dataset: true``)."""
        from psych201.lab.posttrain import DataSpec

        options = dict(self.data)
        known = (set(DataSpec.__dataclass_fields__) - {"data", "studies", "split_seed"}) | {
            "use_dataset"
        }
        unknown = sorted(set(options) - known)
        if unknown:
            raise LabError(f"adapter {self.name}: unknown data option(s) {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(known))})")
        for key, value in options.items():
            if key not in _COUNTS or value is None:
                continue
            least, most = _COUNTS[key]
            if not (
                    isinstance(value, int) and not isinstance(value, bool)
                    and least <= value <= most):
                raise LabError(f"adapter {self.name}: data option {key} must be an integer from "
                               f"{least} to {most:,}, got {value!r}")
        uses_dataset = self.recipe == "human" or options.pop("use_dataset", False)
        if uses_dataset and data is None:
            raise LabError(f"adapter {self.name}: recipe {self.recipe} with these options trains "
                           "on participants, and no dataset is given for it")
        return DataSpec(
            data=data if uses_dataset else None,
            studies=studies if uses_dataset else (),
            split_seed=split_seed,
            **options,
        )


#: Data options that count things, and the least and most each may ask for.
_COUNTS: dict[str, tuple[int, int]] = {
    "n_dialogues": (1, 1_000_000), "n_simulated": (1, 1_000_000),
    "max_sessions_per_study": (1, 10_000_000), "simulate_seed": (0, 2**63 - 1)}


def same_training(card: AdapterCard, base: str, settings: TrainSettings, spec: DataSpec) -> bool:
    """Whether the adapter ``card`` describes was trained as ``base``/``settings``/``spec`` say
    (the data options compared where the card records them: ``n_dialogues``, ``template``…)."""
    studies = card.data.get("studies", {})
    want_studies = set(spec.studies) if spec.data is not None else set(studies)
    options = {k: v for k, v in dataclasses.asdict(spec).items()
               if k not in ("data", "studies", "split_seed")}
    return (
        card.base == base
        and card.settings == settings.to_dict()
        and set(studies) == want_studies
        and all(card.data[k] == v for k, v in options.items() if k in card.data)
    )


def stale_adapter(folder: Path, base: str, adapter: AdapterPlan, spec: DataSpec) -> str | None:
    """Why the adapter in ``folder`` is not the one the plan asks for (``None``: it is, or
    there is none yet)."""
    if not is_adapter_dir(folder):
        return None
    card = read_card(folder)
    if same_training(card, base, adapter.train_settings(), spec):
        return None
    return (f"the adapter in {folder} was trained otherwise (see {folder / CARD_FILE}: base "
            f"{card.base}, settings {card.settings})")


def ensure_adapter(
    base: str, adapter: AdapterPlan, spec: DataSpec, folder: Path, *,
    note: Callable[[str], None] | None = None,
    progress: Callable[[StepLog], None] | None = None,
    cache_dir: Path | None = None,
) -> tuple[Path, AdapterCard]:
    """The adapter in ``folder``, trained there first unless the same training is already there.

    A lock beside the folder lets two processes ask at once: the second waits and reuses what
    the first trained. A folder holding another training is refused (:class:`LabError`); the
    caller decides whether to discard it.
    """
    say = note or (lambda _msg: None)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / f".{folder.name}.lock")):
        stale = stale_adapter(folder, base, adapter, spec)
        if stale is not None:
            raise LabError(f"adapter {adapter.name}: {stale}")
        if is_adapter_dir(folder):
            say(f"{adapter.name}: reusing the adapter in {folder}")
            return folder, read_card(folder)
        from psych201.lab.posttrain import posttrain

        say(f"{adapter.name}: training ({adapter.recipe} recipe on {base}) into {folder}")
        result = posttrain(base, adapter.train_settings(), spec, out_dir=folder,
                           name=adapter.name, cache_dir=cache_dir, progress=progress, note=note)
        return result.path, result.card
