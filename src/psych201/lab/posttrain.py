"""One post-training run: base model + recipe + data + settings → an adapter folder with its card.

:func:`posttrain` loads the base with the scoring layer's loader (so the adapter is trained on
exactly the weights later scored), builds the recipe's data, trains a LoRA adapter and saves it
with its card (:mod:`psych201.lab.adapter`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psych201.lab.adapter import AdapterCard, default_adapter_root, save_adapter
from psych201.lab.assistant import Template, instruct_examples
from psych201.lab.checkpoint import remove_checkpoint
from psych201.lab.examples import TrainingData, human_examples
from psych201.lab.preference import preference_data
from psych201.lab.registry_entry import write_registry_fragment
from psych201.lab.settings import LabError, TrainSettings
from psych201.lab.train import StepLog, TrainResult, lora_model, train
from psych201.results.manifest import library_versions, now_iso
from psych201.scoring.models import LoadedModel, load_model

#: The registry fragment written beside each adapter's card.
REGISTRY_FILE = "registry.yaml"


@dataclass(frozen=True)
class DataSpec:
    """Where a recipe's training data comes from.

    ``human``: the training split (``split_seed``) of ``studies`` in ``data`` (required), at most
    ``max_sessions_per_study`` sessions per study. ``instruct``: ``n_dialogues`` generated
    assistant dialogues rendered with ``template``. ``preference``: the training split of the
    lottery studies in ``data`` or, without ``data``, ``n_simulated`` simulated risky-choice
    participants drawn with ``simulate_seed``. Dialogues and subsets are drawn with the run seed.
    """

    data: Path | None = None
    studies: tuple[str, ...] = ()
    split_seed: int = 0
    max_sessions_per_study: int | None = None
    n_dialogues: int = 2000
    template: Template = "plain"
    n_simulated: int = 200
    simulate_seed: int = 1000


@dataclass(frozen=True)
class PosttrainResult:
    """The saved adapter: its folder and card."""

    path: Path
    card: AdapterCard


def build_data(
    settings: TrainSettings, spec: DataSpec, tokenizer: Any, *, alignment: str = "offsets"
) -> TrainingData:
    """The recipe's training data (see :class:`DataSpec`)."""
    if settings.recipe == "human":
        if spec.data is None:
            raise LabError("the human recipe needs a dataset (--data) of human responses")
        return human_examples(
            spec.data,
            tokenizer,
            studies=spec.studies,
            split_seed=spec.split_seed,
            max_tokens=settings.max_tokens,
            max_sessions_per_study=spec.max_sessions_per_study,
            sample_seed=settings.seed,
            alignment=alignment,
        )
    if settings.recipe == "instruct":
        return instruct_examples(
            tokenizer,
            n_dialogues=spec.n_dialogues,
            seed=settings.seed,
            max_tokens=settings.max_tokens,
            template=spec.template,
            alignment=alignment,
        )
    return preference_data(
        tokenizer,
        data=spec.data,
        studies=spec.studies,
        split_seed=spec.split_seed,
        n_simulated=spec.n_simulated,
        simulate_seed=spec.simulate_seed,
        max_tokens=settings.max_tokens,
        alignment=alignment,
    )


def default_name(base: str, settings: TrainSettings) -> str:
    """``<base>-lora-<recipe>-s<seed>``, with the base's folder name for paths."""
    stem = Path(base).name if ("/" in base or "\\" in base) else base
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "model"
    return f"{stem}-lora-{settings.recipe}-s{settings.seed}"


def make_card(
    name: str,
    base: str,
    loaded: LoadedModel,
    settings: TrainSettings,
    data: TrainingData,
    result: TrainResult,
) -> AdapterCard:
    return AdapterCard(
        name=name,
        base=base,
        base_sha256=loaded.file_sha256,
        recipe=settings.recipe,
        post_training=settings.post_training,
        data=data.description,
        settings=settings.to_dict(),
        steps=settings.steps,
        seed=settings.seed,
        losses=tuple(round(v, 6) for v in result.losses),
        step_seconds=tuple(round(s.seconds, 3) for s in result.steps),
        step_extra=tuple({k: round(v, 6) for k, v in s.extra.items()} for s in result.steps),
        train_wall_s=round(result.wall_s, 2),
        n_trainable=result.n_trainable,
        n_sequences=result.n_sequences,
        n_target_tokens=data.n_target_tokens,
        versions=library_versions("peft"),
        created=now_iso(),
    )


def posttrain(
    base: str,
    settings: TrainSettings,
    spec: DataSpec,
    *,
    out_dir: str | Path | None = None,
    name: str | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[StepLog], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> PosttrainResult:
    """Train a LoRA adapter of ``base`` with ``settings.recipe`` and save it.

    ``out_dir`` defaults to ``<cache>/adapters/<name>``; ``name`` (the registry id and the
    ``model`` column of every score table made with the adapter) to :func:`default_name`.
    """
    name = name or default_name(base, settings)
    out = Path(out_dir) if out_dir is not None else default_adapter_root() / name
    say = note or (lambda _msg: None)
    say(f"loading {base}")
    loaded = load_model(base, dtype=settings.dtype, device=settings.device, cache_dir=cache_dir)
    say(f"building {settings.recipe} data")
    data = build_data(settings, spec, loaded.tokenizer)
    n_items = len(data.pairs) if data.pairs else len(data.examples)
    say(f"{n_items} training {'pairs' if data.pairs else 'sequences'}, "
        f"{data.n_target_tokens} target tokens")
    model = lora_model(loaded.model, settings.lora, seed=settings.seed)
    # Beside the adapter folder, not in it: save_adapter replaces the folder as a whole.
    checkpoints = out.with_name(f".{out.name}.checkpoint")
    result = train(model, data, settings, progress=progress, checkpoint_dir=checkpoints,
                   note=say)
    card = make_card(name, base, loaded, settings, data, result)
    written = save_adapter(result.model, card, out)
    remove_checkpoint(checkpoints)
    write_registry_fragment([written], out / REGISTRY_FILE, aliases={name: [out.name]})
    say(f"adapter written to {out} (registry entry: {out / REGISTRY_FILE})")
    return PosttrainResult(out, written)
